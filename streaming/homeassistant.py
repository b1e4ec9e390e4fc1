"""Home Assistant MQTT discovery: each device the service serves shows up in Home Assistant by itself.

When a device's first reading is answered, the service publishes retained sensor configs to
`<prefix>/sensor/<node_id>/<object_id>/config` (Home Assistant's MQTT discovery; prefix `homeassistant` by
default). For a classifier, two sensors per device and model: the predicted label (with the class
probabilities as attributes) and its confidence in %. For other models, one sensor per output (at most
MAX_OUTPUT_SENSORS). Both read the device's prediction topic, and are available while the service's retained
status says `{"state": "online"}` (its last will says offline).

Device ids come from whoever publishes, so they are never trusted with a topic level or an id:

- node_id: an id made only of `[A-Za-z0-9-]` is used as it is; any other is reduced to those characters
  (others become `_`, at most 64 kept) and given `_` + 16 hex digits of its sha256. Plain ids never hold `_`
  and reduced ones always do, so the two kinds cannot meet, and two ids that reduce alike (`a.b`, `a b`)
  differ in their hash: no device can take over another's sensors.
- the device's own id goes into the configs only as a JSON string (the device's name) and inside the
  prediction topic the service already publishes to.

Removal (`homeassistant_remove`, off by default): at each eviction sweep, the sensors of devices whose state
is gone (idle past the TTL, evicted to make room, or reset and not heard from since) are removed with an
empty retained config. Off by default, because a device that sends once a day is evicted by the default
TTL of an hour, and Home Assistant should keep showing it. After a reconnect every device is announced again
at its next reading: a broker without persistence forgets retained configs when it restarts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.service import Route

MAX_OUTPUT_SENSORS = 8
MANUFACTURER = "rnn-zoo"
_PLAIN = re.compile(r"[A-Za-z0-9-]+")

# Publishes (topic, payload, qos, retain); the service's own publish, which counts what it drops.
Publish = Callable[[str, str, int, bool], None]


def node_id(device: str) -> str:
    """A discovery node_id for a device id: only [A-Za-z0-9_-], and distinct for distinct ids."""
    if _PLAIN.fullmatch(device):
        return device
    reduced = re.sub(r"[^A-Za-z0-9-]", "_", device)[:64]
    return f"{reduced}_{hashlib.sha256(device.encode()).hexdigest()[:16]}"


def object_part(name: str) -> str:
    """A model name as the first part of an object_id, by the node_id rule: two bindings whose model names
    differ only in characters a topic level cannot hold (`a.b`, `a_b`) still get sensors of their own."""
    return node_id(name)


def sensor_configs(
    prefix: str,
    device: str,
    model: str,
    state_topic: str,
    status_topic: str,
    class_names: list[str] | None,
    n_outputs: int,
) -> list[tuple[str, dict[str, Any]]]:
    """[(config topic, config)] of a device's sensors for one model, as Home Assistant's MQTT sensor
    documents them."""
    node = node_id(device)
    common: dict[str, Any] = {
        "state_topic": state_topic,
        "availability_topic": status_topic,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [f"rnnzoo:{node}"],
            "name": device,
            "model": model,
            "manufacturer": MANUFACTURER,
        },
        "origin": {"name": MANUFACTURER},
    }
    sensors: list[tuple[str, dict[str, Any]]] = []
    if class_names:
        sensors.append(
            (
                "label",
                {
                    "name": f"{model} label",
                    "value_template": "{{ value_json.label }}",
                    "json_attributes_topic": state_topic,
                    "json_attributes_template": "{{ value_json.probabilities | tojson }}",
                    "icon": "mdi:label-outline",
                },
            )
        )
        sensors.append(
            (
                "confidence",
                {
                    "name": f"{model} confidence",
                    "value_template": "{{ (value_json.probabilities[value_json.label] * 100) | round(1) }}",
                    "unit_of_measurement": "%",
                    "state_class": "measurement",
                    "suggested_display_precision": 1,
                },
            )
        )
    else:
        for i in range(min(n_outputs, MAX_OUTPUT_SENSORS)):
            sensors.append(
                (
                    f"output{i}",
                    {
                        "name": f"{model} output {i}",
                        "value_template": f"{{{{ value_json.outputs[{i}] }}}}",
                        "state_class": "measurement",
                    },
                )
            )
    out = []
    for suffix, config in sensors:
        object_id = f"{object_part(model)}_{suffix}"
        config = {**config, **common, "unique_id": f"rnnzoo:{node}:{object_id}"}
        out.append((f"{prefix}/sensor/{node}/{object_id}/config", config))
    return out


class Discovery:
    """Announces devices to Home Assistant as the service first answers them, and removes them if asked.

    Args:
        prefix: the discovery prefix (Home Assistant's default is `homeassistant`).
        status_topic: the service's retained status topic, used as the sensors' availability.
        remove: publish empty configs for devices whose state is gone, at each eviction sweep.
        publish: the service's publish (topic, payload, qos, retain).
    """

    def __init__(self, prefix: str, status_topic: str, remove: bool, publish: Publish):
        self.prefix = prefix
        self.status_topic = status_topic
        self.remove = remove
        self._publish = publish
        # route key -> {device: the connection generation it was last announced in}; a reconnect starts a new
        # generation, so every device is announced again while the sweep still knows all of them.
        self._announced: dict[str, dict[str, int]] = {}
        self._generation = 0

    def _configs(self, route: Route, device: str) -> list[tuple[str, dict[str, Any]]]:
        model = route.model
        return sensor_configs(
            self.prefix,
            device,
            model.name,
            route.output_topic(device),
            self.status_topic,
            model.class_names,
            model.engine.n_outputs,
        )

    def announce(self, route: Route, devices: Iterable[str]) -> None:
        """Publish configs for the devices of `route` not announced yet (retained, QoS 1)."""
        known = self._announced.setdefault(route.key, {})
        generation = self._generation
        for device in devices:
            if known.get(device) == generation:
                continue
            for topic, config in self._configs(route, device):
                self._publish(topic, json.dumps(config), 1, True)
            known[device] = generation

    def sweep(self, route: Route) -> None:
        """Forget devices whose state `route` no longer holds; remove their sensors when configured to."""
        known = self._announced.get(route.key)
        if not known:
            return
        table = route.table
        for device in [device for device in known if device not in table]:
            del known[device]
            if self.remove:
                for topic, _ in self._configs(route, device):
                    self._publish(topic, "", 1, True)

    def reconnected(self) -> None:
        """After a reconnect: announce every device again at its next reading."""
        self._generation += 1
