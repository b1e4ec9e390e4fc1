"""Smoke test of benchmarks/fit_bench.py (slow suite): every part runs on tiny tables and writes its JSON, so
the benchmark cannot rot. The figures themselves are measured by the full run (see its docstring)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


@pytest.mark.slow
def test_fit_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import fit_bench

    out = tmp_path / "fit_bench.json"
    argv = ["--tiny", "--tables", "italy_power", "--reps", "1", "--epochs", "2", "--variants",
            "plain,+sample_weight", "--startup-reps", "1", "--rss", "--parquet-gb", "0", "--rss-paths",
            "chunked", "--steps-per-epoch", "2", "--json", str(out)]  # fmt: skip
    assert fit_bench.main(argv) == 0
    result = json.loads(out.read_text())
    (table,) = result["throughput"]
    assert table["table"] == "italy_power" and table["readings_per_epoch"] == 72 * 24
    assert set(table["results"]) == {"zoo.fit", "plain", "+sample_weight"}
    for loop in table["results"].values():
        assert loop["readings_per_s_median"] > 0 and len(loop["runs"][0]["epoch_seconds"]) == 2
    assert table["results"]["plain"]["time_vs_plain_median"] == 1.0
    assert table["zoo_callbacks"][0] == "GradientNormLog" and table["zoo_optimizer"].startswith(
        "GradientNorm"
    )
    s = result["startup"]
    assert 0 < s["table_read_median_s"] <= s["first_epoch_starts_median_s"] <= s["first_epoch_done_median_s"]
    assert s["first_epoch_done_median_s"] <= s["exit_median_s"]
    rows = result["rss"]["runs"]
    assert [r["path"].split()[0] for r in rows] == ["floor", "chunked"]
    assert all(r["peak_rss_mb"] > 100 and r["peak_rss_psutil_mb"] > 100 for r in rows)
    assert "time vs plain" in capsys.readouterr().out
