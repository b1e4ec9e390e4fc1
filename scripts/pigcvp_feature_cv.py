"""Choose PigCVP's spectral front end by 2-fold cross-validation on the training split only.

PigCVP has two training series per animal, so a single validation split is a coin toss (one held-out series for
a fifth of the animals). Here each fold trains the shipped recipe on one series of every animal (with the same
circular-shift augmentation) and scores the other: 52 validation series per fold, every class present. The
test split is never read. Writes ``benchmarks/results/pigcvp_feature_cv.json``.

Usage: ``KERAS_BACKEND=jax python scripts/pigcvp_feature_cv.py`` (about 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zoo.features import Spectrogram, circular_shifts
from zoo.registry import get_spec
from zoo.tasks.base import Prepared, feature_stats
from zoo.tasks.classification import PIG_CVP
from zoo.training import fit

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "pigcvp_feature_cv.json"
CANDIDATES = {
    "frames 256 / hop 128, bins 0-31 (0-30 Hz)": Spectrogram(frame_length=256, hop=128, first_bin=0, bins=32),
    "frames 256 / hop 64, bins 0-31 (0-30 Hz)": Spectrogram(frame_length=256, hop=64, first_bin=0, bins=32),
    "frames 512 / hop 128, bins 0-63 (0-31 Hz)": Spectrogram(frame_length=512, hop=128, first_bin=0, bins=64),
    "frames 512 / hop 64, bins 0-63 (0-31 Hz)": Spectrogram(frame_length=512, hop=64, first_bin=0, bins=64),
    "frames 1024 / hop 128, bins 0-127 (0-31 Hz)": Spectrogram(
        frame_length=1024, hop=128, first_bin=0, bins=128
    ),
}


def two_folds(y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs: fold 1 validates on each class's first series, fold 2 on its second."""
    first = np.array([i for i in range(len(y)) if not (y[:i] == y[i]).any()])
    second = np.setdiff1d(np.arange(len(y)), first)
    return [(second, first), (first, second)]


def main() -> None:
    spec = get_spec("pigcvp-bigru")
    raw, labels = PIG_CVP.loader("train")
    names = PIG_CVP.class_names()
    y = np.array([names.index(c) for c in labels])
    results = []
    for label, features in tqdm(CANDIDATES.items(), desc="front ends", unit="candidate"):
        start, accuracies = time.perf_counter(), []
        for train, val in two_folds(y):
            x_aug, y_aug = circular_shifts(
                raw[train], y[train], PIG_CVP.augment_shifts, seed=spec.recipe.seed
            )
            x_tr, x_va = features(x_aug), features(raw[val])
            mean, var = feature_stats(x_tr)
            prepared = Prepared(
                x_train=x_tr,
                y_train=y_aug,
                x_val=x_va,
                y_val=y[val],
                n_outputs=len(names),
                norm_mean=mean,
                norm_var=var,
                dataset={},
                split={},
                preprocessing={},
            )
            model, _ = fit(spec.with_overrides(refit=False), prepared, verbose=0)  # best-val_loss weights
            pred = np.asarray(model.predict(x_va, verbose=0)).argmax(-1)
            accuracies.append(round(float((pred == y[val]).mean()), 4))
        results.append(
            {
                "front_end": label,
                "features": features.to_dict(),
                "fold_accuracy": accuracies,
                "cv_accuracy": round(float(np.mean(accuracies)), 4),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        tqdm.write(f"{label:48s} 2-fold accuracy {results[-1]['cv_accuracy']:.3f}  folds {accuracies}")
    best = max(results, key=lambda r: r["cv_accuracy"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "what": "2-fold cross-validation of PigCVP front ends on the training split (test never read); "
                "each fold trains pigcvp-bigru's recipe on one series per animal and scores the other",
                "recipe": spec.recipe.to_dict() | {"architecture": spec.arch.to_dict()},
                "results": results,
                "chosen": best["front_end"],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"chosen: {best['front_end']} -> {OUT}")


if __name__ == "__main__":
    main()
