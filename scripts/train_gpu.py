"""Retrain the shipped zoo on whatever accelerator this machine has, and time it against the cards' CPU runs.

    KERAS_BACKEND=jax python scripts/train_gpu.py                       # every shipped model -> retrained/
    KERAS_BACKEND=jax python scripts/train_gpu.py --devices all         # data parallel over every device
    KERAS_BACKEND=jax python scripts/train_gpu.py --precision mixed_bfloat16 activity-gru-causal
    python scripts/train_gpu.py --tiny activity-gru-causal co2-forecast-gru --out /tmp/r   # a smoke run
    python scripts/train_gpu.py --compare /tmp/one/activity-gru-causal /tmp/two/activity-gru-causal

Each model is trained by the one training loop (`zoo.train`, the registry recipe; ``--tiny``: one epoch,
patience 1) into ``OUT/<name>/`` — never over ``saved_models/``: a retrained model replaces the shipped one
only by hand, once its test metrics match or beat the card's on the same split (the table says which).
``--precision mixed_bfloat16`` trains under Keras' mixed policy (bfloat16 arithmetic, float32 variables) and
ships a float32 copy; a causal model whose step-engine parity on the new card is then above 1e-5 is trained
again in float32 (the row says so). On a CPU bfloat16 is emulated: use it on a GPU.

Writes ``OUT/timings.json`` and ``OUT/timings.md``: per model the device, the training wall time (fit only,
as the card records it), training sequences per second — the card's training-split size times the epochs
run (refit epochs on training + validation, every ensemble member), the same measure on both sides — and the
shipped card's CPU figures beside them, plus the headline test metric, new and shipped.

``--compare A B`` trains nothing: it prints how far two model folders of the same recipe are apart (e.g. one
trained on 1 device and one with ``--devices 2``): epochs run, best epoch, largest weight and loss differences,
test metrics (docs/training-devices.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from zoo import cards  # noqa: E402
from zoo.registry import REGISTRY  # noqa: E402

PARITY_LIMIT = 1e-5
PRECISIONS = ("float32", "mixed_bfloat16")
TINY = {"epochs": 1, "patience": 1}
# Headline metrics and which way is better (the first one a card has is the one compared).
HEADLINES = (
    ("accuracy", "higher"),
    ("bleu", "higher"),
    ("sequence_error_rate", "lower"),
    ("detection_rate", "higher"),
    ("bits_per_character", "lower"),
    ("nll_per_frame", "lower"),
    ("mase", "lower"),
)
# Split keys naming the sequences of one training epoch, most specific first.
TRAIN_KEYS = ("train_with_augmentation", "train_crops", "train_windows", "train")
VALIDATION_KEYS = ("validation_crops", "validation_windows", "validation")


def _first(split: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    return next((int(split[k]) for k in keys if isinstance(split.get(k), int)), None)


def trained_sequences(card: cards.Card, history: dict[str, Any]) -> int | None:
    """Sequences the training passes saw: the training-split size × epochs run, plus training + validation ×
    refit epochs, summed over an ensemble's members; None where the card's split does not say its size."""
    n_train = _first(card.split, TRAIN_KEYS)
    if n_train is None:
        return None
    n_val = _first(card.split, VALIDATION_KEYS) or 0
    total = 0
    for h in history.get("members", [history]):
        total += n_train * len(h.get("loss", [])) + (n_train + n_val) * len(h.get("refit_loss", []))
    return total


def headline(card: cards.Card) -> tuple[str, float, str] | None:
    for key, better in HEADLINES:
        if isinstance(card.test_metrics.get(key), int | float):
            return key, float(card.test_metrics[key]), better
    return None


def _history(folder: Path) -> dict[str, Any]:
    path = folder / "history.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _rate(sequences: int | None, seconds: float) -> float | None:
    return round(sequences / seconds, 1) if sequences and seconds > 0 else None


def train_one(name: str, out: Path, devices: str | int | None, precision: str, tiny: bool) -> dict[str, Any]:
    """Train ``name`` into ``out`` and return its row of the timing table."""
    from zoo.backend import keras

    overrides = dict(TINY) if tiny else {}
    note = ""
    start = time.perf_counter()
    keras.config.set_dtype_policy(precision)
    try:
        card = zoo.train(name, out=out, verbose=0, devices=devices, **overrides)
    finally:
        keras.config.set_dtype_policy("float32")
    used = precision
    parity = card.streaming.max_abs_diff_vs_keras
    if precision != "float32" and card.streaming.mode == "step" and (parity is None or parity > PARITY_LIMIT):
        note = f"{precision}: step parity {parity} > {PARITY_LIMIT:g}, retrained in float32; "
        card = zoo.train(name, out=out, verbose=0, devices=devices, **overrides)
        used, parity = "float32", card.streaming.max_abs_diff_vs_keras
    total = time.perf_counter() - start
    new_seq = trained_sequences(card, _history(out / name))
    row: dict[str, Any] = {
        "model": name,
        "device": card.recipe.device,
        "backend": card.recipe.backend,
        "precision": used,
        "budget": "tiny (1 epoch, patience 1)" if tiny else "registry recipe",
        "epochs_run": card.recipe.epochs_run,
        "fit_seconds": card.recipe.wall_time_s,
        "total_seconds": round(total, 1),
        "sequences_per_s": _rate(new_seq, card.recipe.wall_time_s),
        "step_parity": parity,
        "note": note.rstrip("; "),
    }
    shipped_folder = cards.model_dir(name)
    if (shipped_folder / cards.CARD_FILE).is_file():
        old = cards.read_card(shipped_folder)
        old_seq = trained_sequences(old, _history(shipped_folder))
        row |= {
            "card_device": old.recipe.device,
            "card_fit_seconds": old.recipe.wall_time_s,
            "card_sequences_per_s": _rate(old_seq, old.recipe.wall_time_s),
        }
        if row["sequences_per_s"] and row["card_sequences_per_s"] and not tiny:  # tiny: compile-dominated
            row["throughput_vs_card"] = round(row["sequences_per_s"] / row["card_sequences_per_s"], 2)
        new, shipped = headline(card), headline(old)
        if new and shipped and new[0] == shipped[0]:
            key, value, better = new
            row |= {"metric": key, "test_new": round(value, 4), "test_card": round(shipped[1], 4)}
            row["matches_or_beats_card"] = value >= shipped[1] if better == "higher" else value <= shipped[1]
    return row


COLUMNS = (
    ("model", "model"),
    ("device", "device"),
    ("precision", "precision"),
    ("epochs_run", "epochs"),
    ("fit_seconds", "fit s"),
    ("sequences_per_s", "seq/s"),
    ("card_fit_seconds", "card fit s"),
    ("card_sequences_per_s", "card seq/s"),
    ("throughput_vs_card", "seq/s vs card"),
    ("metric", "metric"),
    ("test_new", "test (new)"),
    ("test_card", "test (card)"),
    ("matches_or_beats_card", "matches/beats card"),
    ("note", "note"),
)


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| " + " | ".join(t for _, t in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows:
        cells = ["" if r.get(k) is None else str(r[k]) for k, _ in COLUMNS]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def compare(a: Path, b: Path) -> dict[str, Any]:
    """How far two model folders of one recipe are apart: epochs, best epoch, largest absolute weight
    difference, largest absolute and relative difference of the training and validation losses over the
    epochs both ran, and each one's test metrics and fit seconds."""
    import numpy as np

    from zoo.backend import keras

    ca, cb = cards.read_card(a), cards.read_card(b)
    ha, hb = _history(a), _history(b)
    wa, wb = (keras.models.load_model(f / cards.MODEL_FILE, compile=False).get_weights() for f in (a, b))
    pairs = [  # over the epochs both ran (early stopping may end them apart)
        (x, y)
        for k in ("loss", "val_loss", "refit_loss")
        for x, y in zip(ha.get(k, []), hb.get(k, []), strict=False)
    ]
    return {
        "epochs_run": [ca.recipe.epochs_run, cb.recipe.epochs_run],
        "best_epoch": [ca.recipe.best_epoch, cb.recipe.best_epoch],
        "max_abs_weight_diff": max(float(np.abs(x - y).max()) for x, y in zip(wa, wb, strict=True)),
        "max_abs_loss_diff": max(abs(x - y) for x, y in pairs),
        "max_rel_loss_diff": max(abs(x - y) / abs(x) for x, y in pairs),
        "test_metrics": [headline(ca), headline(cb)],
        "devices": [ca.recipe.device, cb.recipe.device],
        "fit_seconds": [ca.recipe.wall_time_s, cb.recipe.wall_time_s],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="registry names (default: every shipped model)")
    parser.add_argument("--out", default="retrained", help="output folder (default ./retrained)")
    parser.add_argument("--devices", metavar="N|all", help="data parallel over N (or all) JAX devices")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="default float32")
    parser.add_argument("--tiny", action="store_true", help="one epoch per model (patience 1): a smoke run")
    parser.add_argument("--compare", nargs=2, metavar="FOLDER", help="compare two trained model folders")
    args = parser.parse_args(argv)
    try:
        if args.compare:
            print(json.dumps(compare(*(Path(f) for f in args.compare)), indent=1))
            return 0
        names = args.names or zoo.list_models()
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}: choose from {', '.join(REGISTRY)}")
        devices = None
        if args.devices is not None:
            from zoo.distributed import parse_devices

            devices = parse_devices(args.devices)
        out = Path(args.out)
        rows = []
        for i, name in enumerate(names, 1):
            print(f"[{i}/{len(names)}] {name}", flush=True)
            rows.append(train_one(name, out, devices, args.precision, args.tiny))
            print(f"[{i}/{len(names)}] {json.dumps(rows[-1])}", flush=True)
    except ValueError as e:
        print(f"train_gpu: error: {e}", file=sys.stderr)
        return 2
    from zoo.backend import keras

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = "python scripts/train_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (
        f"Retraining timings ({stamp}; Keras {keras.__version__}, backend {keras.backend.backend()}): "
        f"`{command.strip()}`. seq/s = training-split sequences × epochs run / fit seconds."
    )
    (out / "timings.json").write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=1) + "\n")
    (out / "timings.md").write_text(markdown(rows, header))
    print(markdown(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
