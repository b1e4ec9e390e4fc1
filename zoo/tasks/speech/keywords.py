"""Keyword spotting in continuous audio (causal, per frame: it streams)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zoo.audio import FrontEnd
from zoo.backend import keras
from zoo.data import speech
from zoo.speech import Detector
from zoo.tasks.base import Prepared, Task, feature_stats
from zoo.tasks.speech.common import (
    _SPLIT_HOW,
    SPEECH_FRONT,
    _audio_frame_step,
    _normalization,
    _split_card,
    _synth_dataset_card,
)
from zoo.tasks.speech.real_voice_eval import real_voice_keyword
from zoo.tasks.speech.scoring import (
    KWS_REFRACTORIES,
    KWS_SMOOTHING,
    KWS_TARGET,
    KWS_TOLERANCE,
    THRESHOLDS,
    choose_operating_point,
    operating_points,
    scored,
)

# Streams of 20 s per split of keyword-free audio (`speech.negative_streams`): one hour each for validation and
# test, so one false alarm there moves the rate by under 1/h.
KWS_NEGATIVE_STREAMS = {"val": 180, "test": 180}


@dataclass
class KeywordSpottingTask(Task):
    """Detect ``keyword`` in continuous speech, frame by frame, with a causal model (a wake-word detector).

    The model emits P(keyword just ended) at every 20 ms frame; a detection is where its moving average
    (`zoo.speech.Detector`) reaches the threshold chosen on the validation voices.

    Args:
        negative_streams: streams of 20 s of the training voices' keyword-free audio
            (`speech.negative_streams`: run-on speech, word strings, noise) added to training; 0: none. 2160
            (12 h) validated best of 540 / 1080 / 2160: at detection >= 0.90, 26.3 / 10.5 / 9.0 false alarms
            per hour on the validation audio (`scripts/keyword_study.py --model DIR`).
        joined: training keyword streams (4 s each) joined end to end into one training sequence, so that
            with negative audio every training sequence is as long as a keyword-free stream (a streaming
            model then learns to stay quiet over 20 s, not only over the 4 s it starts from zero state).
    """

    keyword: str = "seven"
    front: FrontEnd = field(default_factory=lambda: SPEECH_FRONT)
    negative_streams: int = 2160
    joined: int = 5
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

    def training_streams(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Training input and per-frame targets: the keyword streams (``joined`` at a time, in a seeded
        order) followed by the keyword-free streams cut to the same length (all targets 0)."""
        x, y, _ = self._part(0)
        if not self.negative_streams:
            return x, y
        order = np.random.default_rng([seed, 5]).permutation(len(x))[: len(x) // self.joined * self.joined]
        n, t, f = len(order) // self.joined, x.shape[1] * self.joined, x.shape[2]
        x, y = x[order].reshape(n, t, f), y[order].reshape(n, t)
        negatives = speech.negative_streams(self.front, "train", self.keyword, self.negative_streams)["x"]
        if negatives.shape[1] < t:
            raise ValueError(f"keyword-free streams of {negatives.shape[1]} frames are shorter than {t}")
        x = np.concatenate([x, negatives[:, :t]])
        return x, np.concatenate([y, np.zeros((len(negatives), t), y.dtype)])

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        d = self.data()
        x_tr, y_tr = self.training_streams(seed)
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
                "keyword_free_audio": {
                    "what": "speech.negative_streams: 20 s streams in which the keyword is never said, by each "
                    "split's own voices: "
                    + ", ".join(
                        f"{k} {v:.0%}"
                        for k, v in zip(speech.NEGATIVE_KINDS, speech.NEGATIVE_SHARES, strict=True)
                    )
                    + " (run-on speech: espeak-ng reading King James verses without the keyword; words: the "
                    "human-derived voices' other words; noise: white/pink/brown alone)",
                    "streams": {"train": self.negative_streams, **KWS_NEGATIVE_STREAMS},
                    "training": f"the training keyword streams joined {self.joined} at a time into "
                    f"{4 * self.joined:g} s sequences, then the training keyword-free streams cut to that length"
                    if self.negative_streams
                    else "not trained on",
                },
            },
            split=_split_card(d["split"], "streams " + _SPLIT_HOW),
            preprocessing={
                "class_names": ["other", self.keyword],
                "keyword": self.keyword,
                "n_features": int(x_tr.shape[2]),
                "sequence_length": None,
                "features": self.front.to_dict(),
                "frame_targets": f"keyword from {KWS_TARGET[0]} to +{KWS_TARGET[1]} frames around the word's end",
                "tolerance_frames_after_word": KWS_TOLERANCE,
                "normalization": _normalization(mean, var),
            },
        )

    def negatives(self, part: str) -> dict:
        """The long keyword-free audio of split ``part`` (``val`` / ``test``) that false alarms are counted on."""
        return speech.negative_streams(self.front, part, self.keyword, KWS_NEGATIVE_STREAMS[part])

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        def probs(x: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict(x, verbose=0))[..., 1]

        seconds = self.front.frame_seconds
        x_va, _, ev_va = self._part(1)
        val = operating_points(probs(x_va), ev_va, probs(self.negatives("val")["x"]), seconds)
        detector, rule = choose_operating_point(val)
        x, y, events = self._part(2, source=0)
        out = np.asarray(model.predict(x, verbose=0))
        negatives = self.negatives("test")
        neg = probs(negatives["x"])
        speech_and_noise = negatives["kind"] != 1  # run-on speech of the espeak-ng test voices, and noise
        test = scored(detector, out[..., 1], events, neg[speech_and_noise], seconds)
        by_kind = {}  # the keyword-free audio's false alarms and hours, kind by kind
        for k in (0, 2):
            part = detector.scores(neg[negatives["kind"] == k])
            fired = sum(len(detector.fire(p)) for p in part)
            by_kind[speech.NEGATIVE_KINDS[k]] = {
                "false_alarms": fired,
                "hours": round(part.size * seconds / 3600, 4),
            }
        x_h, _, ev_h = self._part(2, source=1)
        human = scored(detector, probs(x_h), ev_h, neg[negatives["kind"] == 1], seconds)
        coarse = [th for th in THRESHOLDS if round(th * 100) % 5 == 0]
        sweep = operating_points(
            out[..., 1],
            events,
            neg[speech_and_noise],
            seconds,
            (detector.smoothing,),
            coarse,
            (detector.refractory,),
        )
        chosen = val[detector]
        return {
            **{
                k: test[k]
                for k in ("detection_rate", "false_alarms_per_hour", "keyword_occurrences", "detections")
            },
            "false_alarms": test["false_alarms"],
            "audio_hours": test["audio_hours"],
            "false_alarms_by_audio": {
                "keyword_streams": test["keyword_streams"],
                **by_kind,
            },
            "threshold": detector.threshold,
            "detector": detector.to_dict(),
            "threshold_rule": f"{rule}, over smoothing {', '.join(map(str, KWS_SMOOTHING))} frames, refractory "
            f"periods {', '.join(map(str, KWS_REFRACTORIES))} frames and thresholds {THRESHOLDS[0]:g}-"
            f"{THRESHOLDS[-1]:g} (step 0.01), on the validation streams and "
            f"{chosen['keyword_free_audio']['hours']:.2f} h of the validation voices' keyword-free audio "
            f"(validation: detection {chosen['detection_rate']:.3f}, {chosen['false_alarms_per_hour']:.2f} FA/h)",
            "validation": {
                k: chosen[k]
                for k in ("detection_rate", "false_alarms_per_hour", "false_alarms", "audio_hours")
            },
            "frame_accuracy": float((out.argmax(-1) == y).mean()),
            "scope": "detection_rate and frame_accuracy: streams of the espeak-ng test voice variants; false alarms: "
            "those streams and the test voices' keyword-free run-on speech and noise (false_alarms_by_audio); "
            "test_sweep: the same audio at the chosen smoothing and refractory period; human_derived_test_voice: the test person's "
            "flite/festival voices through random channels, keyword streams and keyword-free word strings; "
            "real_voice: recordings never trained on; all at the validation-chosen detector",
            "test_sweep": {
                str(d.threshold): {k: round(r[k], 4) for k in ("detection_rate", "false_alarms_per_hour")}
                for d, r in sweep.items()
            },
            "human_derived_test_voice": {
                **{k: human[k] for k in ("detection_rate", "false_alarms_per_hour", "keyword_occurrences")},
                "streams": int(len(x_h)),
                "audio_hours": human["audio_hours"],
                "persons": list(speech.PERSON_SPLIT["test"]),
            },
            "real_voice": real_voice_keyword(model, prepared.preprocessing, detector),
            "reproduce": "test: rnnzoo evaluate (this evaluate, detector chosen afresh on validation); every "
            "validation operating point: KERAS_BACKEND=jax python scripts/keyword_study.py (--model DIR for a "
            "model trained elsewhere; --write puts this evaluate into the shipped card)",
        }

    def step_input(self, preprocessing: dict) -> str:
        return _audio_frame_step(preprocessing)

    def baselines(self, prepared: Prepared) -> dict:
        """Sliding-window nearest centroid: mean MFCC of the last 0.5 s, keyword vs other centroid."""
        window = 25
        x_tr, y_tr, _ = self._part(0)
        x, _, events = self._part(2, source=0)
        negatives = self.negatives("test")
        neg = negatives["x"][negatives["kind"] != 1]
        f_tr, f_te, f_neg = (_sliding_mean_mfcc(v, window) for v in (x_tr, x, neg))
        mu, sd = f_tr.reshape(-1, 13).mean(0), f_tr.reshape(-1, 13).std(0)
        f_tr, f_te, f_neg = ((f - mu) / sd for f in (f_tr, f_te, f_neg))
        keyword = f_tr[y_tr == 1].mean(0)
        other = f_tr[y_tr == 0].mean(0)

        def margin(f: np.ndarray) -> np.ndarray:
            return ((f - other) ** 2).sum(-1) - ((f - keyword) ** 2).sum(-1)

        result = scored(Detector(0.0), margin(f_te), events, margin(f_neg), self.front.frame_seconds)
        return {
            "nearest_centroid_sliding_mean_mfcc": {
                **{k: result[k] for k in ("detection_rate", "false_alarms_per_hour")},
                "how": f"13 MFCC averaged over the last {window} frames (0.5 s); fires when nearer the keyword "
                "centroid than the other centroid (train frames); same refractory, audio and scoring",
            }
        }


def _sliding_mean_mfcc(x: np.ndarray, window: int) -> np.ndarray:
    """Causal moving average of 13 MFCC over ``window`` frames: ``[N, T, n_mels]`` -> ``[N, T, 13]``."""
    import scipy.fft

    c = scipy.fft.dct(x.astype("float64"), type=2, norm="ortho", axis=-1)[..., :13]
    cum = np.cumsum(np.pad(c, ((0, 0), (window, 0), (0, 0)), mode="edge"), axis=1)
    return (cum[:, window:] - cum[:, :-window]) / window


KEYWORD_SPOTTING = KeywordSpottingTask()
