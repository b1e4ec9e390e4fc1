"""Export a model's step engine to an .npz in a child process, so the serving process never imports TensorFlow.

`python -m streaming.export SPEC OUT.npz [--mode auto|step|window] [--compute-dtype float64]` loads the model
with Keras, builds its StepModel, saves it, and prints one JSON line: the model's name, class names, card and
mode, or {"error": ...}. A window-mode model is not exported (it needs Keras to run); the parent loads it.
Loading Keras + TF costs ~700 MB of RSS that the serving process would otherwise carry forever.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any


def export_in_child(spec: str, mode: str, compute_dtype: str) -> tuple[Any, dict]:
    """Run the export in a child process; return (StepModel or None for window mode, metadata)."""
    from streaming.models import ModelError
    from streaming.step import StepModel

    with tempfile.TemporaryDirectory(prefix="rnnzoo-export-") as tmp:
        out = os.path.join(tmp, "step.npz")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [
                sys.executable,
                "-I",  # isolated: the current folder and PYTHON* variables cannot inject code into the child
                "-m",
                "streaming.export",
                spec,
                out,
                "--mode",
                mode,
                "--compute-dtype",
                compute_dtype,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"exporting {spec!r} failed: {tail[:200]}")
        meta = json.loads(lines[-1])
        if "error" in meta:
            raise ModelError(meta["error"])
        engine = StepModel.load(out) if meta["mode"] == "step" else None
        return engine, meta


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("out")
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--compute-dtype", default="float64")
    args = ap.parse_args()
    from streaming.models import ModelError, build_served, load_keras

    try:
        model, card, name = load_keras(args.spec)
    except ModelError as err:
        print(json.dumps({"error": str(err)}))
        return 0
    meta = {"name": name, "card": card, "mode": "window", "class_names": None, "note": ""}
    card_mode = ((card or {}).get("streaming") or {}).get("mode")
    if args.mode == "step" or (args.mode == "auto" and card_mode != "window"):
        try:
            served = build_served(model, card, name, "step", None, args.compute_dtype)
        except ModelError as err:
            if args.mode == "step":
                print(json.dumps({"error": str(err)}))
                return 0
            meta["note"] = str(err)
        else:
            served.engine.save(args.out)
            meta.update(mode="step", class_names=served.class_names)
    print(json.dumps(meta, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
