"""Re-save shipped models without optimizer state (weights unchanged) and update each card's sha256.

Models trained before `zoo.training.save_for_inference` existed carried Adam's moment estimates, which the zoo
never uses (it loads models uncompiled). Usage: ``python scripts/strip_optimizer_state.py [NAME ...]``.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from zoo import cards
from zoo.registry import REGISTRY
from zoo.training import save_for_inference


def main(names: list[str]) -> None:
    for name in names or list(REGISTRY):
        folder = cards.model_dir(name)
        path = folder / cards.MODEL_FILE
        if not path.is_file():
            continue
        card = cards.read_card(folder)
        if cards.sha256(path) != card["sha256"]:
            raise SystemExit(f"{name}: model.keras does not match its card; refusing to touch it")
        before = keras.models.load_model(path, safe_mode=True, compile=False)
        weights = before.get_weights()
        size = path.stat().st_size
        save_for_inference(before, path)
        after = keras.models.load_model(path, safe_mode=True, compile=False)
        assert all(np.array_equal(a, b) for a, b in zip(weights, after.get_weights(), strict=True))
        cards.write_card(folder, {k: v for k, v in card.items() if k != "sha256"})
        print(f"{name}: {size / 1e6:.1f} MB -> {path.stat().st_size / 1e6:.1f} MB, weights identical")


if __name__ == "__main__":
    main(sys.argv[1:])
