"""Smoke test of scripts/finetune_study.py (slow suite): pretraining on GunPoint, fine-tuning and training from
scratch on a PickupGestureWiimoteZ share, scoring on the held-out sequences, at a tiny budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))


@pytest.mark.slow
def test_finetune_study_tiny_budget(tmp_path: Path) -> None:
    import finetune_study

    out = tmp_path / "study.json"
    argv = ["--seeds", "0", "--epochs", "2", "--pretrain-epochs", "1", "--units", "8", "--json", str(out)]
    assert finetune_study.main(argv) == 0
    result = json.loads(out.read_text())
    (row,) = result["seeds"]
    assert row["sequences_given_to_fit"] == 30 and row["held_out_sequences"] == 70
    assert sum(row["fit_split"].values()) == 30
    for arm in ("fine_tuned", "from_scratch", "minirocket_same_sequences"):
        assert 0.0 <= row[arm]["balanced_accuracy"] <= 1.0
    assert row["fine_tuned"]["epochs_run"] >= 1 and row["from_scratch"]["epochs_run"] <= 2
    fit_test = row["on_fit_test_split"]
    # the card's from-scratch baseline and the separate from-scratch fit are the same recipe on the same split
    assert set(fit_test["card_same_architecture_from_scratch"]) == {
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
    }
    assert result["summary"]["fine_tuned_minus_scratch_balanced_accuracy"]["seeds"] == 1
