"""dashboards/grafana.json: every panel's query names series that `rnnzoo serve` really exports on /metrics,
grouped by labels those series carry."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboards" / "grafana.json"
# Labels Prometheus adds to every scraped series, and the bucket bound.
ADDED_LABELS = {"instance", "job", "le"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "increase", "histogram_quantile", "by", "without", "label_values",
}  # fmt: skip


@pytest.fixture
def exported(mosquitto, tmp_path) -> dict[str, set[str]]:
    """Series name -> label names, scraped from /metrics of a real service on a real Mosquitto that has served a
    reading and refused one (a counter without samples is not exported), with a snapshot path (its age)."""
    from conftest import publisher, start_service, stop_service, tiny_model

    svc, thread = start_service(
        mosquitto.url, tiny_model(), metrics_port=0, snapshot_path=str(tmp_path / "state.npz")
    )
    try:
        pub = publisher(mosquitto.port)
        pub.publish("sensors/d1/imu", json.dumps({"values": [0.1, 0.2, 0.3], "t": time.time()}), 1)
        pub.publish("sensors/d2/imu", b"not json", 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (svc.counters["readings"] < 1 or not svc.errors):
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.http.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        pub.loop_stop()
        pub.disconnect()
    finally:
        stop_service(svc, thread)
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def _panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def test_the_dashboard_is_importable_json_with_a_datasource_input() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["__inputs"][0]["pluginId"] == "prometheus"
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for subject in ("throughput", "latency", "errors", "devices", "evictions", "batch", "step time"):
        assert subject in titles, subject


def test_every_panel_query_names_an_exported_series_and_its_labels(exported) -> None:
    assert "rnnzoo_latency_seconds_bucket" in exported and "rnnzoo_snapshot_age_seconds" in exported
    for panel in _panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = {
                n
                for n in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[(]?", re.sub(r'"[^"]*"', "", expr))
                if n.startswith(("rnnzoo_", "process_"))
            }
            assert names, (panel["title"], expr)
            for name in names:
                assert name in exported, f"{panel['title']}: {name} is not exported"
            labels = set().union(*(exported[n] for n in names)) | ADDED_LABELS
            used = set()
            for group in re.findall(r"by \(([^)]*)\)", expr):
                used |= {g.strip() for g in group.split(",")}
            used |= set(re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")))
            used |= set(re.findall(r"(\w+)=~?\"", expr))
            assert used <= labels, f"{panel['title']}: {expr} uses labels {sorted(used - labels)}"
