"""Speech inference: the word a clip says, digits from a WAV file (CTC decoding) and a keyword spotted in a
stream of audio frames.

What `zoo.classify_audio`, `zoo.transcribe`, `zoo.listen` and the `rnnzoo classify-audio / transcribe / listen`
commands run; the speech tasks (`zoo.tasks.speech`) use the same placement and decoding to score their test
splits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.audio import FrontEnd, place_speech, read_wav
from zoo.backend import keras
from zoo.cards import Card
from zoo.step import StepModel

# After a detection, the detector stays quiet this long (frames, 1 s) so one keyword fires once.
KWS_REFRACTORY = 50


def front_end(card: Card) -> FrontEnd:
    """The audio front end a speech model's card describes (the one it was trained with)."""
    return FrontEnd.from_dict(card.preprocessing.details["features"])


def sample_rate(card: Card) -> int:
    """The sample rate (Hz) a speech model's front end reads."""
    return int(card.preprocessing.details["features"]["sample_rate"])


@dataclass(frozen=True)
class Detector:
    """How a keyword spotter's per-frame probabilities become detections, offline and in a stream alike.

    The score of frame ``t`` is the mean of the keyword probability over frames ``t - smoothing + 1 .. t``
    (frames before the stream's start count as 0): causal, so it is a streaming decision. A detection is a
    frame whose score reaches ``threshold`` at least ``refractory`` frames after the previous detection.
    Scores are summed in float64 in the same order offline (`scores`) and step by step (`DetectorStream`), so
    both give bit-identical detections on the same probabilities.
    """

    threshold: float
    smoothing: int = 1
    refractory: int = KWS_REFRACTORY

    def __post_init__(self) -> None:
        if self.smoothing < 1 or self.refractory < 1:
            raise ValueError("smoothing and refractory must be at least one frame")

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """Smoothed scores of keyword probabilities ``[..., T]`` (one stream per row)."""
        p = np.asarray(probs, "float64")
        total = np.zeros_like(p)
        t = p.shape[-1]
        for lag in range(min(self.smoothing, t)):  # the newest frame first, as DetectorStream adds them
            total[..., lag:] += p[..., : t - lag]
        return total / self.smoothing

    def detect(self, probs: np.ndarray) -> list[int]:
        """Frames of one stream's probabilities ``[T]`` where the detector fires."""
        return self.fire(self.scores(probs))

    def fire(self, scores: np.ndarray) -> list[int]:
        """Frames of one stream's smoothed ``scores`` ``[T]`` where the detector fires."""
        hits, quiet_until = [], -1
        for t in np.flatnonzero(scores >= self.threshold):
            if t >= quiet_until:
                hits.append(int(t))
                quiet_until = t + self.refractory
        return hits

    def stream(self) -> DetectorStream:
        """A fresh step-by-step detector (no frames seen yet)."""
        return DetectorStream(self)

    def to_dict(self) -> dict:
        """For the card (``test_metrics.detector``); `from_card` reads it back."""
        return {
            "threshold": self.threshold,
            "smoothing_frames": self.smoothing,
            "refractory_frames": self.refractory,
        }

    @classmethod
    def from_card(cls, card: Card) -> Detector:
        """The operating point a keyword spotter's card records (chosen on its validation streams)."""
        d = card.test_metrics.get("detector")
        if d is None:  # a card from before smoothing: the raw probability, the card's threshold
            refractory = int(card.preprocessing.details.get("refractory_frames", KWS_REFRACTORY))
            return cls(float(card.test_metrics["threshold"]), 1, refractory)
        return cls(float(d["threshold"]), int(d["smoothing_frames"]), int(d["refractory_frames"]))


class DetectorStream:
    """`Detector` one frame at a time: keeps the last ``smoothing`` probabilities and the refractory clock."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._recent: deque[float] = deque(maxlen=detector.smoothing)
        self._quiet_until = -1
        self.frames = 0

    def push(self, probability: float) -> float | None:
        """Add one frame's keyword probability; its score if the detector fires on this frame, else None."""
        self._recent.appendleft(float(probability))
        total = 0.0
        for p in self._recent:  # newest first, as Detector.scores sums the lags
            total += p
        score = total / self.detector.smoothing
        t, self.frames = self.frames, self.frames + 1
        if score >= self.detector.threshold and t >= self._quiet_until:
            self._quiet_until = t + self.detector.refractory
            return score
        return None


def listen_wave(stepper: StepModel, card: Card, wave: np.ndarray, chunk_seconds: float = 0.1) -> list[dict]:
    """Run a keyword spotter (its `zoo.step.StepModel`, e.g. ``zoo.predictor(name).stepper``) over ``wave``
    as a stream: chunks -> frames -> one model step per frame -> the card's `Detector`.

    Returns one dict per detection: ``time_s`` (end of the frame that fired), ``probability`` (its smoothed
    score).
    """
    front = front_end(card)
    detector = Detector.from_card(card).stream()
    state = stepper.initial_state(1)
    frames = front.stream()
    chunk = max(1, int(chunk_seconds * front.sample_rate))
    detections = []
    for start in range(0, len(wave), chunk):
        for frame in frames.push(wave[start : start + chunk]):
            y, state = stepper.step(frame[None], state)
            t = detector.frames
            score = detector.push(float(y[0, 1]))
            if score is not None:
                time_s = (t * front.hop + front.win_length) / front.sample_rate
                detections.append({"time_s": round(time_s, 2), "probability": round(score, 3)})
    return detections


# ------------------------------------------------------------------------------------------------------------
# Isolated words.


def placed(wave: np.ndarray, preprocessing: dict, cut: bool = False) -> np.ndarray:
    """``wave`` laid on a clip model's canvas as its preprocessing's ``placement`` says (a card's
    ``preprocessing.details``; `zoo.audio.place_speech`: the voice-activity trim training used, a lead of
    silence, padding to the training canvas). ``cut``: longer speech is cut to the canvas, not kept whole."""
    placement = preprocessing["placement"]
    rate = int(preprocessing["features"]["sample_rate"])
    canvas = float(placement["canvas_seconds"])
    out = place_speech(np.asarray(wave, "float32"), rate, canvas, float(placement["lead_seconds"]))
    return out[: int(canvas * rate)] if cut else out


def classify_wave(model: keras.Model, card: Card, wave: np.ndarray) -> dict:
    """Which of the card's words ``wave`` (mono, at the front end's rate) says.

    Returns ``{"label", "probability", "probabilities"}``; ``probabilities`` maps every word to its
    probability, most likely first.
    """
    # One word fits the clip; longer speech is cut to the clip the classifier was trained on.
    clip = placed(wave, card.preprocessing.details, cut=True)
    probs = np.asarray(model.predict(front_end(card)(clip)[None], verbose=0))[0]
    names = card.class_names or [str(i) for i in range(len(probs))]
    order = np.argsort(-probs)
    return {
        "label": names[order[0]],
        "probability": float(probs[order[0]]),
        "probabilities": {names[i]: float(probs[i]) for i in order},
    }


# ------------------------------------------------------------------------------------------------------------
# Connected digits with CTC.


def ctc_decode(log_probs: np.ndarray, beam_width: int = 0) -> list[list[int]]:
    """Label sequences (blank 0 removed, repeats merged) of per-frame log-probabilities ``[N, T, C]``, or of an
    ensemble's ``[N, members, T, C]`` (`zoo.ensemble`): each member decoded, then `vote_transcripts`.

    ``beam_width`` 0 is greedy (best label per frame); otherwise a CTC prefix beam search of that width
    (`keras.ops.ctc_decode`).
    """
    log_probs = np.asarray(log_probs, dtype="float32")
    if log_probs.ndim == 4:  # one decoding call for every member's utterances (one compiled batch shape)
        n, members = log_probs.shape[:2]
        flat = ctc_decode(log_probs.reshape(n * members, *log_probs.shape[2:]), beam_width)
        return vote_transcripts([flat[m::members] for m in range(members)])
    lengths = np.full(len(log_probs), log_probs.shape[1], dtype="int32")
    if beam_width:
        decoded, _ = keras.ops.ctc_decode(
            log_probs, lengths, strategy="beam_search", beam_width=beam_width, top_paths=1, mask_index=0
        )
    else:
        decoded, _ = keras.ops.ctc_decode(log_probs, lengths, strategy="greedy", mask_index=0)
    best = np.asarray(keras.ops.convert_to_numpy(decoded))[0]
    return [[int(v) for v in row if v > 0] for row in best]


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def vote_transcripts(per_model: Sequence[Sequence[list[int]]]) -> list[list[int]]:
    """One transcript per utterance from several models' transcripts (``per_model[m][n]``): the one closest, in
    summed edit distance, to the other models' (so two that agree outvote a third); ties go to the earlier model.

    Why a vote of transcripts and not an average of the models' per-frame probabilities: CTC models trained
    alike from different seeds fire their label spikes a frame or so apart, and averaging hands those frames
    to the blank (two seeds of ``digits-ctc-bigru`` averaged validate at sequence error 0.681 / 0.790,
    against 0.109-0.257 alone).
    """
    voted = []
    for candidates in zip(*per_model, strict=True):
        cost = [sum(edit_distance(c, other) for other in candidates) for c in candidates]
        voted.append(list(candidates[int(np.argmin(cost))]))
    return voted


def transcribe_wave(model: keras.Model, card: Card, wave: np.ndarray, beam_width: int = 16) -> str:
    """Digits spoken in ``wave`` (mono, at the front end's rate), e.g. ``"314"``.

    The audio is placed as in training (`placed`).
    """
    front = front_end(card)
    wave = placed(wave, card.preprocessing.details)
    log_probs = np.asarray(model.predict(front(wave)[None], verbose=0))
    labels = ctc_decode(log_probs, beam_width)[0]
    return "".join(str(v - 1) for v in labels)


def load_audio(path: str | Path, card: Card) -> np.ndarray:
    """A WAV file as the model's front end wants it (mono, resampled); `zoo.audio.AudioError` if unusable."""
    return read_wav(path, sample_rate(card))
