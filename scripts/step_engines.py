"""Write the step engine of every causal streamable shipped model into its folder (`saved_models/<name>/step.npz`
+ `step.json`, `zoo.step.shipped`), so that a serving install without Keras or TensorFlow streams it; and check
each one against Keras.

    python scripts/step_engines.py               # every causal model that streams
    python scripts/step_engines.py NAME ...      # only these
    python scripts/step_engines.py --check       # write nothing: check what is shipped (exit 1 on a mismatch)
    python scripts/step_engines.py --check --float64 activity-lstm-causal   # also against Keras in float64

For each model the engine read back from `step.npz` must hold exactly the arrays `StepModel.from_keras` reads
(and, cast to float32, those of a float32 read), and it steps the model's test split (its real steps) against
Keras run on the whole sequences: the largest difference is printed beside the card's. `--float64` also runs
the Keras model rebuilt in float64 (the same weights, every layer's dtype float64) and prints how far the engine
and Keras's own float32 run are from it: which of the two a difference from Keras comes from.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zoo  # noqa: E402
from zoo import cards  # noqa: E402
from zoo.cards import IntegrityError  # noqa: E402
from zoo.step import StepModel  # noqa: E402
from zoo.step.shipped import read_engine, write_engine  # noqa: E402


def causal_models() -> list[str]:
    """The shipped models that stream one step per reading: the ones a serving install must carry engines for."""
    return [n for n in zoo.list_models(capability="stream") if zoo.card(n).streaming.mode == "step"]


def same_arrays(a: StepModel, b: StepModel) -> bool:
    """Whether two engines hold the same ops with bit-identical arrays and fields."""

    def fields(op: object) -> list:
        return [getattr(op, f.name) for f in dataclasses.fields(op)]

    if (a.n_features, a.n_outputs, a.fingerprint, a.compute_dtype) != (
        b.n_features,
        b.n_outputs,
        b.fingerprint,
        b.compute_dtype,
    ) or [type(op) for op in a.ops] != [type(op) for op in b.ops]:
        return False
    for x, y in zip(a.ops, b.ops, strict=True):
        for u, v in zip(fields(x), fields(y), strict=True):
            if isinstance(u, np.ndarray):
                if not (isinstance(v, np.ndarray) and u.dtype == v.dtype and np.array_equal(u, v)):
                    return False
            elif u != v:
                return False
    return True


def float64_reference(model: object, x: np.ndarray) -> np.ndarray:
    """``model`` rebuilt with every layer in float64 and the same weights, run on ``x``."""
    import json

    from zoo.backend import keras

    config = json.loads(json.dumps(model.get_config()).replace('"float32"', '"float64"'))
    rebuilt = type(model).from_config(config)
    rebuilt.set_weights([np.asarray(w, np.float64) for w in model.get_weights()])
    return np.asarray(keras.ops.convert_to_numpy(rebuilt(x.astype(np.float64), training=False)))


def check(name: str, write: bool, float64: bool = False) -> float:
    """Write (when asked) and check one model's engine; return its largest difference from Keras."""
    from zoo.registry import get_spec
    from zoo.tasks import TASKS
    from zoo.training import streaming_parity

    folder, card = cards.model_dir(name), zoo.card(name)
    model = zoo.load(name)  # sha256 checked against the card
    try:
        shipped = read_engine(folder, card.sha256)
    except IntegrityError:
        shipped = None
    if write and not (shipped and same_arrays(shipped, StepModel.from_keras(model))):
        # Rewritten only when it changed: np.savez stamps the time into the file, so its sha256 would too.
        write_engine(folder, StepModel.from_keras(model), card.sha256)
    shipped = read_engine(folder, card.sha256)
    if shipped is None:
        raise SystemExit(
            f"{name}: no step engine for this model.keras (run python scripts/step_engines.py {name})"
        )
    if not same_arrays(shipped, StepModel.from_keras(model)):
        raise SystemExit(f"{name}: the shipped step engine differs from the one Keras' weights give")
    if not same_arrays(shipped.with_compute_dtype(np.float32), StepModel.from_keras(model, np.float32)):
        raise SystemExit(f"{name}: the float32 cast of the shipped engine differs from a float32 read")
    task = TASKS[get_spec(name).task]
    x, valid = task.test_data()[0], task.valid_steps()
    if float64:
        exact = float64_reference(model, x)
        keras32 = np.asarray(model.predict(x, verbose=0), np.float64)
        engine = shipped.run(x).astype(np.float64)
        far = {k: np.abs(v - exact) for k, v in (("engine", engine), ("Keras float32", keras32))}
        print(
            f"{name}: from Keras in float64, "
            + ", ".join(f"{k} {float((d if valid is None else d[valid]).max()):.3g}" for k, d in far.items())
        )
    return streaming_parity(model, x, valid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="models (default: every causal model that streams)")
    ap.add_argument("--check", action="store_true", help="write nothing; check the shipped engines")
    ap.add_argument("--float64", action="store_true", help="also compare with Keras run in float64")
    args = ap.parse_args()
    names = args.names or causal_models()
    worst = 0.0
    for name in names:
        diff = check(name, write=not args.check, float64=args.float64)
        worst = max(worst, diff)
        print(
            f"{name}: step.npz {(cards.model_dir(name) / 'step.npz').stat().st_size:,} bytes, "
            f"max |engine - Keras| on the test split {diff:.3g} (card: {zoo.card(name).streaming.max_abs_diff_vs_keras:.3g})",
            flush=True,
        )
    print(f"{len(names)} engines, largest difference {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
