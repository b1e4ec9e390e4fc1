"""Speech tasks: speaker ID from cepstra, spoken-word recognition, keyword spotting and connected digits (CTC).

All audio tasks read features from one `zoo.audio.FrontEnd` (log-mel, 20 ms frames) whose parameters go on the
card, so the same front end turns a user's WAV file into the model's input. Voices in the test split are
voice variants never heard in training (`zoo.data.speech.split_variants`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.neighbors import NearestCentroid

from zoo.audio import FrontEnd, mean_mfcc
from zoo.backend import keras
from zoo.data import real_voice, speech
from zoo.speech import KWS_REFRACTORY, ctc_decode, edit_distance, placed
from zoo.tasks.base import Prepared, Task, feature_stats
from zoo.tasks.classification import ClassificationTask

SPLIT_NAMES = ("train", "val", "test")

# The audio models' front end: 40 log-mel bands up to 3.8 kHz. Speech arrives through telephone lines and
# 8 kHz recorders as often as through wideband microphones; a band both share makes the two look alike (with
# bands up to 7.6 kHz a telephone clip's empty top bands, or noise alone there, was a cue of its own).
SPEECH_FRONT = FrontEnd(fmax=3800.0)


def _synth_dataset_card(what: str, front: FrontEnd) -> dict:
    variants = speech.split_variants()
    engines = speech.human_engine_versions()
    return {
        "name": f"synthesised speech: {what}",
        "origin": f"rendered offline by Debian espeak-ng ({speech.espeak_version()}), flite ({engines['flite']}) "
        f"and festival ({engines['festival']}); not recorded speech, though the flite and festival voices are "
        "built from recordings of real people",
        "voices": f"{len(speech.voice_variants())} espeak-ng voice variants x {len(speech.ACCENTS)} English "
        f"accents ({', '.join(speech.ACCENTS)}); speed {speech.SPEED_WPM[0]}-{speech.SPEED_WPM[1]} wpm, pitch "
        f"{speech.PITCH[0]}-{speech.PITCH[1]}",
        "human_derived_voices": {v.name: v.person for v in speech.HUMAN_VOICES},
        "human_derived_prosody": f"duration stretch {', '.join(map(str, speech.HUMAN_STRETCH))}; flite mean F0 "
        f"{', '.join(map(str, speech.HUMAN_F0))} Hz",
        "noise": "espeak-ng test voices: white Gaussian noise at SNR "
        + ", ".join("clean" if s is None else f"{s:g} dB" for s in speech.SNRS_DB)
        + " (chosen at random per utterance), no channel; every other clip: the augmentation below",
        "augmentation": speech.augmentation_card(),
        "test_voice_variants": variants["test"],
        "validation_voice_variants": variants["val"],
        "persons": {k: list(v) for k, v in speech.PERSON_SPLIT.items()},
        "real_voice_test": f"Debian {real_voice.PACKAGE} ({real_voice.FOLDER}): one woman's studio recordings, "
        "8 kHz, evaluation only (never trained or tuned on); see test_metrics.real_voice",
        "sample_rate_hz": front.sample_rate,
        "licence": "espeak-ng is GPL-3.0, flite BSD-style (CMU), festival and its English voices free (MIT/X11-style, "
        "Edinburgh/CMU/OGI), its Italian voices GPL-2.0+ (ISTC-CNR), Catalan ona LGPL-2.1+ (UPC), Finnish voices "
        "LGPL-2.0+ (Suopuhe), Czech voices GPL-3.0+ (Brailcom), as their Debian copyright files state; the "
        "generated audio is produced by this project. Asterisk sounds (test only): CC BY-SA "
        "3.0 (Digium)",
    }


_SPLIT_HOW = (
    "by voice: espeak-ng voice variants, and flite/festival voices by the person recorded (train "
    + "/".join(speech.PERSON_SPLIT["train"])
    + ", validation "
    + "/".join(speech.PERSON_SPLIT["val"])
    + ", test "
    + "/".join(speech.PERSON_SPLIT["test"])
    + "): train, validation and test voices are disjoint"
)


def _placement(canvas: float, lead: float) -> dict:
    """How a clip model's input is made from audio, in training and at inference (`zoo.audio.place_speech`)."""
    return {
        "function": "zoo.audio.place_speech",
        "canvas_seconds": canvas,
        "lead_seconds": lead,
        "vad": speech.vad_card(),
        "training": f"the trimmed speech at a random offset 0-{2 * lead:g} s (zoo.data.speech.speech_clip)",
    }


def placed_features(waves: list[np.ndarray], preprocessing: dict) -> np.ndarray:
    """Model input ``[N, T, F]`` of clips: each placed as at inference (`zoo.speech.placed`), then padded
    with silence frames to the longest (at least the training canvas)."""
    front = FrontEnd.from_dict(preprocessing["features"])
    feats = [front(placed(w, preprocessing)) for w in waves]
    t = max(len(f) for f in feats)
    silence = front.silence_frame()
    return np.stack([np.concatenate([f, np.tile(silence, (t - len(f), 1))]) for f in feats])


def _audio_frame_step(preprocessing: dict) -> str:
    """One step of a speech model's input, in words: an audio frame of the front end on its card."""
    f = preprocessing["features"]
    return (
        f"one audio frame: {preprocessing['n_features']} {f['type']} features of a "
        f"{1000 * f['win_length'] / f['sample_rate']:g} ms window, every {1000 * f['hop'] / f['sample_rate']:g} ms"
    )


def _split_card(split: np.ndarray, how: str) -> dict:
    return {
        "how": how,
        **{name: int((split == i).sum()) for i, name in enumerate(("train", "validation", "test"))},
    }


def _normalization(mean: np.ndarray, var: np.ndarray) -> dict:
    return {"mean": mean.tolist(), "variance": var.tolist(), "where": "inside the model"}


# ------------------------------------------------------------------------------------------------------------
# JapaneseVowels: a real speech-derived benchmark, as a plain sequence-classification task.

JAPANESE_VOWELS = ClassificationTask(
    loader=speech.japanese_vowels,
    dataset=speech.JAPANESE_VOWELS,
    published={"UEA archive reference (as listed in the project's data notes)": 0.992},
)


# ------------------------------------------------------------------------------------------------------------
# Spoken words.


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


def _with_augmented_copies(
    x: np.ndarray, frames: np.ndarray, front: FrontEnd, seed: int, copies: int, fill: np.ndarray
) -> np.ndarray:
    """Training clips ``x`` followed by ``copies`` randomised copies of them (`speech.augment_features`)."""
    rng = np.random.default_rng([seed, 6])
    return np.concatenate(
        [x, *(speech.augment_features(x, frames, front, rng, fill=fill) for _ in range(copies))]
    )


def _augmentation_card(copies: int) -> dict:
    return {
        "copies_per_training_clip": copies,
        "how": "speech.augment_features: white/pink/brown noise added in the mel power domain at 0-20 dB SNR, "
        "gain +-6 dB, one time mask <= 6 frames, one band mask <= 5 bands (filled with the training mean); "
        "training split only, on top of the waveform augmentation (dataset.augmentation)",
    }


def _speech_frames(x: np.ndarray, front: FrontEnd) -> np.ndarray:
    """Frames per clip that are not the canvas's digital silence: the trimmed speech with its pauses."""
    return (np.abs(x - front.silence_frame()).max(-1) > 1e-6).sum(1)


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


# ------------------------------------------------------------------------------------------------------------
# Keyword spotting in continuous audio (causal, per frame: it streams).

# A frame is a keyword target from 3 frames before the word ends to 12 after (60 ms before, 240 ms after): a
# causal model can only be sure once it has heard the whole word.
KWS_TARGET = (-3, 12)
# A detection within this many frames after the keyword ends still counts as finding it (0.5 s).
KWS_TOLERANCE = 25
# Operating point: the most sensitive threshold whose false-alarm rate on the validation voices stays at or
# below this many per hour.
KWS_MAX_VAL_FA_PER_HOUR = 10.0
THRESHOLDS = tuple(np.round(np.arange(0.1, 0.96, 0.05), 2).tolist())


def detect(scores: np.ndarray, threshold: float, refractory: int = KWS_REFRACTORY) -> list[int]:
    """Frames where ``scores`` (one stream, ``[T]``) first reach ``threshold``, at least ``refractory`` apart."""
    hits, quiet_until = [], -1
    for t in np.flatnonzero(scores >= threshold):
        if t >= quiet_until:
            hits.append(int(t))
            quiet_until = t + refractory
    return hits


def score_detections(
    detections: list[list[int]], events: np.ndarray, n_frames: int, frame_seconds: float
) -> dict:
    """Detection rate and false alarms per hour of per-stream detections against keyword ``events``.

    ``events`` rows are (stream, first frame, end frame); an occurrence is found when a detection falls in
    ``[first, end + KWS_TOLERANCE)``; every detection that finds nothing (or finds an occurrence already found)
    is a false alarm.
    """
    found, false_alarms = 0, 0
    by_stream: dict[int, list[tuple[int, int]]] = {}
    for s, first, end in events:
        by_stream.setdefault(int(s), []).append((int(first), int(end) + KWS_TOLERANCE))
    for s, frames in enumerate(detections):
        windows = by_stream.get(s, [])
        used = [False] * len(windows)
        for t in frames:
            k = next((i for i, (a, b) in enumerate(windows) if a <= t < b and not used[i]), None)
            if k is None:
                false_alarms += 1
            else:
                used[k] = True
                found += 1
    hours = len(detections) * n_frames * frame_seconds / 3600
    return {
        "detection_rate": found / max(1, len(events)),
        "false_alarms_per_hour": false_alarms / hours,
        "keyword_occurrences": int(len(events)),
        "detections": found,
        "false_alarms": false_alarms,
        "audio_hours": round(hours, 4),
    }


@dataclass
class KeywordSpottingTask(Task):
    """Detect ``keyword`` in continuous speech, frame by frame, with a causal model (a wake-word detector).

    The model emits P(keyword just ended) at every 20 ms frame; a detection is the first frame whose
    probability reaches the threshold chosen on the validation voices.
    """

    keyword: str = "seven"
    front: FrontEnd = field(default_factory=lambda: SPEECH_FRONT)
    kind: str = "keyword-spotting"
    heads: tuple[str, ...] = ("step_classification",)

    def data(self) -> dict:
        return speech.keyword_streams(self.front, self.keyword)

    def _part(self, split: int, source: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Streams, per-frame targets and keyword events (stream renumbered within the part) of one split
        (of one ``source`` only: 0 espeak-ng, 1 human-derived voices)."""
        d = self.data()
        index = np.flatnonzero(
            (d["split"] == split) & ((d["source"] == source) if source is not None else True)
        )
        renumber = {int(s): i for i, s in enumerate(index)}
        events = np.array(
            [(renumber[int(s)], a, b) for s, a, b in d["events"] if int(s) in renumber], "int64"
        )
        x = d["x"][index]
        y = np.zeros(x.shape[:2], dtype="int32")
        for s, _, end in events:
            y[s, max(0, end + KWS_TARGET[0]) : end + KWS_TARGET[1]] = 1
        return x, y, events.reshape(-1, 3)

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, _ = self._part(2)
        return x, y

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        d = self.data()
        x_tr, y_tr, _ = self._part(0)
        x_va, y_va, _ = self._part(1)
        mean, var = feature_stats(x_tr)
        return Prepared(
            x_train=x_tr,
            y_train=y_tr,
            x_val=x_va,
            y_val=y_va,
            n_outputs=2,
            norm_mean=mean,
            norm_var=var,
            dataset=_synth_dataset_card(
                f"continuous streams of words with the keyword {self.keyword!r} among them", self.front
            )
            | {
                "stream_seconds": 4.0,
                "other_words": [w for w in speech.WORDS + speech.FILLERS if w != self.keyword],
            },
            split=_split_card(d["split"], "streams " + _SPLIT_HOW),
            preprocessing={
                "class_names": ["other", self.keyword],
                "keyword": self.keyword,
                "n_features": int(x_tr.shape[2]),
                "sequence_length": None,
                "features": self.front.to_dict(),
                "frame_targets": f"keyword from {KWS_TARGET[0]} to +{KWS_TARGET[1]} frames around the word's end",
                "refractory_frames": KWS_REFRACTORY,
                "tolerance_frames_after_word": KWS_TOLERANCE,
                "normalization": _normalization(mean, var),
            },
        )

    def _sweep(self, scores: np.ndarray, events: np.ndarray) -> dict[float, dict]:
        return {
            th: score_detections(
                [detect(s, th) for s in scores], events, scores.shape[1], self.front.frame_seconds
            )
            for th in THRESHOLDS
        }

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        x_va, _, ev_va = self._part(1)
        x, y, events = self._part(2, source=0)
        val = self._sweep(np.asarray(model.predict(x_va, verbose=0))[..., 1], ev_va)
        ok = [th for th, r in val.items() if r["false_alarms_per_hour"] <= KWS_MAX_VAL_FA_PER_HOUR]
        threshold = min(ok) if ok else max(THRESHOLDS)
        probs = np.asarray(model.predict(x, verbose=0))
        test = self._sweep(probs[..., 1], events)
        x_h, _, ev_h = self._part(2, source=1)
        human = score_detections(
            [detect(p, threshold) for p in np.asarray(model.predict(x_h, verbose=0))[..., 1]],
            ev_h,
            x_h.shape[1],
            self.front.frame_seconds,
        )
        return {
            **test[threshold],
            "threshold": threshold,
            "threshold_rule": f"lowest threshold with <= {KWS_MAX_VAL_FA_PER_HOUR:g} false alarms/hour on the "
            f"validation voices (validation: detection {val[threshold]['detection_rate']:.3f}, "
            f"{val[threshold]['false_alarms_per_hour']:.1f} FA/h)",
            "frame_accuracy": float((probs.argmax(-1) == y).mean()),
            "scope": "detection_rate, false alarms, frame_accuracy and test_sweep: streams of the espeak-ng test "
            "voice variants; human_derived_test_voice: the test person's flite/festival voices through random "
            "channels; real_voice: recordings never trained on; all at the validation-chosen threshold",
            "test_sweep": {
                str(th): {k: round(r[k], 4) for k in ("detection_rate", "false_alarms_per_hour")}
                for th, r in test.items()
            },
            "human_derived_test_voice": {
                **{k: human[k] for k in ("detection_rate", "false_alarms_per_hour", "keyword_occurrences")},
                "streams": int(len(x_h)),
                "persons": list(speech.PERSON_SPLIT["test"]),
            },
            "real_voice": real_voice_keyword(model, prepared.preprocessing, threshold),
        }

    def step_input(self, preprocessing: dict) -> str:
        return _audio_frame_step(preprocessing)

    def baselines(self, prepared: Prepared) -> dict:
        """Sliding-window nearest centroid: mean MFCC of the last 0.5 s, keyword vs other centroid."""
        window = 25
        x_tr, y_tr, _ = self._part(0)
        x, _, events = self._part(2, source=0)
        f_tr, f_te = _sliding_mean_mfcc(x_tr, window), _sliding_mean_mfcc(x, window)
        mu, sd = f_tr.reshape(-1, 13).mean(0), f_tr.reshape(-1, 13).std(0)
        f_tr, f_te = (f_tr - mu) / sd, (f_te - mu) / sd
        keyword = f_tr[y_tr == 1].mean(0)
        other = f_tr[y_tr == 0].mean(0)
        margin = ((f_te - other) ** 2).sum(-1) - ((f_te - keyword) ** 2).sum(-1)
        result = score_detections(
            [detect(m, 0.0) for m in margin], events, x.shape[1], self.front.frame_seconds
        )
        return {
            "nearest_centroid_sliding_mean_mfcc": {
                **{k: result[k] for k in ("detection_rate", "false_alarms_per_hour")},
                "how": f"13 MFCC averaged over the last {window} frames (0.5 s); fires when nearer the keyword "
                "centroid than the other centroid (train frames); same refractory and scoring",
            }
        }


def _sliding_mean_mfcc(x: np.ndarray, window: int) -> np.ndarray:
    """Causal moving average of 13 MFCC over ``window`` frames: ``[N, T, n_mels]`` -> ``[N, T, 13]``."""
    import scipy.fft

    c = scipy.fft.dct(x.astype("float64"), type=2, norm="ortho", axis=-1)[..., :13]
    cum = np.cumsum(np.pad(c, ((0, 0), (window, 0), (0, 0)), mode="edge"), axis=1)
    return (cum[:, window:] - cum[:, :-window]) / window


def error_rates(hyps: list[list[int]], refs: list[list[int]]) -> dict:
    """Sequence error rate (any mistake) and digit error rate (edits / reference digits)."""
    edits = sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
    return {
        "sequence_error_rate": float(np.mean([h != r for h, r in zip(hyps, refs, strict=True)])),
        "digit_error_rate": edits / max(1, sum(len(r) for r in refs)),
    }


@dataclass
class ConnectedDigitsTask(Task):
    """Transcribe 1-6 digits spoken in one breath; bidirectional models trained with CTC (the shipped recipe: three
    seeds voting, `zoo.ensemble`)."""

    front: FrontEnd = field(default_factory=lambda: SPEECH_FRONT)
    beam_width: int = 16
    # Issue 16: one randomised copy per training utterance, as the word classifier has (validation voices,
    # 10 dB white noise: sequence error 0.27-0.37 without).
    augment_copies: int = 1
    kind: str = "ctc"
    heads: tuple[str, ...] = ("ctc",)

    def data(self) -> dict:
        return speech.connected_digits(self.front)

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.data()
        test = d["split"] == 2
        return d["x"][test], d["labels"][test]

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        d = self.data()
        tr, va = d["split"] == 0, d["split"] == 1
        mean, var = feature_stats(d["x"][tr])
        frames = _speech_frames(d["x"][tr], self.front)
        preprocessing = {
            "labels": ["<blank>", *speech.DIGITS],
            "n_features": int(d["x"].shape[2]),
            "sequence_length": int(d["x"].shape[1]),
            "canvas_seconds": 4.5,
            "placement": _placement(4.5, DIGITS_LEAD),
            "features": self.front.to_dict(),
            "decoding": f"greedy and CTC prefix beam search (width {self.beam_width})",
            "normalization": _normalization(mean, var),
        }
        if self.augment_copies:
            preprocessing["training_augmentation"] = _augmentation_card(self.augment_copies)
        return Prepared(
            x_train=_with_augmented_copies(d["x"][tr], frames, self.front, seed, self.augment_copies, mean),
            y_train=np.concatenate([d["labels"][tr]] * (1 + self.augment_copies)),
            x_val=d["x"][va],
            y_val=d["labels"][va],
            n_outputs=11,
            norm_mean=mean,
            norm_var=var,
            dataset=_synth_dataset_card("connected digit strings (1-6 digits, one utterance)", self.front)
            | {
                "word_gap": "espeak-ng -g 0-12 (0-120 ms extra pause between words); human-derived voices: "
                f"separately rendered digits joined with {speech.DIGIT_PAUSES[0]}-{speech.DIGIT_PAUSES[1]} s pauses"
            },
            split=_split_card(d["split"], _SPLIT_HOW),
            preprocessing=preprocessing,
        )

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        d = self.data()
        x, labels = self.test_data()
        log_probs = np.asarray(model.predict(x, verbose=0))
        refs = [[int(v) for v in row if v > 0] for row in labels]
        synth = d["source"][d["split"] == 2] == 0  # espeak-ng test voices: the figure as first measured
        pick = lambda rows, keep: [r for r, k in zip(rows, keep, strict=True) if k]  # noqa: E731
        greedy = ctc_decode(log_probs)
        return {
            **error_rates(ctc_decode(log_probs[synth], self.beam_width), pick(refs, synth)),
            "decoding": f"beam search, width {self.beam_width}",
            "greedy": error_rates(pick(greedy, synth), pick(refs, synth)),
            "test_utterances": int(synth.sum()),
            "scope": "sequence/digit error, greedy and test_utterances: the espeak-ng test voice variants (white "
            "noise, no channel); human_derived_test_voice: the test person's flite/festival digits joined with "
            "pauses, through random channels; real_voice: recordings never trained on",
            "human_derived_test_voice": {
                **error_rates(pick(greedy, ~synth), pick(refs, ~synth)),
                "decoding": "greedy",
                "utterances": int((~synth).sum()),
                "persons": list(speech.PERSON_SPLIT["test"]),
            },
            "real_voice": real_voice_digits(model, prepared.preprocessing),
        }

    def step_input(self, preprocessing: dict) -> str:
        return _audio_frame_step(preprocessing)

    def baselines(self, prepared: Prepared) -> dict:
        """Classical pipeline: split at pauses (energy), then nearest centroid on each segment's mean MFCC."""
        words = speech.spoken_words(self.front)
        digit = (words["split"] == 0) & (words["y"] < 10)
        raw = np.stack([_segment_mfcc(x, 0, x.shape[0]) for x in words["x"][digit]])
        mu, sd = raw.mean(0), raw.std(0)
        centroid = NearestCentroid().fit((raw - mu) / sd, words["y"][digit])
        d = self.data()
        synth = d["source"][d["split"] == 2] == 0  # the model's headline scope
        x, labels = self.test_data()
        x, labels = x[synth], labels[synth]
        refs = [[int(v) for v in row if v > 0] for row in labels]
        hyps = []
        for utterance in x:
            segments = _energy_segments(utterance)
            if not segments:
                hyps.append([])
                continue
            f = np.stack([_segment_mfcc(utterance, a, b) for a, b in segments])
            hyps.append([int(c) + 1 for c in centroid.predict((f - mu) / sd)])
        return {
            "pause_segmentation_nearest_centroid": {
                **error_rates(hyps, refs),
                "how": "frames above an energy threshold (midway between the 10th and 90th percentile of the "
                "utterance's frame energies) form words, gaps >= 3 frames split them; each word's mean MFCC of "
                "its loudest frames is matched to the nearest centroid of isolated digits from the training "
                "voices (spoken-words data)",
            }
        }


def _energy_segments(x: np.ndarray, min_gap: int = 3, min_len: int = 4) -> list[tuple[int, int]]:
    """Runs of loud frames (start, end) separated by at least ``min_gap`` quiet frames."""
    energy = x.mean(-1)
    lo, hi = np.percentile(energy, [10, 90])
    loud = energy > (lo + hi) / 2
    segments: list[list[int]] = []
    for t in np.flatnonzero(loud):
        if segments and t - segments[-1][1] < min_gap:
            segments[-1][1] = t + 1
        else:
            segments.append([t, t + 1])
    return [(a, b) for a, b in segments if b - a >= min_len]


def _segment_mfcc(x: np.ndarray, start: int, end: int) -> np.ndarray:
    """Mean MFCC over the loud part of frames ``start..end`` of one utterance."""
    seg = x[start:end]
    energy = seg.mean(-1)
    keep = energy >= np.percentile(energy, 50) if (energy.max() - energy.min()) > 1e-6 else slice(None)
    return mean_mfcc(seg[None, keep])[0]


SPOKEN_WORDS = SpokenWordTask()
KEYWORD_SPOTTING = KeywordSpottingTask()
CONNECTED_DIGITS = ConnectedDigitsTask()


# ------------------------------------------------------------------------------------------------------------
# Real recorded speech (`zoo.data.real_voice`): measured by every speech task's evaluate() and by
# scripts/real_voice_eval.py, never trained or tuned on. Each function reads only the model and the
# preprocessing entry of its card, so a shipped model can be re-measured.

WORDS_LEAD = 0.1  # seconds of silence before the trimmed speech at inference (training: random 0-0.2 s)
DIGITS_LEAD = 0.15  # (training: random 0-0.3 s)


def real_voice_words(model: keras.Model, preprocessing: dict) -> dict:
    """Single-word accuracy of a word classifier on the recorded vocabulary words (digits and "no")."""
    names, waves = real_voice.real_words()
    pred = np.asarray(model.predict(placed_features(waves, preprocessing), verbose=0)).argmax(-1)
    classes = preprocessing["class_names"]
    said = [classes[int(p)] for p in pred]
    digits = [i for i, n in enumerate(names) if n in speech.DIGITS]
    return {
        "digit_accuracy": float(np.mean([said[i] == names[i] for i in digits])),
        "word_accuracy": float(np.mean([s == n for s, n in zip(said, names, strict=True)])),
        "predictions": dict(zip(names, said, strict=True)),
        "data": f"{real_voice.PACKAGE}: {len(names)} recordings ({', '.join(names)}), one take each",
    }


def real_voice_digits(model: keras.Model, preprocessing: dict) -> dict:
    """A CTC digit model on recorded digits: each digit alone, and joined sequences of 1-6 digits per pause
    length and noise level (`zoo.data.real_voice.digit_sequences`), greedy-decoded: Keras's CTC beam search
    takes about 2 s per utterance on the JAX backend here (the espeak-ng test figure shows what the beam
    adds), and these 910 clips would take half an hour."""
    _, words = real_voice.real_words()
    conditions = [(p, snr) for p in real_voice.SEQUENCE_PAUSES for snr in real_voice.SEQUENCE_SNRS_DB]
    refs: list[list[int]] = [[d] for d in range(10)]
    waves = list(words[:10])
    for pause, snr in conditions:
        digits, audio = real_voice.digit_sequences(pause, snr)
        refs += digits
        waves += audio
    # One batch padded to the longest clip: one compiled shape for the model and the beam search.
    hyps = [
        [v - 1 for v in row]
        for row in ctc_decode(model.predict(placed_features(waves, preprocessing), verbose=0))
    ]
    n = real_voice.SEQUENCES_PER_CONDITION
    sequences = {}
    for i, (pause, snr) in enumerate(conditions):
        part = slice(10 + i * n, 10 + (i + 1) * n)
        key = f"pause_{pause:g}s_" + ("clean" if snr is None else f"snr_{snr:g}db")
        sequences[key] = {k: round(v, 4) for k, v in error_rates(hyps[part], refs[part]).items()}
    clean = [k for k in sequences if k.endswith("clean")]
    overall = error_rates(hyps[10:], refs[10:])
    return {
        "single_digit_accuracy": float(np.mean([h == r for h, r in zip(hyps[:10], refs[:10], strict=True)])),
        "single_digits_transcribed": ["".join(map(str, h)) for h in hyps[:10]],
        "sequences": sequences,
        "sequence_error_rate_clean": float(np.mean([sequences[k]["sequence_error_rate"] for k in clean])),
        "sequence_error_rate_all": overall["sequence_error_rate"],
        "digit_error_rate_all": overall["digit_error_rate"],
        "data": f"{real_voice.PACKAGE} digits 0-9 (one take each); {n} sequences of 1-6 digits per condition, "
        "the recordings cut to their speech (zoo.audio.trim_silence) and joined with pauses of "
        f"{', '.join(f'{p:g}' for p in real_voice.SEQUENCE_PAUSES)} s, clean or in white noise at "
        + ", ".join(f"{s:g} dB" for s in real_voice.SEQUENCE_SNRS_DB if s is not None)
        + " SNR; the same digit sequences in every condition; greedy decoding",
    }


def real_voice_keyword(model: keras.Model, preprocessing: dict, threshold: float) -> dict:
    """A keyword spotter on streams of recorded words (`zoo.data.real_voice.keyword_streams`), clean and in
    10 dB white noise, at ``threshold`` (the one chosen on the validation voices)."""
    front = FrontEnd.from_dict(preprocessing["features"])
    out = {}
    for snr in (None, 10.0):
        audio, occurrences = real_voice.keyword_streams(preprocessing["keyword"], snr)
        x = np.stack([front(a) for a in audio])
        events = np.array(
            [(s, *front.frame_span(a, b)) for s, a, b in occurrences],
            "int64",
        ).reshape(-1, 3)
        probs = np.asarray(model.predict(x, verbose=0))[..., 1]
        r = score_detections([detect(p, threshold) for p in probs], events, x.shape[1], front.frame_seconds)
        out["clean" if snr is None else f"snr_{snr:g}db"] = {
            k: r[k]
            for k in ("detection_rate", "false_alarms_per_hour", "keyword_occurrences", "false_alarms")
        } | {"audio_hours": r["audio_hours"]}
    others = sorted((set(real_voice.WORD_FILES) | set(real_voice.OTHER_FILES)) - {preprocessing["keyword"]})
    out["data"] = (
        f"{real_voice.PACKAGE}: {real_voice.STREAMS} streams of {real_voice.STREAM_SECONDS:g} s per condition, "
        f"the one recording of {preprocessing['keyword']!r} among {len(others)} other recorded words "
        f"({', '.join(others)}); pauses 0.05-0.6 s, levels 0.5-1.0"
    )
    out["threshold"] = threshold
    return out
