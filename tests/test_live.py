"""The live page (streaming.live, `--ui`): bounded memory, token, read-only, escaping — and, in a real headless
Chromium against a real service on a real Mosquitto, the page a person sees."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from streaming.live import (
    STATIC_FILES,
    Fleet,
    LiveFeed,
    LiveServer,
    add_ui_arguments,
    bucket_quantile,
    start_ui,
)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
HOSTILE = "<img src=x onerror=alert(1)>"
# The browser test's screenshot is kept in its tmp_path; with RNNZOO_UPDATE_SCREENSHOTS=1 it also replaces this one.
SCREENSHOT = ROOT / "docs" / "images" / "live.png"


class FixedFleet(Fleet):
    transport = "test"

    def __init__(self) -> None:
        super().__init__()
        self.readings = 0

    def counts(self) -> dict:
        return {
            "readings": self.readings,
            "errors": {"bad payload": 2},
            "devices": 3,
            "evictions": {"idle": 1, "lru": 0},
            "connected": True,
            "latency": ([0.01, 0.1, float("inf")], [1, 5, 6]),
        }


def _get(server: LiveServer, path: str, headers: dict | None = None, method: str = "GET", read: int = -1):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(method, path, headers={"Host": f"127.0.0.1:{server.port}", **(headers or {})})
    resp = conn.getresponse()
    body = resp.read(read) if read >= 0 else resp.read()
    conn.close()
    return resp, body


def _first_events(
    server: LiveServer, path: str, n: int, headers: dict | None = None
) -> list[tuple[str, object]]:
    """The first `n` named events of an SSE stream."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", path, headers={"Host": f"127.0.0.1:{server.port}", **(headers or {})})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    events, name = [], None
    while len(events) < n:
        line = resp.fp.readline().decode()
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    conn.close()
    return events


@pytest.fixture
def live():
    feed = LiveFeed(ring=5, max_devices=100, history_devices=4)
    feed.add_model("act", ["walking", "running"])
    server = LiveServer(feed, FixedFleet(), interval_s=0.05).start()
    yield feed, server
    server.stop()


# -- bounded memory -------------------------------------------------------------------------------------------


def test_the_table_and_the_rings_stay_within_their_bounds() -> None:
    feed = LiveFeed(ring=5, max_devices=3, history_devices=2)
    feed.add_model("act", ["a", "b"])
    for step in range(20):
        feed.predictions("act", ["d1", "d2"], [step, step], [[0.9, 0.1], [0.2, 0.8]], [[1.0], [2.0]])
    assert [len(feed.history(d)) for d in ("d1", "d2")] == [5, 5]  # the ring keeps the last 5 points
    assert [p[1] for p in feed.history("d1")] == [15, 16, 17, 18, 19]
    feed.predictions("act", ["d3", "d4"], [0, 0], [[0.5, 0.5], [0.6, 0.4]])
    assert len(feed) == 3 and feed.dropped == 1  # d1, the least recently seen, made room for d4
    assert feed.row("d1") is None and feed.history("d1") == []
    assert feed.history("d3") == []  # d3 came after the two rings were handed out (d1 went with its row)
    assert feed.watch("d4") and feed.watch("d3")  # a page asks: the least recently watched ring goes
    assert len(feed._history) == 2
    assert not feed.watch("never-seen")  # no ring for an id nobody published: a page cannot grow memory


def test_a_row_shows_the_label_and_confidence_or_the_first_outputs() -> None:
    feed = LiveFeed()
    feed.add_model("act", ["walking", "running"])
    feed.add_model("forecast", None)
    feed.predictions("act", ["a"], [7], [[0.25, 0.75]], now=100.0)
    feed.predictions("forecast", ["f"], [3], [[1.5, 2.5, 3.5, 4.5, 5.5]], now=101.0)
    feed.error("a", "stale timestamp", "act", now=102.0)
    version, rows = feed.rows_since(0)
    by_id = {r[0]: r for r in rows}
    assert by_id["a"][1:] == ["act", 7, "running", 0.75, None, 102.0, 1, "stale timestamp"]
    assert by_id["f"][1:6] == ["forecast", 3, None, None, [1.5, 2.5, 3.5, 4.5]]
    assert feed.rows_since(version) == (version, [])  # nothing changed since: nothing to send
    feed.predictions("forecast", ["f"], [4], [[0, 0, 0, 0]])
    assert [r[0] for r in feed.rows_since(version)[1]] == ["f"]


def test_histogram_quantiles_interpolate_inside_the_bucket_as_prometheus_does() -> None:
    bounds = [0.01, 0.1, 1.0, float("inf")]
    assert bucket_quantile(0.5, bounds, [0, 10, 10, 10]) == pytest.approx(0.055)
    assert bucket_quantile(0.99, bounds, [50, 90, 100, 100]) == pytest.approx(0.91)
    assert bucket_quantile(0.5, bounds, [0, 0, 0, 0]) is None
    assert bucket_quantile(0.99, bounds, [0, 0, 0, 4]) == 1.0  # past the last bound: the bound


# -- the server: read-only, token, host, assets ---------------------------------------------------------------


def test_the_page_and_every_asset_ship_in_the_package_and_load_nothing_from_elsewhere(live) -> None:
    _, server = live
    for name in STATIC_FILES:
        resp, body = _get(server, f"/static/{name}")
        assert resp.status == 200 and body, name
        assert resp.getheader("Content-Security-Policy").startswith("default-src 'none'")
    resp, page = _get(server, "/")
    assert resp.status == 200
    html = page.decode()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not re.match(r"[a-z]+://|//", ref), f"the page loads {ref} from elsewhere"
        if ref.startswith("static/"):
            assert ref[len("static/") :] in STATIC_FILES
    script = (ROOT / "streaming" / "static" / "live.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


def test_the_server_is_read_only_and_answers_loopback_names_only(live) -> None:
    _, server = live
    for method in ("POST", "PUT", "DELETE"):
        assert _get(server, "/events", method=method)[0].status == 405
    assert _get(server, "/", headers={"Host": "attacker.example:80"})[0].status == 421  # DNS rebinding
    assert _get(server, "/", headers={"Host": f"localhost:{server.port}"})[0].status == 200
    assert _get(server, "/static/../live/server.py")[0].status == 404
    assert server.url.startswith("http://127.0.0.1:")


def test_with_a_token_the_streams_need_it() -> None:
    feed = LiveFeed()
    server = LiveServer(feed, None, token="s3cret", interval_s=0.05).start()
    try:
        assert _get(server, "/events")[0].status == 401
        assert _get(server, "/events?token=wrong")[0].status == 401
        assert _get(server, "/events/device?id=x")[0].status == 401
        assert _first_events(server, "/events?token=s3cret", 1)[0][0] == "hello"
        assert _first_events(server, "/events", 1, {"Authorization": "Bearer s3cret"})[0][0] == "hello"
        assert server.url.endswith("/?token=s3cret")
        assert _get(server, "/")[0].status == 200  # the page itself holds no data
    finally:
        server.stop()


def test_the_streams_push_rows_fleet_figures_and_a_devices_points(live) -> None:
    feed, server = live
    feed.predictions(
        "act", ["a", HOSTILE + "\nevent: fake"], [1, 1], [[0.3, 0.7], [0.9, 0.1]], [[1.0], [2.0]]
    )
    events = dict(_first_events(server, "/events", 3))
    assert events["hello"] == {"models": {"act": ["walking", "running"]}, "ring": 5}
    ids = {r[0] for r in events["rows"]}
    assert ids == {"a", HOSTILE + "\nevent: fake"}  # a newline in an id stays inside one JSON string
    fleet = events["fleet"]
    assert fleet["devices"] == 3 and fleet["errors"] == {"bad payload": 2}
    assert fleet["latency_p50_s"] == pytest.approx(0.01 + 0.09 * (2 / 4))
    device = _first_events(server, "/events/device?id=a", 2)
    assert device[0] == ("device", {"id": "a", "known": True, "model": "act"})
    assert device[1][0] == "points" and device[1][1][0][2] == [0.3, 0.7] and device[1][1][0][3] == [1.0]


def test_a_non_finite_number_goes_out_as_null_not_as_a_broken_stream() -> None:
    from streaming.live.server import _event

    body = _event("points", [[1, 2.0, [float("nan"), 0.5], [float("inf")]]]).decode()
    assert body == "event: points\ndata: [[1,2.0,[null,0.5],[null]]]\n\n"


def test_ui_flags_parse_once_for_every_command_and_start_only_when_asked(monkeypatch) -> None:
    parser = argparse.ArgumentParser()
    add_ui_arguments(parser)
    assert start_ui(parser.parse_args([]), lambda: None, {}) is None
    args = parser.parse_args(["--ui", "--ui-token-env", "RNNZOO_TEST_UI_TOKEN"])
    assert args.ui == 0 and args.ui_host == "127.0.0.1"
    with pytest.raises(ValueError, match="RNNZOO_TEST_UI_TOKEN"):
        start_ui(args, lambda: None, {})
    monkeypatch.setenv("RNNZOO_TEST_UI_TOKEN", "t0k")
    feed, server = start_ui(args, lambda: None, {"m": ["x", "y"]})
    try:
        assert feed.models == {"m": ["x", "y"]} and server.token == "t0k" and server.port > 0
    finally:
        server.stop()
    with pytest.raises(SystemExit):
        parser.parse_args(["--ui", "70000"])


def test_serve_and_worker_both_take_the_ui_flags() -> None:
    from streaming.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    for command in ("serve", "worker"):
        args = parser.parse_args([command, "--ui", "9300", "--ui-host", "::1"])
        assert (args.ui, args.ui_host) == (9300, "::1")


def test_a_batch_holding_several_readings_of_a_device_keeps_them_in_order() -> None:
    feed = LiveFeed(ring=10)
    feed.add_model("act", ["a", "b"])
    feed.predictions("act", ["d", "e", "d"], [0, 0, 1], [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    assert feed.row("d")[1:4] == [1, "b", 0.8]
    assert [p[1] for p in feed.history("d")] == [0, 1]


def test_a_service_on_mosquitto_feeds_the_page_its_predictions_errors_and_figures(mosquitto) -> None:
    """The hook in the service (Service.observer) and the fleet figures read from its collector, without a
    browser: what the quick suite checks of the refactorable part."""
    from conftest import publisher, start_service, stop_service, tiny_model

    from streaming.live import ServiceFleet

    svc, thread = start_service(mosquitto.url, tiny_model(), metrics_port=0)
    feed = LiveFeed()
    feed.add_model("tiny", svc.routes[0].model.class_names)
    svc.observer = feed
    try:
        pub = publisher(mosquitto.port)
        for step in range(3):
            for device in ("p1", HOSTILE):
                pub.publish(
                    f"sensors/{device}/imu", json.dumps({"values": [step, 0.5, 1.0], "t": time.time()}), 1
                )
        pub.publish("sensors/p2/imu", b"{not json", 1)
        _wait(
            lambda: feed.row("p1") is not None and feed.row("p1")[1] == 2 and feed.row("p2") is not None, 10
        )
        p1 = feed.row("p1")
        assert p1[0] == "tiny" and p1[2] in svc.routes[0].model.class_names and 0 < p1[3] <= 1
        assert feed.row(HOSTILE)[1] == 2 and len(feed.history("p1")) == 3
        assert feed.row("p2")[6:8] == [1, "not JSON"]
        figures = ServiceFleet(svc).figures()
        assert figures["readings"] == 6 and figures["devices"] == 2 and figures["errors"] == {"not JSON": 1}
        assert figures["connected"] is True and figures["latency_p50_s"] is not None
    finally:
        svc.observer = None
        stop_service(svc, thread)


# -- in a real browser, against a real service on a real Mosquitto ----------------------------------------------


def _browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/setup.sh installs Debian's)")
    sync_api = pytest.importorskip("playwright.sync_api")
    return sync_api


def _launch(p):
    """Debian's Chromium, headless. --disable-dev-shm-usage: a container's /dev/shm is often 64 MB, and Chromium
    keeps its renderers' shared memory there; when it fills, the renderer dies and the page reads as closed."""
    return p.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )


def _until(page, expression: str, timeout: float) -> float:
    """Seconds until the page's `expression` is true. Polled from here with page.evaluate: the page's CSP (no
    eval) refuses Playwright's own wait_for_function, as it would refuse any injected string."""
    return _wait(lambda: bool(page.evaluate(f"() => {expression}")), timeout)


def _wait(predicate, timeout: float, every: float = 0.05) -> float:
    """Seconds until predicate() held; AssertionError after `timeout`."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(every)
    return time.monotonic() - began


@pytest.mark.slow
def test_in_chromium_the_page_shows_the_fleet_live_escapes_ids_and_survives_a_broker_restart(
    mosquitto, tmp_path
) -> None:
    sync_api = _browser()
    from conftest import publisher

    import zoo
    from streaming.config import from_dict
    from streaming.live import ServiceFleet
    from streaming.models import serve_model
    from streaming.service import Service

    model = "activity-gru-causal"
    served = serve_model(model)
    X, y = zoo.test_data(model)
    settings = from_dict(
        {
            "broker": {"url": mosquitto.url, "connect_timeout_s": 5.0},
            "service": {"max_delay_ms": 2, "status_interval_s": 0.5, "metrics_port": 0},
            "bindings": [{"topic": "sensors/+/imu", "model": model}],
        }
    )
    svc = Service(settings, models={0: served})
    feed = LiveFeed()
    feed.add_model(served.name, served.class_names)
    svc.observer = feed
    server = LiveServer(feed, ServiceFleet(svc)).start()
    import threading

    thread = threading.Thread(target=svc.run, daemon=True)
    thread.start()
    assert svc.wait_connected(10)
    time.sleep(0.3)
    pub = publisher(mosquitto.port)
    # One recording of each activity per device, so the table shows the model telling them apart.
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    devices = [f"imu-{room}-{i}" for room in ("hall", "gym", "lab") for i in range(4)]
    recording = {d: X[by_class[i % len(by_class)][i // len(by_class)]] for i, d in enumerate(devices)}

    def send(device: str, step: int, values=None) -> None:
        v = recording[device][step % X.shape[1]] if values is None else values
        pub.publish(
            f"sensors/{device}/imu", json.dumps({"values": np.asarray(v).tolist(), "t": time.time()}), 1
        )

    steps = 60
    for step in range(steps):
        for d in devices:
            send(d, step)
    recording[HOSTILE] = X[0]
    send(HOSTILE, 0)
    pub.publish("sensors/imu-gym-1/imu", b"not json", 1)  # an error the page counts against the device
    _wait(lambda: len(feed) == len(devices) + 1 and feed.row("imu-lab-3")[1] == steps - 1, 20)

    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 820})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            _until(page, f"window.__live.stats.devices >= {len(devices) + 1}", 10.0)
            shown = set(page.locator(".row > span:first-child").all_text_contents())
            assert set(devices) | {HOSTILE} <= shown  # every device that published, the hostile id as text
            assert page.locator("#tbody img").count() == 0 and not dialogs
            assert page.locator(".row", has_text="imu-gym-1").locator(".bad").count() == 1

            # A new reading shows within 2 s (the stream pushes every 0.5 s).
            def step_shown(device: str) -> int:
                cells = page.locator(".row", has=page.get_by_text(device, exact=True)).locator("span")
                return int(cells.nth(2).text_content())

            sent = time.monotonic()
            send("imu-hall-0", steps)
            _wait(lambda: step_shown("imu-hall-0") == steps, 2.0)
            assert time.monotonic() - sent < 2.0

            # The chart of a selected device: its class probabilities over the last steps.
            page.locator(".row", has=page.get_by_text("imu-gym-2", exact=True)).click()
            _until(page, "window.__live.stats.points >= 50", 5.0)
            assert page.locator("#chart canvas").count() == 1
            assert page.locator("#detail-title").text_content() == "imu-gym-2"
            _until(
                page, "document.getElementById('f-p50').textContent !== '–'", 5.0
            )  # latency from the service's histograms
            page.screenshot(path=str(tmp_path / "live.png"))  # the test's artefact
            if os.environ.get("RNNZOO_UPDATE_SCREENSHOTS"):  # the one the docs and README show
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(tmp_path / "live.png", SCREENSHOT)

            # The broker dies: the page stays up and says so; it comes back; new readings show again.
            mosquitto.kill()
            _until(page, "document.getElementById('status').textContent.includes('broker down')", 10.0)
            assert page.locator(".row").count() > 0
            mosquitto.start()
            assert _wait(lambda: svc.connected, 30) >= 0
            pub2 = publisher(mosquitto.port)
            time.sleep(0.5)  # the service's SUBACK
            pub = pub2
            send("imu-lab-0", steps + 5)
            _wait(lambda: step_shown("imu-lab-0") == steps, 10)
            _until(page, "document.getElementById('status').textContent === 'live'", 10.0)
            assert not errors and not dialogs
        finally:
            browser.close()
            svc.stop()
            thread.join(10)
            server.stop()


def read_events(url: str, until, timeout: float = 20.0) -> list[tuple[str, object]]:
    """Named events of the SSE stream at `url` until `until(events)` holds (AssertionError after `timeout`)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    events: list[tuple[str, object]] = []
    name, deadline = None, time.monotonic() + timeout
    try:
        while not until(events):
            assert time.monotonic() < deadline, f"not within {timeout} s: {events[-3:]}"
            line = resp.fp.readline().decode()
            if line.startswith("event: "):
                name = line[7:].strip()
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    finally:
        conn.close()
    return events


def rows_seen(events: list[tuple[str, object]]) -> dict[str, list]:
    return {r[0]: r for name, rows in events if name == "rows" for r in rows}


def wait_log(path: Path, pattern: str, timeout: float = 60.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(errors="replace")) if path.exists() else None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not in {path}:\n{path.read_text(errors='replace')[-2000:]}")


@pytest.mark.slow
def test_rnnzoo_serve_ui_serves_the_page_of_what_it_serves(mosquitto, tmp_path, monkeypatch) -> None:
    """The command line, as a user runs it: `serve --ui --ui-token-env`, the URL in its log, devices on the page."""
    import subprocess
    import sys

    from conftest import publisher, tiny_model

    path = tmp_path / "tiny.keras"
    tiny_model().save(path)
    log = tmp_path / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), RNNZOO_UI_TOKEN="t-42")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streaming", "serve", "--model", str(path), "--topic", "sensors/+/imu"]
            + ["--broker", mosquitto.url, "--ui", "--ui-token-env", "RNNZOO_UI_TOKEN"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = wait_log(log, r"live page on (http://127\.0\.0\.1:\d+/\?token=t-42)").group(1)
        wait_log(log, r"subscribed|metrics on")
        time.sleep(0.5)
        pub = publisher(mosquitto.port)
        for step in range(3):
            for device in ("cli-a", "cli-b"):
                pub.publish(f"sensors/{device}/imu", json.dumps({"values": [step, 1.0, 2.0]}), 1)
        base = url.split("?")[0]
        events = read_events(base + "events?token=t-42", lambda ev: len(rows_seen(ev)) >= 2, 20)
        rows = rows_seen(events)
        assert rows["cli-a"][2] == 2 and rows["cli-b"][1] == "tiny"
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(base + "events", timeout=5)  # no token: refused
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
def test_in_chromium_a_tokened_page_streams_and_filters_and_sorts_its_table() -> None:
    sync_api = _browser()
    feed = LiveFeed()
    feed.add_model("act", ["walking", "running"])
    ids = [f"unit-{i:03d}" for i in range(250)]
    feed.predictions("act", ids, list(range(250)), [[0.9, 0.1]] * 250)
    feed.error("unit-007", "bad payload", "act")
    server = LiveServer(feed, FixedFleet(), token="tok en/+?").start()
    try:
        with sync_api.sync_playwright() as p:
            browser = _launch(p)
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            page.goto(server.url)  # the URL the service logs carries the token; the page passes it on
            _until(page, "window.__live.stats.devices === 250", 10.0)
            assert page.locator("#count").text_content() == "250 devices"
            assert 0 < page.locator(".row").count() < 250  # virtualised
            page.fill("#filter", "unit-00")
            _until(page, "document.getElementById('count').textContent === '10 of 250 devices'", 5.0)
            page.fill("#filter", "")
            page.locator('.thead span[data-key="errors"]').click()  # most errors first
            _until(page, "document.querySelector('.row span').textContent === 'unit-007'", 5.0)
            browser.close()
    finally:
        server.stop()
