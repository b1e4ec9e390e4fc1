"""`rnnzoo serve/worker --model DIR`: a model folder (model.keras + card.json, what `rnnzoo fit` writes) is
served under its card's name once the card vouches for the file by sha256; anything else is one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streaming.models import ModelError, serve_model
from zoo import cards

ZOO_MODEL = "activity-gru-causal"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "my-fitted-model"
    shutil.copytree(cards.model_dir(ZOO_MODEL), folder)
    return folder


def test_a_model_folder_is_served_under_its_cards_name(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    served = serve_model(str(folder), mode="step", isolate=True)  # what `rnnzoo worker --model DIR` does
    assert served.name == ZOO_MODEL and served.mode == "step"
    assert served.card is not None and served.card.sha256 == cards.sha256(folder / "model.keras")
    assert served.class_names and len(served.class_names) == served.engine.n_outputs


def test_a_folder_whose_card_does_not_match_its_model_is_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = "0" * 64
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="does not match its card"):
        serve_model(str(folder))


@pytest.mark.parametrize("remove", ["card.json", "model.keras"])
def test_a_folder_missing_a_part_is_one_clear_error(tmp_path: Path, remove: str) -> None:
    folder = _copy(tmp_path)
    (folder / remove).unlink()
    with pytest.raises(ModelError, match=f"has no {remove}"):
        serve_model(str(folder))


def test_a_folder_with_a_malformed_card_is_one_clear_error(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        serve_model(str(folder))
