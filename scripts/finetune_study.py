"""Does `rnnzoo fit --from` pay on a small share of a real dataset? Fine-tuned against from scratch, same
architecture, same epoch budget, several seeds, in one run.

1. **Pretrain** once with `zoo.fit` on aeon's bundled UCR GunPoint (200 gestures, the actor's hand x position,
   150 frames each, gun drawn or pointed): a 1-channel GRU classifier (the default recipe).
2. For each seed, draw ``--per-class`` sequences of every class of aeon's bundled UCR PickupGestureWiimoteZ
   (100 Wiimote z-acceleration recordings of 10 pick-up gestures, 29-361 readings, 10 per class; TRAIN and TEST
   pooled) and hand only those to `zoo.fit`, which splits them 60/20/20 by sequence: with 3 per class it trains
   on 18 sequences, 30 % of the 60 a fit on all 100 would train on. On that table, with the same seed:
   - **fine-tuned**: ``zoo.fit(..., from_model=<the GunPoint folder>)`` (its GRU copied, a new 10-class head,
     head first for a quarter of the epochs, then everything at a tenth of the rate); its card also carries
     ``baselines["same_architecture_from_scratch"]``, scored on `zoo.fit`'s own (small) test split;
   - **from scratch**: ``zoo.fit(...)`` with the GunPoint model's architecture and the same epochs.
   Both models (and aeon's MiniRocket fitted on the same training + validation sequences, for reference) are then
   scored on the **other** PickupGestureWiimoteZ sequences, which neither saw: accuracy, balanced accuracy and
   macro-F1 of the prediction after each sequence's last reading.

    nice -n 19 python scripts/finetune_study.py --seeds 0,1,2 --json benchmarks/results/finetune_study.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from fit_data import ucr  # noqa: E402

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def gunpoint_table(path: Path) -> Path:
    """UCR GunPoint as a long table: ``gesture`` id, ``frame``, hand ``x``, ``drew`` gun or point."""
    x, y = ucr("GunPoint")
    n, _, t = x.shape
    frame = pd.DataFrame({"gesture": np.repeat([f"g{i:03d}" for i in range(n)], t), "frame": np.tile(np.arange(t), n),
                          "x": x[:, 0].reshape(-1), "drew": np.repeat(np.where(y == "1", "gun", "point"), t)})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def pickup() -> tuple[list[np.ndarray], np.ndarray]:
    """UCR PickupGestureWiimoteZ, TRAIN and TEST pooled: 100 recordings ``[T_i]`` (29-361 readings) and their
    gesture labels (``"1"`` .. ``"10"``)."""
    from zoo.data._files import aeon_archive

    x, ys = aeon_archive("PickupGestureWiimoteZ")
    return [np.asarray(a, "float64")[0] for a in x], ys


def pickup_table(xs: list[np.ndarray], ys: np.ndarray, which: np.ndarray, path: Path) -> Path:
    rows = [pd.DataFrame({"recording": f"r{i:03d}", "i": np.arange(len(xs[i])), "z": xs[i], "gesture": f"g{ys[i]}"})
            for i in which]  # fmt: skip
    pd.concat(rows).to_csv(path, index=False)
    return path


def draw(ys: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` sequences of every class (seeded) for `zoo.fit`, and the others for the study's test."""
    rng = np.random.default_rng(seed)
    given = np.sort(np.concatenate([rng.choice(np.flatnonzero(ys == c), per_class, replace=False)
                                    for c in sorted(set(ys))]))  # fmt: skip
    return given, np.setdiff1d(np.arange(len(ys)), given)


def last_reading_predictions(model: Any, xs: list[np.ndarray]) -> np.ndarray:
    """Class index after each sequence's last reading (padded at the end: the model is causal)."""
    length = max(len(x) for x in xs)
    batch = np.zeros((len(xs), length, 1), "float32")
    for i, x in enumerate(xs):
        batch[i, : len(x), 0] = x
    out = np.asarray(model.predict(batch, verbose=0))
    return out[np.arange(len(xs)), [len(x) - 1 for x in xs]].argmax(-1)


def scores(y: np.ndarray, pred: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    return {"accuracy": round(float(accuracy_score(y, pred)), 4),
            "balanced_accuracy": round(float(balanced_accuracy_score(y, pred)), 4),
            "macro_f1": round(float(f1_score(y, pred, average="macro")), 4)}  # fmt: skip


def minirocket(xs: list[np.ndarray], ys: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> dict:
    """aeon MiniRocket fitted on ``train`` sequences, scored on ``test`` (padded with their last reading)."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    length = max(len(x) for x in xs)

    def padded(idx: np.ndarray) -> np.ndarray:
        return np.stack([np.pad(xs[i], (0, length - len(xs[i])), mode="edge")[None] for i in idx])

    rocket = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(padded(train), ys[train])
    return scores(ys[test], np.asarray(rocket.predict(padded(test))))


def study(seeds: list[int], per_class: int, epochs: int, pretrain_epochs: int, units: int, workdir: Path,
          log: Any, batch_size: int = 32) -> dict:  # fmt: skip
    import zoo

    quiet = {"verbose": 0, "say": lambda s: None}
    log(f"pretraining on GunPoint ({pretrain_epochs} epochs) ...")
    source = zoo.fit(gunpoint_table(workdir / "gunpoint.csv"), "drew", id="gesture", time_col="frame",
                     epochs=pretrain_epochs, units=units, out=workdir / "gunpoint", **quiet)  # fmt: skip
    arch = source.card.architecture
    xs, ys = pickup()
    rows = []
    for seed in seeds:
        given, held = draw(ys, per_class, seed)
        table = pickup_table(xs, ys, given, workdir / f"pickup-{seed}.csv")
        common = {
            "target": "gesture",
            "id": "recording",
            "time_col": "i",
            "epochs": epochs,
            "seed": seed,
        } | quiet
        tuned = zoo.fit(table, from_model=str(source.folder), out=workdir / f"tuned-{seed}", **common)
        scratch = zoo.fit(table, cell=arch.cell, units=arch.units, layers=arch.layers, out=workdir / f"scratch-{seed}",
                          **common)  # fmt: skip
        names = tuned.card.class_names
        assert names == scratch.card.class_names
        y_held = np.array([names.index(f"g{v}") for v in ys[held]])
        held_x = [xs[i] for i in held]
        split = tuned.card.split
        fit_ids = {int(r[1:]) for r in pd.read_csv(table)["recording"].unique()}
        test_ids = {int(r[1:]) for r in split["test_ids"]}
        seen = np.array(sorted(fit_ids - test_ids))  # zoo.fit's training + validation sequences
        card_scratch = tuned.card.baselines["same_architecture_from_scratch"]
        row = {
            "seed": seed,
            "sequences_given_to_fit": len(given),
            "fit_split": {k: split[k] for k in ("train", "validation", "test")},
            "held_out_sequences": len(held),
            "fine_tuned": scores(y_held, last_reading_predictions(tuned.model, held_x))
            | {"epochs_run": tuned.card.recipe.epochs_run, "wall_time_s": tuned.card.recipe.wall_time_s},
            "from_scratch": scores(y_held, last_reading_predictions(scratch.model, held_x))
            | {"epochs_run": scratch.card.recipe.epochs_run, "wall_time_s": scratch.card.recipe.wall_time_s},
            "minirocket_same_sequences": minirocket(xs, ys, seen, held, seed),
            "on_fit_test_split": {
                "sequences": split["test"],
                "fine_tuned": {k: round(tuned.card.test_metrics[k], 4) for k in METRICS},
                "card_same_architecture_from_scratch": {k: round(card_scratch[k], 4) for k in METRICS},
                "from_scratch_run": {k: round(scratch.card.test_metrics[k], 4) for k in METRICS},
            },
        }
        rows.append(row)
        log(f"seed {seed}: held-out balanced accuracy fine-tuned {row['fine_tuned']['balanced_accuracy']:.3f}, "
            f"from scratch {row['from_scratch']['balanced_accuracy']:.3f}, "
            f"MiniRocket {row['minirocket_same_sequences']['balanced_accuracy']:.3f}")  # fmt: skip
    summary = {}
    for arm in ("fine_tuned", "from_scratch", "minirocket_same_sequences"):
        summary[arm] = {k: round(statistics.mean(r[arm][k] for r in rows), 4) for k in METRICS}
        summary[arm]["balanced_accuracy_each"] = [r[arm]["balanced_accuracy"] for r in rows]
    gains = [r["fine_tuned"]["balanced_accuracy"] - r["from_scratch"]["balanced_accuracy"] for r in rows]
    summary["fine_tuned_minus_scratch_balanced_accuracy"] = {
        "mean": round(statistics.mean(gains), 4), "each": [round(g, 4) for g in gains],
        "seeds_where_fine_tuning_wins": sum(g > 0 for g in gains), "seeds": len(gains),
    }  # fmt: skip
    return {
        "pretrained": {"dataset": "UCR GunPoint (aeon bundled), 200 gestures, 1 channel", "architecture":
                       f"{arch.cell} {arch.layers}x{arch.units}", "epochs_run": source.card.recipe.epochs_run,
                       "test_balanced_accuracy": round(source.card.test_metrics["balanced_accuracy"], 4)},
        "target": {"dataset": "UCR PickupGestureWiimoteZ (aeon bundled), TRAIN+TEST pooled: 100 sequences, "
                   "10 classes, 1 channel, 29-361 readings", "per_class_given_to_fit": per_class,
                   "epochs": epochs, "batch_size": batch_size},
        "summary": summary,
        "seeds": rows,
    }  # fmt: skip


def report(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"{'seed':<6}{'fine-tuned':>12}{'scratch':>10}{'MiniRocket':>12}   (balanced accuracy on held-out)"
    ]
    for r in result["seeds"]:
        lines.append(f"{r['seed']:<6}{r['fine_tuned']['balanced_accuracy']:>12.3f}{r['from_scratch']['balanced_accuracy']:>10.3f}"
                     f"{r['minirocket_same_sequences']['balanced_accuracy']:>12.3f}")  # fmt: skip
    lines.append(f"{'mean':<6}{s['fine_tuned']['balanced_accuracy']:>12.3f}{s['from_scratch']['balanced_accuracy']:>10.3f}"
                 f"{s['minirocket_same_sequences']['balanced_accuracy']:>12.3f}")  # fmt: skip
    g = s["fine_tuned_minus_scratch_balanced_accuracy"]
    lines.append(
        f"fine-tuned minus scratch: {g['mean']:+.3f} (wins on {g['seeds_where_fine_tuning_wins']} of {g['seeds']} seeds)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    ap.add_argument(
        "--per-class", type=int, default=3, help="PickupGestureWiimoteZ sequences per class given to fit"
    )
    ap.add_argument("--epochs", type=int, default=60, help="fine-tuning and from-scratch budget (default 60)")
    ap.add_argument(
        "--batch-size", type=int, default=32, help="fine-tuning and from-scratch batch (default 32)"
    )
    ap.add_argument("--pretrain-epochs", type=int, default=60)
    ap.add_argument("--units", type=int, default=64, help="the pretrained GRU's width (default 64)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="rnnzoo-finetune-"))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    try:
        result = {
            "command": "python scripts/finetune_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"),
            "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        } | study([int(s) for s in args.seeds.split(",")], args.per_class, args.epochs, args.pretrain_epochs,
                  args.units, workdir, log, args.batch_size)  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["wall_time_s"] = round(time.monotonic() - started, 1)
    print(report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
