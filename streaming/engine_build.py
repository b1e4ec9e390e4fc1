"""Build a model's step engine (`zoo.step.StepModel`) in a child process and write it to an .npz, so the serving
process never imports TensorFlow.

`python -m streaming.engine_build SPEC OUT.npz [--mode auto|step|window] [--compute-dtype float64] [--window W]`
loads the model with Keras, builds its StepModel, saves it, and prints one JSON line: the model's name, class
names, card and mode, or {"error": ...}. A window-mode model is not written (it needs Keras to run); the parent
loads it. Loading Keras + TF costs ~700 MB of RSS that the serving process would otherwise carry forever.
`streaming.models` starts this child only for a model without a precomputed engine (a zoo model ships one,
`zoo.step.shipped`) and caches what it writes.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("out")
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--compute-dtype", default="float64")
    ap.add_argument("--window", type=int, default=None)
    args = ap.parse_args()
    from streaming.models import ModelError, build_served, load_keras

    try:
        model, card, name = load_keras(args.spec)
    except ModelError as err:
        print(json.dumps({"error": str(err)}))
        return 0
    try:  # the one mode choice is build_served's; the child only saves the result when it is a step model
        served = build_served(model, card, name, args.mode, args.window, args.compute_dtype)
    except ModelError as err:
        print(json.dumps({"error": str(err)}))
        return 0
    if served.mode == "step":
        served.engine.save(args.out)
    meta = {
        "name": name,
        "card": card.to_json() if card else None,
        "mode": served.mode,
        "class_names": served.class_names,
        "note": served.note,
    }
    print(json.dumps(meta, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
