"""Spoken words: which of ten digits and ten commands a one-second clip says, on unseen voices."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.neighbors import NearestCentroid

from zoo.audio import FrontEnd, mean_mfcc
from zoo.backend import keras
from zoo.data import speech
from zoo.tasks.base import Prepared, Task, feature_stats
from zoo.tasks.speech.common import (
    _SPLIT_HOW,
    SPEECH_FRONT,
    _audio_frame_step,
    _augmentation_card,
    _normalization,
    _placement,
    _split_card,
    _synth_dataset_card,
    _with_augmented_copies,
)
from zoo.tasks.speech.real_voice_eval import WORDS_LEAD, real_voice_words


@dataclass
class SpokenWordTask(Task):
    """Which of ``speech.WORDS`` (ten digits, ten commands) a one-second clip says, on unseen voices.

    Args:
        front: the audio front end (its parameters go on the card).
        renditions: how many times each voice variant says each word.
        augment_copies: randomised copies of every training clip added to the training split only
            (`speech.augment_features`: white/pink/brown noise, gain, time and band masks; validation and test
            clips are never augmented).
    """

    front: FrontEnd = field(default_factory=lambda: SPEECH_FRONT)
    renditions: int = 3
    augment_copies: int = 1
    kind: str = "classification"
    heads: tuple[str, ...] = ("sequence_classification",)

    def data(self) -> dict:
        return speech.spoken_words(self.front, self.renditions)

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.data()
        test = d["split"] == 2
        return d["x"][test], d["y"][test]

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        d = self.data()
        tr, va = d["split"] == 0, d["split"] == 1
        mean, var = feature_stats(d["x"][tr])
        x_train = _with_augmented_copies(
            d["x"][tr], d["frames"][tr], self.front, seed, self.augment_copies, mean
        )
        y_train = np.concatenate([d["y"][tr]] * (1 + self.augment_copies))
        preprocessing = {
            "class_names": speech.WORDS,
            "n_features": int(d["x"].shape[2]),
            "sequence_length": int(d["x"].shape[1]),
            "features": self.front.to_dict(),
            "clip_seconds": 1.2,
            "placement": _placement(1.2, WORDS_LEAD),
            "normalization": _normalization(mean, var),
        }
        if self.augment_copies:
            preprocessing["training_augmentation"] = _augmentation_card(self.augment_copies)
        return Prepared(
            x_train=x_train,
            y_train=y_train,
            x_val=d["x"][va],
            y_val=d["y"][va],
            n_outputs=len(speech.WORDS),
            norm_mean=mean,
            norm_var=var,
            dataset=_synth_dataset_card("isolated words (10 digits + 10 commands)", self.front),
            split=_split_card(d["split"], _SPLIT_HOW),
            preprocessing=preprocessing,
        )

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        d = self.data()
        x, y = self.test_data()
        pred = np.asarray(model.predict(x, verbose=0)).argmax(-1)
        source, snr = d["source"][d["split"] == 2], d["snr"][d["split"] == 2]
        synth = source == 0  # the espeak-ng test voices, measured as before the human-derived voices came
        pred, y, snr, human = pred[synth], y[synth], snr[synth], (pred[~synth], y[~synth])
        return {
            "accuracy": float((pred == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "accuracy_by_snr_db": {
                ("clean" if np.isinf(s) else f"{s:g}"): float((pred[snr == s] == y[snr == s]).mean())
                for s in np.unique(snr)
            },
            "scope": "accuracy, balanced_accuracy, accuracy_by_snr_db and confusion_matrix: the espeak-ng test "
            "voice variants (white noise, no channel); human_derived_test_voice: the test person's flite/festival "
            "voices through random channels; real_voice: recordings never trained on",
            "human_derived_test_voice": {
                "accuracy": float((human[0] == human[1]).mean()),
                "clips": int(len(human[1])),
                "persons": list(speech.PERSON_SPLIT["test"]),
            },
            "real_voice": real_voice_words(model, prepared.preprocessing),
            "class_names": speech.WORDS,
            "confusion_matrix": confusion_matrix(y, pred, labels=range(len(speech.WORDS))).tolist(),
        }

    def step_input(self, preprocessing: dict) -> str:
        return _audio_frame_step(preprocessing)

    def baselines(self, prepared: Prepared) -> dict:
        d = self.data()
        feats = _speech_mean_mfcc(d["x"], d["frames"])
        tr, te = d["split"] == 0, (d["split"] == 2) & (d["source"] == 0)  # the model's headline scope
        centroid = NearestCentroid().fit(feats[tr], d["y"][tr])
        pred = centroid.predict(feats[te])
        majority = np.bincount(d["y"][tr]).argmax()
        return {
            "nearest_centroid_mean_mfcc": {
                "accuracy": float((pred == d["y"][te]).mean()),
                "how": "13 MFCC (DCT of the same log-mel frames) averaged over the clip's speech frames, "
                "standardised on train; nearest class centroid",
            },
            "majority_class": {"accuracy": float((d["y"][te] == majority).mean())},
        }

    def plot(self, model: keras.Model, path: Path) -> Path:
        x, y = self.test_data()
        pred = np.asarray(model.predict(x, verbose=0)).argmax(-1)
        return plot_confusion(y, pred, speech.WORDS, path, "spoken words, unseen voices (test)")


def _speech_mean_mfcc(x: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Mean MFCC over each clip's loudest ``frames`` frames (where the word is), standardised."""
    energy = x.mean(-1)
    out = np.empty((len(x), 13))
    for i in range(len(x)):
        keep = np.sort(np.argsort(energy[i])[-max(1, int(frames[i])) :])
        out[i] = mean_mfcc(x[i : i + 1, keep])[0]
    return (out - out.mean(0)) / out.std(0)


def plot_confusion(y: np.ndarray, pred: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    """Confusion matrix PNG (rows: truth, columns: prediction), counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(y, pred, labels=range(len(names)))
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    for i, j in zip(*np.nonzero(cm), strict=True):
        ax.text(
            j,
            i,
            str(cm[i, j]),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if cm[i, j] > cm.max() / 2 else "black",
        )
    ax.set(xlabel="predicted", ylabel="spoken", title=f"{title}: accuracy {(y == pred).mean():.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


SPOKEN_WORDS = SpokenWordTask()
