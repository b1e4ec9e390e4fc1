"""benchmarks/live_bench.py runs end to end (small, in the slow suite): Chromium renders every device and
applies an update, and the JSON has every figure."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_live_bench_smoke(tmp_path: Path) -> None:
    if not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
        pytest.skip("no Chromium (scripts/setup.sh installs Debian's)")
    pytest.importorskip("playwright")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import live_bench
    finally:
        sys.path.pop(0)
    out = tmp_path / "live.json"
    assert (
        live_bench.main(
            ["--devices", "300", "--wave", "50", "--updates", "2", "--repeats", "1", "--json", str(out)]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["devices"] == 300 and 0 < result["rows_in_dom"] < 300  # virtualised: only the rows in view
    for key in ("render_wall_s", "render_apply_ms", "update_apply_ms_median", "update_shown_s_median"):
        assert result[key] >= 0, key
