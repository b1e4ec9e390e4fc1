"""The live page with 10,000 devices in headless Chromium: time to render the table, time to apply an update.

A LiveFeed is filled directly (no broker: this measures the page and its server, not the service), a LiveServer
serves it, and Debian's Chromium (driven by Playwright) opens the page. Measured:

- render: from navigation until the table holds every device and has drawn its first rows (wall clock), and
  inside the page the time to apply the first `rows` event (JSON parse + store) and to draw the visible rows;
- update: a wave of `--wave` devices gets new predictions; inside the page the time to apply that `rows` event
  and to redraw, and the wall time until the page shows it (this includes the stream's 0.5 s push interval);
- sort (10,000 rows by last seen, then redraw) and scroll to the middle (redraw);
- on the server: LiveFeed.predictions per reading, one full `rows_since(0)` (what a new page is sent) and the
  `rows_since` of one update (what every open page is sent each push), both under the lock the service's thread
  also takes.

    .venv/bin/python benchmarks/live_bench.py --json benchmarks/results/live_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from results_file import write_json  # noqa: E402

from streaming.live import LiveFeed, LiveServer  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CLASSES = ["badminton", "running", "standing", "walking"]


def _until(page, expression: str, timeout: float = 30.0) -> float:
    began = time.perf_counter()
    while not page.evaluate(f"() => {expression}"):
        if time.perf_counter() - began > timeout:
            raise TimeoutError(expression)
        time.sleep(0.005)
    return time.perf_counter() - began


def fill(feed: LiveFeed, devices: int, rng: np.random.Generator, step: int = 0) -> float:
    """Every device gets one prediction, in waves of 512 as the service steps them; seconds per reading."""
    ids = [f"device-{i:05d}" for i in range(devices)]
    began = time.perf_counter()
    for i in range(0, devices, 512):
        chunk = ids[i : i + 512]
        feed.predictions("activity", chunk, [step] * len(chunk), rng.dirichlet([1] * 4, size=len(chunk)))
    return (time.perf_counter() - began) / devices


def measure(devices: int, wave: int, updates: int) -> dict:
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    feed = LiveFeed(max_devices=max(devices, 1))
    feed.add_model("activity", CLASSES)
    per_reading = fill(feed, devices, rng)
    began = time.perf_counter()
    _, rows = feed.rows_since(0)
    full_rows_s = time.perf_counter() - began
    first_event_bytes = len(json.dumps(rows, separators=(",", ":")))
    server = LiveServer(feed, None).start()
    result: dict = {
        "devices": devices,
        "wave": wave,
        "server_predictions_us_per_reading": round(per_reading * 1e6, 2),
        "server_full_rows_ms": round(full_rows_s * 1000, 2),
        "first_rows_event_bytes": first_event_bytes,
    }
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            began = time.perf_counter()
            page.goto(server.url)
            _until(
                page,
                f"window.__live && window.__live.stats.devices === {devices} && window.__live.stats.rendered > 0",
            )
            result["render_wall_s"] = round(time.perf_counter() - began, 3)
            stats = page.evaluate("() => window.__live.stats")
            result["render_apply_ms"] = round(stats["lastApplyMs"], 2)
            result["render_draw_ms"] = round(stats["lastOrderRenderMs"], 2)  # the first draw sorts every row
            result["rows_in_dom"] = page.locator(".row").count()
            apply_ms, draw_ms, shown_s, delta_ms = [], [], [], []
            for u in range(1, updates + 1):
                events = page.evaluate("() => window.__live.stats.rowsEvents")
                chosen = rng.choice(devices, size=wave, replace=False)
                ids = [f"device-{i:05d}" for i in sorted(chosen)]
                # the first visible row is among them, so the wall time is until the page shows it
                ids[0] = "device-00000"
                version = feed.rows_since(0)[0]
                sent = time.perf_counter()
                feed.predictions("activity", ids, [u] * wave, rng.dirichlet([1] * 4, size=wave))
                began = time.perf_counter()
                delta = feed.rows_since(version)[1]
                delta_ms.append((time.perf_counter() - began) * 1000)
                assert len(delta) == wave
                _until(page, f"window.__live.stats.rowsEvents > {events}")
                _until(page, f"document.querySelector('.row .num').textContent === '{u}'")
                shown_s.append(time.perf_counter() - sent)
                stats = page.evaluate("() => window.__live.stats")
                apply_ms.append(stats["lastApplyMs"])
                draw_ms.append(stats["lastRenderMs"])
            result["server_delta_rows_ms_median"] = round(statistics.median(delta_ms), 3)
            result["update_apply_ms_median"] = round(statistics.median(apply_ms), 2)
            result["update_draw_ms_median"] = round(statistics.median(draw_ms), 2)
            result["update_apply_ms_max"] = round(max(apply_ms), 2)
            result["update_shown_s_median"] = round(statistics.median(shown_s), 3)
            renders = page.evaluate("() => window.__live.stats.orderRenders")
            page.locator('.thead span[data-key="seen"]').click()
            _until(page, f"window.__live.stats.orderRenders > {renders}")
            result["sort_draw_ms"] = round(page.evaluate("() => window.__live.stats.lastOrderRenderMs"), 2)
            page.evaluate(
                "() => { const t = document.getElementById('tbody'); t.scrollTop = t.scrollHeight / 2; }"
            )
            time.sleep(0.3)  # the scroll event's redraw (only the rows in view)
            result["scroll_draw_ms"] = round(page.evaluate("() => window.__live.stats.lastRenderMs"), 2)
            heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : null")
            result["js_heap_mb"] = round(heap / 2**20, 1) if heap else None
            browser.close()
    finally:
        server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--wave", type=int, default=1000, help="devices changed by one update")
    ap.add_argument("--updates", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3, help="whole runs (fresh feed, page, browser); medians")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    runs = [measure(args.devices, min(args.wave, args.devices), args.updates) for _ in range(args.repeats)]
    # The median of each figure over the runs; the 2 cores are shared, so one run alone is noisy.
    result = {
        k: statistics.median(r[k] for r in runs) if k not in ("devices", "wave") else v
        for k, v in runs[0].items()
    }
    result["spread"] = {
        k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in runs[0] if k not in ("devices", "wave")
    }
    result["repeats"] = args.repeats
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # the 2 cores are shared: say how busy they were
        "python": platform.python_version(),
        "chromium": CHROMIUM,
        "command": "benchmarks/live_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key not in ("machine", "spread"):
            print(f"{key:<{width}}  {value}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
