"""Choose the sentiment-bilstm recipe on validation only: a few short runs over the pretrained
word-piece vectors, each measured on the validation split, never on test.

    KERAS_BACKEND=jax nice -n 10 python scripts/sentiment_study.py                 # every configuration
    KERAS_BACKEND=jax nice -n 10 python scripts/sentiment_study.py frozen-x1 ...   # the ones named

Each configuration changes the word-piece task (vector scale, frozen or fine-tuned embedding) and/or the
registry recipe (units, epochs); a run trains with `zoo.training.fit` exactly as `rnnzoo train` does and keeps
the validation accuracy of its restored (best) epoch. Results are merged into RESULTS by name, so runs can be
made one at a time; the table is printed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from zoo.backend import keras
from zoo.registry import get_spec
from zoo.tasks import TASKS
from zoo.training import device_name, fit

MODEL = "sentiment-bilstm"
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "sentiment_study.json"
EPOCHS = 6  # short runs: the study compares recipes, the shipped run trains to early stopping

# name -> (task field changes, recipe/architecture overrides of the registry spec)
CONFIGS: dict[str, tuple[dict, dict]] = {
    "frozen-x1": ({"vector_scale": 1.0}, {}),
    "frozen-x8": ({"vector_scale": 8.0}, {}),
    "frozen-x16": ({"vector_scale": 16.0}, {}),
    "finetuned-x1": ({"vector_scale": 1.0, "trainable_embedding": True}, {}),
    "finetuned-x8": ({"vector_scale": 8.0, "trainable_embedding": True}, {}),
    "frozen-x8-int8": ({"vector_scale": 8.0, "quantize_embedding": True}, {}),
    "frozen-x8-u128": ({"vector_scale": 8.0}, {"units": 128}),
    "frozen-x4": ({"vector_scale": 4.0}, {}),
    # The candidate shipped recipe: int8 table, 12 epochs with the learning rate decayed by a cosine.
    "frozen-x8-int8-cosine12": (
        {"vector_scale": 8.0, "quantize_embedding": True},
        {"epochs": 12, "lr_decay": "cosine", "patience": 4},
    ),
    "frozen-x8-int8-u128-cosine12": (
        {"vector_scale": 8.0, "quantize_embedding": True},
        {"units": 128, "epochs": 12, "lr_decay": "cosine", "patience": 4},
    ),
}
# Every run states the task fields it studies, whatever the registry's task defaults to.
STUDIED = {"vector_scale": 1.0, "trainable_embedding": False, "quantize_embedding": False}


def run(name: str) -> dict:
    task_changes, overrides = CONFIGS[name]
    spec = get_spec(MODEL)
    task = dataclasses.replace(TASKS[spec.task], **(STUDIED | task_changes))
    spec = spec.with_overrides(**({"epochs": EPOCHS} | overrides))
    prepared = task.prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size)
    start = time.perf_counter()
    _, hist = fit(spec, prepared, verbose=2, task=task)
    best = hist["best_epoch"]
    return {
        "task": task_changes,
        "overrides": {"epochs": EPOCHS} | overrides,
        "recipe": spec.recipe.to_dict(),
        "units": spec.arch.units,
        "validation_accuracy": round(hist["val_accuracy"][best - 1], 4),
        "validation_accuracy_per_epoch": [round(v, 4) for v in hist["val_accuracy"]],
        "best_epoch": best,
        "epochs_run": len(hist["loss"]),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "backend": keras.backend.backend(),
        "device": device_name(),
    }


def main() -> None:
    names = sys.argv[1:] or list(CONFIGS)
    unknown = set(names) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configuration(s) {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    results["how"] = (
        f"{MODEL}'s registry recipe with the changes named, {EPOCHS} epochs at most (early stopping on "
        "val_accuracy as the recipe says), seed 0; validation accuracy of the restored epoch (the test split "
        "is never read); scripts/sentiment_study.py"
    )
    for name in names:
        print(f"== {name}", flush=True)
        results["runs"][name] = run(name)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'configuration':<18} {'val acc':>8} {'best ep':>8} {'wall s':>8}")
    for name, r in results["runs"].items():
        print(f"{name:<18} {r['validation_accuracy']:>8.4f} {r['best_epoch']:>8} {r['wall_time_s']:>8.0f}")


if __name__ == "__main__":
    main()
