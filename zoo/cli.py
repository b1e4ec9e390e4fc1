"""``rnnzoo``: list, inspect, train, evaluate and run the zoo's models (and stream them: ``serve``…).

Thin by design: parse arguments, call the public API, print. Every expected failure — unknown model, tampered
file, wrong input shape, bad argument — ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import zoo
from zoo.cards import IntegrityError


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _headline(card: dict) -> str:
    """The one metric that best summarises a model, for the listing."""
    m = card.get("test_metrics", {})
    if "accuracy" in m:
        return f"accuracy {m['accuracy']:.3f}"
    if "anomaly" in m and "ucr_hit" in m["anomaly"]:
        return f"MASE {m['mase']:.2f}, UCR hit {'yes' if m['anomaly']['ucr_hit'] else 'no'}"
    return f"MASE {m['mase']:.3f}" if "mase" in m else "-"


def cmd_list(args: argparse.Namespace) -> int:
    names = zoo.list_models()
    if not names:
        print("no shipped models in saved_models/ (train one: rnnzoo train NAME)")
        return 0
    rows = [("name", "task", "head", "cell", "params", "test metric")]
    for name in names:
        c = zoo.card(name)
        a = c["architecture"]
        cell = ("bi" if a["bidirectional"] else "") + a["cell"] + f" {a['layers']}x{a['units']}"
        rows.append((name, c["task"], c["head"], cell, f"{c['parameters']:,}", _headline(c)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(zoo.card(args.name), indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k in ("cell", "units", "layers", "bidirectional", "epochs", "seed", "batch_size", "dropout")
        and v is not None
    }
    card = zoo.train(args.name, out=args.out, **overrides)
    out = Path(args.out) if args.out else Path("saved_models")
    print(f"wrote {out / card['name']}: {_headline(card)} (wall time {card['recipe']['wall_time_s']} s)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    fresh = zoo.evaluate(args.name)
    recorded = zoo.card(args.name)["test_metrics"]
    keys = [
        k
        for k in ("accuracy", "balanced_accuracy", "per_step_accuracy_mean", "mae", "rmse", "mase")
        if k in fresh
    ]
    print(f"{args.name}: test split re-measured vs card")
    for k in keys:
        print(f"  {k:24s} {fresh[k]:.4f}   (card {recorded.get(k, float('nan')):.4f})")
    if "anomaly" in fresh:
        a = fresh["anomaly"]
        print(
            f"  anomaly: {a['flagged_test_points']} test points flagged"
            + (
                f", UCR hit {a['ucr_hit']}, precision {a['precision']:.3f}, recall {a['recall']:.3f}"
                if "ucr_hit" in a
                else ""
            )
        )
    return 0


def _read_input(path: str) -> np.ndarray:  # noqa: F821 (numpy imported lazily)
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise UserError(f"input file {path} does not exist")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False).astype("float32")
        return np.loadtxt(p, delimiter=",", dtype="float32", ndmin=2)
    except ValueError as e:
        raise UserError(f"cannot read {path} as numbers ({e})") from None


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    card = zoo.card(args.name)
    pre = card["preprocessing"]
    f, t = pre["n_features"], pre.get("sequence_length")
    x = _read_input(args.input)
    if x.ndim == 2:
        x = x[None]
    expected = f"[steps, {f}] or [sequences, steps, {f}]" + (
        f" with steps = {t}" if card["streaming"]["mode"] == "window" else ""
    )
    if x.ndim != 3 or x.shape[-1] != f or (card["streaming"]["mode"] == "window" and t and x.shape[1] != t):
        raise UserError(f"input has shape {list(x.shape)}; {args.name} expects {expected}")
    if not np.isfinite(x).all():
        raise UserError("input contains NaN or infinite values")
    out = np.asarray(zoo.load(args.name).predict(x, verbose=0))
    names = pre.get("class_names")
    for i, seq in enumerate(out):
        last = seq[-1] if seq.ndim == 2 else seq
        if names:
            print(f"sequence {i}: {names[int(last.argmax())]} (p={float(last.max()):.3f})")
        else:
            print(f"sequence {i}: next value {float(last[0]):.5g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnzoo",
        description="Pretrained recurrent networks (SimpleRNN, LSTM, GRU) for sensors, health, and more.",
        epilog="Models live in saved_models/<name>/ (model.keras + card.json). Run `rnnzoo list` to start.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="table of the shipped models with their test metric")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="print a model's card (data, split, metrics, baselines, recipe)")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="retrain a model from its registry recipe (options override it)")
    p.add_argument("name")
    p.add_argument("--cell", choices=["simple", "lstm", "gru"])
    p.add_argument("--units", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--dropout", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output folder (default: saved_models/, replacing the shipped model)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="re-measure a shipped model on its test split and compare with its card"
    )
    p.add_argument("name")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="run a model on sequences from a CSV (steps x features) or .npy file")
    p.add_argument("name")
    p.add_argument("--input", required=True, help="CSV: one row per step; .npy: [steps, F] or [N, steps, F]")
    p.set_defaults(func=cmd_predict)

    try:
        from streaming.cli import register
    except ImportError:  # the streaming half is optional for the zoo commands
        register = None
    if register is not None:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, zoo.UnknownModelError, IntegrityError, FileNotFoundError, ValueError) as e:
        print(f"rnnzoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
