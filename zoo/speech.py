"""Speech inference: the word a clip says, digits from a WAV file (CTC decoding) and a keyword spotted in a
stream of audio frames.

What `zoo.classify_audio`, `zoo.transcribe`, `zoo.listen` and the `rnnzoo classify-audio / transcribe / listen`
commands run; the speech tasks (`zoo.tasks.speech`) use the same placement and decoding to score their test
splits.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def listen_wave(stepper: StepModel, card: Card, wave: np.ndarray, chunk_seconds: float = 0.1) -> list[dict]:
    """Run a keyword spotter (its `zoo.step.StepModel`, e.g. ``zoo.predictor(name).stepper``) over ``wave``
    as a stream: chunks -> frames -> one model step per frame.

    Returns one dict per detection: ``time_s`` (end of the frame that fired), ``probability``.
    """
    front = front_end(card)
    threshold = float(card.test_metrics["threshold"])
    refractory = int(card.preprocessing.details.get("refractory_frames", KWS_REFRACTORY))
    state = stepper.initial_state(1)
    frames = front.stream()
    chunk = max(1, int(chunk_seconds * front.sample_rate))
    detections, quiet_until, t = [], -1, 0
    for start in range(0, len(wave), chunk):
        for frame in frames.push(wave[start : start + chunk]):
            y, state = stepper.step(frame[None], state)
            p = float(y[0, 1])
            if p >= threshold and t >= quiet_until:
                time_s = (t * front.hop + front.win_length) / front.sample_rate
                detections.append({"time_s": round(time_s, 2), "probability": round(p, 3)})
                quiet_until = t + refractory
            t += 1
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
    to the blank (issue 16: two seeds of ``digits-ctc-bigru`` averaged validated at sequence error 0.681 / 0.790,
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
