"""`--homeassistant`: retained MQTT discovery configs that Home Assistant's documented schema accepts, read back
from a real Mosquitto, whose state topics carry values their templates extract; removal on eviction."""

from __future__ import annotations

import json
import re
import threading

import paho.mqtt.client as mqtt
import pytest
from conftest import publisher, start_service, stop_service, tiny_model

from streaming.config import ConfigError, from_dict
from streaming.homeassistant import node_id, sensor_configs

CONFIG_TOPIC = re.compile(r"homeassistant/sensor/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config")
REQUIRED = ("name", "unique_id", "state_topic", "value_template", "availability_topic", "device")
DEVICE_REQUIRED = ("identifiers", "name", "model", "manufacturer")


class _Attr:
    """`value_json` as Jinja sees it: keys as attributes or items."""

    def __init__(self, data: dict):
        self._data = data

    def __getattr__(self, key: str):
        return _wrap(self._data[key])

    def __getitem__(self, key: str):
        return _wrap(self._data[key])


def _wrap(value):
    return _Attr(value) if isinstance(value, dict) else value


def render(template: str, payload: bytes):
    """The Jinja subset our templates use — `{{ value_json.a }}`, `value_json.a[value_json.b]`, arithmetic,
    `| round(n)`, `| tojson` — evaluated on a received payload as Home Assistant would."""
    expr = re.fullmatch(r"\{\{\s*(.*?)\s*\}\}", template).group(1)
    apply = lambda v: v  # noqa: E731
    if m := re.fullmatch(r"(.*?)\s*\|\s*round\((\d+)\)", expr):
        expr, digits = m.group(1), int(m.group(2))
        apply = lambda v: round(v, digits)  # noqa: E731
    elif m := re.fullmatch(r"(.*?)\s*\|\s*tojson", expr):
        expr = m.group(1)
        apply = lambda v: json.dumps(v._data if isinstance(v, _Attr) else v)  # noqa: E731
    assert re.fullmatch(r"[\w.\[\]()*+ \d]+", expr), f"template outside the subset: {template}"
    return apply(eval(expr, {"__builtins__": {}}, {"value_json": _Attr(json.loads(payload))}))  # noqa: S307


def retained(port: int, topic: str, timeout: float = 5.0) -> dict[str, bytes]:
    """What a newly subscribing client (Home Assistant after a restart) is handed: {topic: retained payload}."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, u, f, r, p: c.subscribe([(topic, 1), ("probe/done", 1)])
    # The broker queues the retained messages with its SUBACK; our probe, published after, comes back last.
    client.on_subscribe = lambda c, u, mid, r, p: c.publish("probe/done", b"", 1)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == "probe/done":
            done.set()
        elif msg.retain:
            got[msg.topic] = msg.payload

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(timeout)
    client.loop_stop()
    client.disconnect()
    return got


def test_discovery_configs_follow_the_documented_schema(mosquitto, collector_factory) -> None:
    model = tiny_model()
    col = collector_factory(mosquitto.port, ["homeassistant/#", "predictions/#", "rnnzoo/status"])
    svc, thread = start_service(
        mosquitto.url, model, homeassistant=True, homeassistant_remove=True, ttl_s=2.0
    )
    devices = ["kitchen-1", "hall.sensor 2"]  # the second must be reduced to a safe node_id
    pub = publisher(mosquitto.port)
    for k in range(5):
        for d in devices:
            pub.publish(f"sensors/{d}/imu", json.dumps([0.5 * k, -0.1, 0.3]))
    assert col.wait_for(lambda: col.count("predictions/") >= 10 and col.count("homeassistant/") >= 4)

    configs = retained(mosquitto.port, "homeassistant/#")
    assert len(configs) == 4, sorted(configs)  # two sensors per device, all retained
    unique_ids, nodes = set(), set()
    status = json.loads(retained(mosquitto.port, "rnnzoo/status")["rnnzoo/status"])
    for topic, payload in configs.items():
        match = CONFIG_TOPIC.fullmatch(topic)
        assert match, topic
        config = json.loads(payload)
        for key in REQUIRED:
            assert config.get(key), (topic, key)
        for key in DEVICE_REQUIRED:
            assert config["device"].get(key), (topic, key)
        device = config["device"]["name"]
        assert device in devices and match.group(1) == node_id(device)
        assert config["device"]["identifiers"] == [f"rnnzoo:{node_id(device)}"]
        unique_ids.add(config["unique_id"])
        nodes.add(match.group(1))
        # Availability: the service's retained status, read with the config's template.
        assert config["availability_topic"] == "rnnzoo/status"
        assert (
            render(config["availability_template"], json.dumps(status).encode())
            == config["payload_available"]
        )
        assert config["payload_not_available"] == "offline"
        # State: the device's prediction topic receives messages the template reads.
        assert config["state_topic"] == f"predictions/{device}/tiny"
        last = [p for t, p in col.messages if t == config["state_topic"]][-1]
        prediction = json.loads(last)
        state = render(config["value_template"], last)
        if topic.endswith("_label/config"):
            assert state == prediction["label"] and state in {"0", "1", "2", "3"}
            assert json.loads(render(config["json_attributes_template"], last)) == prediction["probabilities"]
        else:
            assert topic.endswith("_confidence/config")
            assert config["unit_of_measurement"] == "%" and config["state_class"] == "measurement"
            assert state == round(prediction["probabilities"][prediction["label"]] * 100, 1)
            assert 25 <= state <= 100  # the top of 4 probabilities
    assert len(unique_ids) == 4 and len(nodes) == 2

    # The devices go quiet: evicted after the 2 s TTL, their sensors are removed (empty retained configs).
    assert col.wait_for(
        lambda: sum(1 for t, p in col.messages if t.startswith("homeassistant/") and p == b"") == 4
    )
    assert retained(mosquitto.port, "homeassistant/#") == {}
    stop_service(svc, thread)
    pub.loop_stop()


def test_node_ids_are_safe_and_never_collide() -> None:
    ids = ["dev1", "a.b", "a b", "a_b", "a-b", "a+b", "a_b_" + "0" * 16, "é", "e", "\n", "x" * 128, "x" * 129]
    nodes = [node_id(d) for d in ids]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in nodes)
    assert len(set(nodes)) == len(ids)
    assert node_id("dev1") == "dev1" and node_id("a-b") == "a-b"  # plain ids stay readable


def test_a_regression_model_gets_one_sensor_per_output() -> None:
    configs = sensor_configs("ha", "d1", "co2", "predictions/d1/co2", "rnnzoo/status", None, 2)
    assert [t for t, _ in configs] == ["ha/sensor/d1/co2_output0/config", "ha/sensor/d1/co2_output1/config"]
    assert render(configs[1][1]["value_template"], b'{"step": 0, "outputs": [1.5, 2.5]}') == 2.5


@pytest.mark.parametrize(
    "service, message",
    [
        ({"homeassistant": "home/+"}, "must be a topic without wildcards"),
        ({"homeassistant": "/ha"}, "must be a topic without wildcards"),
        ({"homeassistant": True, "output": "batch"}, "needs a prediction topic per device"),
        ({"homeassistant_remove": True}, "homeassistant_remove is set but homeassistant"),
        ({"homeassistant": 1}, "should be bool | str | None"),
    ],
)
def test_homeassistant_settings_are_checked(service: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({"service": service, "bindings": [{"topic": "sensors/+/imu", "model": "tiny"}]})


def test_true_means_the_default_prefix_and_a_string_is_the_prefix() -> None:
    binding = [{"topic": "sensors/+/imu", "model": "tiny"}]
    assert from_dict({"service": {"homeassistant": True}, "bindings": binding}).service.homeassistant == (
        "homeassistant"
    )
    assert from_dict(
        {"service": {"homeassistant": "ha/disc"}, "bindings": binding}
    ).service.homeassistant == ("ha/disc")
    assert from_dict({"service": {"homeassistant": False}, "bindings": binding}).service.homeassistant is None
