"""`--metrics-port`: Prometheus /metrics equal to what was sent, /readyz following the broker, /healthz steady.

One Mosquitto and one service for the file (module fixtures); the tests run in order and count by differences,
so the readiness test's broker restart cannot disturb the counting test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import MOSQUITTO, Mosquitto, publisher, start_service, stop_service, tiny_model
from prometheus_client.parser import text_string_to_metric_families

from streaming.cli import main as streaming_main
from streaming.config import ConfigError, from_dict


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    if not shutil.which(MOSQUITTO) and not os.path.exists(MOSQUITTO):
        pytest.skip(f"no mosquitto binary at {MOSQUITTO}")
    b = Mosquitto(tmp_path_factory.mktemp("metrics-broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def served(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory):
    snapshot = tmp_path_factory.mktemp("metrics-state") / "state.npz"
    svc, thread = start_service(
        broker.url, tiny_model(), metrics_port=0, snapshot_path=str(snapshot), snapshot_interval_s=0.5
    )
    svc.thread = thread  # the last test stops it
    yield svc
    if thread.is_alive():
        stop_service(svc, thread)


def get(svc, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.http.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(svc) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one /metrics scrape, parsed by prometheus_client's parser."""
    status, text = get(svc, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_scraped_counts_equal_what_was_sent(served) -> None:
    before = scrape(served)
    pub = publisher(served.settings.broker.port)
    devices, per_device, not_json, short = ["m1", "m2", "m3"], 60, 7, 5
    scrapes: list[int] = []
    scraper = threading.Thread(target=lambda: [scrapes.append(get(served, "/metrics")[0]) for _ in range(5)])
    t0 = time.time() - 1.0  # stamps in the past: a quick answer still has a latency >= 0
    for k in range(per_device):
        for d in devices:
            pub.publish(f"sensors/{d}/imu", json.dumps({"values": [0.1 * k, 0.2, -0.3], "t": t0 + k * 1e-3}))
        if k == per_device // 2:
            scraper.start()  # scrapes while readings flow
        if k < not_json:
            pub.publish("sensors/m1/imu", b"{not json")
        if k < short:
            pub.publish("sensors/m2/imu", b"[1, 2]")
    sent, readings = len(devices) * per_device + not_json + short, len(devices) * per_device
    scraper.join(10)
    assert scrapes == [200] * 5
    predicted = value(before, "rnnzoo_predictions_total", model="tiny")
    assert wait_until(lambda: served.counters["predictions"] >= predicted + readings)
    assert wait_until(lambda: sum(served.error_reasons.values()) >= not_json + short)
    pub.loop_stop()
    after = scrape(served)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("rnnzoo_messages_received_total") == sent
    assert delta("rnnzoo_readings_total", model="tiny") == readings
    assert delta("rnnzoo_predictions_total", model="tiny") == readings
    assert delta("rnnzoo_errors_total", model="tiny", reason="not JSON") == not_json
    assert delta("rnnzoo_errors_total", model="tiny", reason="wrong number of values") == short
    assert sum(v for (n, _), v in after.items() if n == "rnnzoo_errors_total") == sum(
        served.error_reasons.values()
    )
    assert value(after, "rnnzoo_devices", model="tiny") >= len(devices)
    # Every message went through a micro-batch; every stamped reading has a latency.
    assert delta("rnnzoo_batch_size_sum") == sent
    assert value(after, "rnnzoo_batch_size_count") == served.counters["batches"]
    assert value(after, "rnnzoo_batch_size_bucket", le="+Inf") == value(after, "rnnzoo_batch_size_count")
    assert delta("rnnzoo_latency_seconds_count", model="tiny") == readings
    assert delta("rnnzoo_step_seconds_count", model="tiny") >= 1
    assert value(after, "rnnzoo_broker_connected") == 1
    assert value(after, "rnnzoo_model_info", model="tiny", mode="step") == 1
    assert ("rnnzoo_publish_dropped_total", ()) in after and ("rnnzoo_reconnects_total", ()) in after
    assert value(after, "process_resident_memory_bytes") > 0
    assert wait_until(lambda: value(scrape(served), "rnnzoo_snapshot_seconds_count") >= 1)
    assert 0 <= value(scrape(served), "rnnzoo_snapshot_age_seconds") < 5


def test_readyz_follows_the_broker_and_healthz_stays_up(served, broker: Mosquitto) -> None:
    assert get(served, "/readyz") == (200, "ready\n")
    assert get(served, "/healthz") == (200, "alive\n")
    reconnects = value(scrape(served), "rnnzoo_reconnects_total")
    broker.kill()
    assert wait_until(lambda: get(served, "/readyz")[0] == 503), get(served, "/readyz")
    status, body = get(served, "/readyz")
    assert "not connected to mqtt://127.0.0.1:" in body
    assert get(served, "/healthz") == (200, "alive\n")
    assert value(scrape(served), "rnnzoo_broker_connected") == 0
    broker.restart()
    assert wait_until(lambda: get(served, "/readyz")[0] == 200, timeout=15), get(served, "/readyz")
    assert get(served, "/healthz")[0] == 200
    after = scrape(served)
    assert value(after, "rnnzoo_broker_connected") == 1
    assert value(after, "rnnzoo_reconnects_total") >= reconnects + 1


def test_unknown_paths_get_404(served) -> None:
    status, body = get(served, "/")
    assert status == 404 and "/metrics" in body


def test_stopping_the_service_releases_the_port(served) -> None:
    port = served.http.port
    stop_service(served, served.thread)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with socket.socket() as s:  # a restarted service can bind it again (SO_REUSEADDR, as it binds)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    assert served.liveness() == (False, "not running: the service loop has ended")


def test_a_taken_metrics_port_is_one_clear_error(broker: Mosquitto) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = from_dict(
            {
                "broker": {"url": broker.url},
                "service": {"metrics_port": port},
                "bindings": [{"topic": "sensors/+/imu", "model": "tiny"}],
            }
        )
        from streaming.models import build_served
        from streaming.service import Service

        svc = Service(settings, models={0: build_served(tiny_model(), None, "tiny")})
        with pytest.raises(OSError, match=f"metrics port 127.0.0.1:{port}: Address already in use"):
            svc.run()


@pytest.mark.parametrize(
    "service, message",
    [
        ({"metrics_port": 70000}, "metrics_port must be 0..65535"),
        ({"metrics_port": "9100"}, "metrics_port = '9100' should be int | None"),
        ({"metrics_host": ""}, "metrics_host must not be empty"),
    ],
)
def test_metrics_settings_are_checked(service: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({"service": service, "bindings": [{"topic": "sensors/+/imu", "model": "tiny"}]})


def test_a_bad_metrics_port_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        streaming_main(["serve", "--model", "tiny", "--topic", "s/+/imu", "--metrics-port", "70000"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("argument --metrics-port: must be 0..65535 (0: any free port), got 70000")


def test_latency_histogram_small_and_large_waves_agree() -> None:
    import numpy as np

    from streaming.metrics import LATENCY_BUCKETS, SMALL_WAVE, Histogram

    now = 1.8e9
    latencies = np.concatenate([np.random.default_rng(0).uniform(0, 70, 200), LATENCY_BUCKETS])  # edges too
    t = now - latencies
    t[::7] *= 1000.0  # milliseconds since the epoch are recognised
    t = np.concatenate([t, [np.nan, now + 5.0]])  # no `t`, and a device clock ahead of ours: not observed
    one_by_one, at_once = Histogram(LATENCY_BUCKETS), Histogram(LATENCY_BUCKETS)
    for stamp in t:
        one_by_one.observe_latencies(np.array([stamp]), now)
    assert t.size > SMALL_WAVE
    at_once.observe_latencies(t, now)
    assert one_by_one.counts == at_once.counts and sum(at_once.counts) == latencies.size
    assert abs(one_by_one.sum - at_once.sum) < 1e-6
    buckets, total = at_once.cumulative()
    assert buckets[-1] == ("+Inf", latencies.size) and buckets[0][0] == "0.001"
