"""The keyword spotter's operating points on its validation voices: how ``keyword-seven-gru``'s detector
(smoothing, threshold) is chosen, measured without the test split.

    KERAS_BACKEND=jax python scripts/keyword_study.py                    # the shipped spotter
    KERAS_BACKEND=jax python scripts/keyword_study.py --model DIR        # one trained elsewhere (rnnzoo train --out DIR)
    KERAS_BACKEND=jax python scripts/keyword_study.py --write            # then evaluate (test) and write the card

For every smoothing and refractory period (`zoo.tasks.speech.KWS_SMOOTHING`, ``KWS_REFRACTORIES``) it prints, on the validation keyword streams and the
validation voices' keyword-free audio (`zoo.data.speech.negative_streams`), the fewest false alarms per hour at
detection >= 0.90, the best detection at <= 2 false alarms per hour, and the best detection at all; then the
point `choose_operating_point` picks. ``--write`` runs the task's evaluate and baselines (the test split,
measured once) and writes them into the shipped card; the model file, and so its sha256 and step parity, is
untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

import zoo
from zoo import cards
from zoo.backend import keras
from zoo.registry import get_spec
from zoo.speech import Detector
from zoo.tasks import TASKS
from zoo.tasks import speech as tasks

NAME = "keyword-seven-gru"


def validation_points(model: keras.Model) -> dict[Detector, dict]:
    """`tasks.operating_points` of ``model`` on the validation streams and keyword-free audio."""
    task = TASKS[get_spec(NAME).task]
    x, _, events = task._part(1)
    negatives = task.negatives("val")["x"]
    probs = [np.asarray(model.predict(v, verbose=0))[..., 1] for v in (x, negatives)]
    return tasks.operating_points(probs[0], events, probs[1], task.front.frame_seconds)


def summary(points: dict[Detector, dict]) -> list[dict]:
    """Per smoothing and refractory period: the best points by the three criteria (the printed table)."""
    rows = []
    for k in tasks.KWS_SMOOTHING:
        for refractory in tasks.KWS_REFRACTORIES:
            mine = {
                d.threshold: r for d, r in points.items() if (d.smoothing, d.refractory) == (k, refractory)
            }
            at90 = [(r["false_alarms_per_hour"], th) for th, r in mine.items() if r["detection_rate"] >= 0.9]
            within = [
                (r["detection_rate"], th) for th, r in mine.items() if r["false_alarms_per_hour"] <= 2.0
            ]
            best = max((r["detection_rate"], th) for th, r in mine.items())
            rows.append(
                {
                    "smoothing": k,
                    "refractory": refractory,
                    "fewest_fa_per_hour_at_detection_0.90": None if not at90 else dict(zip(("fa_per_hour", "threshold"), min(at90), strict=True)),
                    "best_detection_at_2_fa_per_hour": None if not within else dict(zip(("detection", "threshold"), max(within), strict=True)),
                    "best_detection": dict(zip(("detection", "threshold"), best, strict=True))
                    | {"fa_per_hour": round(mine[best[1]]["false_alarms_per_hour"], 2)},
                }
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, help=f"a folder holding {NAME}/model.keras (default: the shipped one)"
    )
    parser.add_argument(
        "--write", action="store_true", help="evaluate on the test split and write the shipped card"
    )
    args = parser.parse_args()
    if args.model is not None and args.write:
        parser.error("--write writes the shipped card: leave out --model")
    path = args.model / NAME / cards.MODEL_FILE if args.model else None
    if path is not None and not path.is_file():
        parser.error(f"no {NAME}/{cards.MODEL_FILE} in {args.model}")
    model = keras.saving.load_model(path, safe_mode=True, compile=False) if path else zoo.load(NAME)
    points = validation_points(model)
    for row in summary(points):
        print(json.dumps(row), flush=True)
    detector, rule = tasks.choose_operating_point(points)
    chosen = points[detector]
    print(json.dumps({"chosen": detector.to_dict(), "rule": rule, "validation": {
        k: chosen[k] for k in ("detection_rate", "false_alarms_per_hour", "false_alarms", "audio_hours")}}))  # fmt: skip
    if args.write:
        spec = get_spec(NAME)
        task = TASKS[spec.task]
        prepared = task.prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size)
        metrics, baselines = task.evaluate(model, prepared, spec.head), task.baselines(prepared)
        folder = cards.model_dir(NAME)
        card = cards.read_card(folder)
        cards.write_card(folder, dataclasses.replace(card, test_metrics=metrics, baselines=baselines))
        print(json.dumps({k: metrics[k] for k in ("detection_rate", "false_alarms_per_hour", "detector")}))


if __name__ == "__main__":
    main()
