"""Retrain the shipped zoo (or the models named) and write them with their cards to saved_models/.

    python scripts/train_all.py                      # every registry model, on this machine
    KERAS_BACKEND=jax python scripts/train_all.py activity-gru-causal --out /tmp/models

On the GPU machine run it with KERAS_BACKEND=jax (../shared/docs/gpu.md); the card records backend and device.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import zoo
from zoo import cards
from zoo.registry import REGISTRY, cell_comparisons


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="registry names (default: all)")
    parser.add_argument("--out", help="output folder (default: saved_models/)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress bar")
    args = parser.parse_args()
    names = args.names or list(REGISTRY)
    for i, name in enumerate(names, 1):
        start = time.perf_counter()
        print(f"[{i}/{len(names)}] training {name}", flush=True)
        card = zoo.train(name, out=args.out, verbose=0 if args.quiet else 2)
        m = card.test_metrics
        headline = {
            k: round(m[k], 4) for k in ("accuracy", "balanced_accuracy", "mase", "nll_per_frame") if k in m
        }
        print(f"[{i}/{len(names)}] {name}: {headline} in {time.perf_counter() - start:.0f} s", flush=True)
    root = Path(args.out) if args.out else None
    for group, metrics in cell_comparisons().items():  # same recipe, different cell: one table per group
        if set(group) & set(names) and all(
            (cards.model_dir(n, root) / cards.CARD_FILE).is_file() for n in group
        ):
            for row in cards.add_cell_comparison(list(group), metrics, root):
                print("  ", row)


if __name__ == "__main__":
    main()
