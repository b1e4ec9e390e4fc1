"""Sequence classification, whole-sequence or per step (causal, streamable).

Per step, every time step is labelled with its sequence's class, the loss runs over all steps, and the model
can answer after every reading; the card reports accuracy at the last step and averaged over steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split

from zoo.backend import keras
from zoo.data import physio, sensors
from zoo.features import Spectrogram, circular_shifts
from zoo.tasks.base import Prepared, Task, feature_stats, normalisation_card


@dataclass(frozen=True)
class ClassificationTask(Task):
    """Classify sequences from an archive's default train/test split.

    Args:
        loader: ``loader("train" | "test") -> (X [N, T, F], y labels)``.
        dataset: card description of the dataset.
        val_fraction: share of the training split held out (stratified when every class allows it) for early
            stopping.
        published: best published test accuracies on the same default split, for the card.
        frame: when > 1, consecutive raw samples are grouped into frames of this many values, so a long
            univariate waveform becomes a shorter multivariate sequence (each step sees ``frame`` samples).
        features: optional spectral front end (e.g. `zoo.features.Spectrogram`) applied to every raw series
            (train, validation, test, baselines); the model consumes its output. Exclusive with ``frame``.
        augment_shifts: extra randomly circularly shifted copies of each *training* series (after the
            validation split, before ``features``); validation and test data are never augmented.
        features_chosen_by: for the card, how the front end was chosen (never on the test split).
    """

    loader: Callable[[str], tuple[np.ndarray, np.ndarray]]
    dataset: dict
    val_fraction: float = 0.2
    published: dict | None = None
    frame: int = 1
    features: Spectrogram | None = None
    augment_shifts: int = 0
    features_chosen_by: str = ""
    kind: str = "classification"
    heads: tuple[str, ...] = ("step_classification", "sequence_classification")

    def __post_init__(self) -> None:
        if self.features is not None and self.frame > 1:
            raise ValueError("use either frame or features, not both")
        if self.augment_shifts < 0:
            raise ValueError("augment_shifts must be at least 0")

    def _transform(self, x: np.ndarray) -> np.ndarray:
        """Raw series ``[N, T, F]`` -> the model's input sequences."""
        if self.features is not None:
            return self.features(x)
        if self.frame > 1:
            n, t, f = x.shape
            t -= t % self.frame
            x = x[:, :t].reshape(n, t // self.frame, self.frame * f)
        return x

    def _load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.loader(split)
        return self._transform(x), y

    def class_names(self) -> list[str]:
        _, y = self.loader("train")
        return sorted(set(y.tolist()), key=lambda s: (0, int(s), "") if s.isdigit() else (1, 0, s))

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._load("test")
        index = {c: i for i, c in enumerate(self.class_names())}
        return x, np.array([index[c] for c in y])

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        raw, labels = self.loader("train")
        names = self.class_names()
        y = np.array([names.index(c) for c in labels])
        counts = np.bincount(y)
        stratify = y if counts.min() >= 2 and round(len(y) * self.val_fraction) >= len(names) else None
        if stratify is not None or counts.min() < 2:
            x_tr, x_va, y_tr, y_va = train_test_split(
                raw, y, test_size=self.val_fraction, random_state=seed, stratify=stratify
            )
            how = "stratified" if stratify is not None else "random"
        else:  # too few per class to stratify: hold out one series of randomly chosen classes
            val = _one_per_class(y, round(len(y) * self.val_fraction), seed)
            keep = np.setdiff1d(np.arange(len(y)), val)
            x_tr, x_va, y_tr, y_va = raw[keep], raw[val], y[keep], y[val]
            how = "one series from each of randomly chosen classes, so every class keeps training data"
        n_train = len(x_tr)
        # For a `Recipe.refit` final fit: all training series, augmented the same way.
        x_all, y_all = circular_shifts(
            np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]), self.augment_shifts, seed=seed
        )
        x_tr, y_tr = circular_shifts(x_tr, y_tr, self.augment_shifts, seed=seed)
        x_tr, x_va = self._transform(x_tr), self._transform(x_va)
        mean, var = feature_stats(x_tr)
        x_test, _ = self._load("test")
        steps = x_tr.shape[1]

        def shape(targets: np.ndarray) -> np.ndarray:
            return np.repeat(targets[:, None], steps, axis=1) if head == "step_classification" else targets

        return Prepared(
            x_train=x_tr,
            y_train=shape(y_tr),
            x_val=x_va,
            y_val=shape(y_va),
            n_outputs=len(names),
            x_refit=self._transform(x_all),
            y_refit=shape(y_all),
            norm_mean=mean,
            norm_var=var,
            dataset=self.dataset,
            split={
                "how": f"archive default train/test; validation = {self.val_fraction:.0%} of train "
                f"({how}, seed {seed})",
                "train": n_train,
                **({"train_with_augmentation": len(x_tr)} if self.augment_shifts else {}),
                "validation": len(x_va),
                "test": len(x_test),
            },
            preprocessing={
                "class_names": names,
                "n_features": int(x_tr.shape[2]),
                "sequence_length": int(steps),
                "frame": self.frame,
                **({"features": self.features.to_dict()} if self.features is not None else {}),
                **({"features_chosen_by": self.features_chosen_by} if self.features_chosen_by else {}),
                **(
                    {
                        "augmentation": f"training set only: {self.augment_shifts} random circular shift(s) "
                        f"of each raw series (seed {seed}), before the feature transform"
                    }
                    if self.augment_shifts
                    else {}
                ),
                **normalisation_card(mean, var, self.dataset),
            },
        )

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        x, y = self.test_data()
        probs = np.asarray(model.predict(x, verbose=0))
        metrics: dict = {}
        if head == "step_classification":
            per_step = (probs.argmax(-1) == y[:, None]).mean(0)
            metrics["per_step_accuracy_mean"] = float(per_step.mean())
            marks = sorted({max(1, len(per_step) * k // 10) for k in (1, 2, 5, 10)})
            metrics["accuracy_after_steps"] = {str(m): float(per_step[m - 1]) for m in marks}
            probs = probs[:, -1]
        pred = probs.argmax(-1)
        metrics["accuracy"] = float((pred == y).mean())
        metrics["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
        metrics["confusion_matrix"] = confusion_matrix(y, pred, labels=range(prepared.n_outputs)).tolist()
        if self.published:
            metrics["published_accuracy"] = self.published
            best = max(self.published.values())
            metrics["gap_to_best_published"] = round(best - metrics["accuracy"], 4)
        return metrics

    def baselines(self, prepared: Prepared) -> dict:
        x_train, train_labels = self._load("train")
        names = self.class_names()
        y_train = np.array([names.index(c) for c in train_labels])
        x, y = self.test_data()
        majority = np.bincount(y_train).argmax()
        # 1-nearest-neighbour with Euclidean distance (the classic UCR reference method), on the model's inputs.
        nn = _nearest_neighbour(x_train, y_train, x)
        extra = {}
        if self.features is not None:  # also on the raw series, the archive's usual reference
            nn_raw = _nearest_neighbour(self.loader("train")[0], y_train, self.loader("test")[0])
            extra["1nn_euclidean_raw_series"] = {
                "accuracy": float((nn_raw == y).mean()),
                "balanced_accuracy": float(balanced_accuracy_score(y, nn_raw)),
            }
        return {
            "majority_class": {
                "accuracy": float((y == majority).mean()),
                "balanced_accuracy": float(balanced_accuracy_score(y, np.full_like(y, majority))),
            },
            "1nn_euclidean": {
                "accuracy": float((nn == y).mean()),
                "balanced_accuracy": float(balanced_accuracy_score(y, nn)),
            },
            **extra,
        }


def _one_per_class(y: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """Indices of ``n_val`` validation series: one random series from each of ``n_val`` random classes."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(y))[:n_val]
    return np.sort([rng.choice(np.flatnonzero(y == c)) for c in classes])


def _nearest_neighbour(x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Label of each row of ``x``'s Euclidean nearest neighbour in ``x_train`` (sequences flattened)."""
    d = ((x.reshape(len(x), -1)[:, None] - x_train.reshape(len(x_train), -1)[None]) ** 2).sum(-1)
    return y_train[d.argmin(1)]


ACTIVITY = ClassificationTask(
    loader=sensors.basic_motions,
    dataset=sensors.BASIC_MOTIONS,
    published={"archive best (aeon results, several methods)": 1.0},
)

PIG_CVP = ClassificationTask(
    loader=physio.pig_cvp,
    dataset=physio.PIG_CVP,
    published={"InceptionTime": 0.966, "HIVE-COTE 2": 0.952, "WEASEL-2.0": 0.957},
    # 24 steps of log-magnitude spectra: frames of 512 samples (2.05 s, 0.49 Hz resolution, fine enough to
    # separate heart rates) every 64 samples, bins 0..63 = 0-31 Hz. Chosen by 2-fold cross-validation on the
    # training split over five frame/hop settings (scripts/pigcvp_feature_cv.py: 0.779 against 0.683 for the
    # earlier 256-sample frames); earlier validation runs preferred log1p to plain magnitudes, z-normalised
    # series and framed raw waveforms.
    features=Spectrogram(frame_length=512, hop=64, first_bin=0, bins=64, log=True, znorm=False),
    augment_shifts=9,
    features_chosen_by="2-fold cross-validation on the training split, one series of every animal held out per "
    "fold (scripts/pigcvp_feature_cv.py, benchmarks/results/pigcvp_feature_cv.json); the test split was not used",
)
