"""Real recorded speech (`zoo.data.real_voice`): measured by every speech task's evaluate() and by
scripts/real_voice_eval.py, never trained or tuned on. Each function reads only the model and the
preprocessing entry of its card, so a shipped model can be re-measured."""

from __future__ import annotations

import numpy as np

from zoo.audio import FrontEnd
from zoo.backend import keras
from zoo.data import real_voice, speech
from zoo.speech import Detector, ctc_decode
from zoo.tasks.speech.common import placed_features
from zoo.tasks.speech.scoring import error_rates, score_detections

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


def real_voice_keyword(model: keras.Model, preprocessing: dict, detector: Detector) -> dict:
    """A keyword spotter on streams of recorded words (`zoo.data.real_voice.keyword_streams`), clean and in
    10 dB white noise, with ``detector`` (the one chosen on the validation voices)."""
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
        r = score_detections([detector.detect(p) for p in probs], events, x.shape[1], front.frame_seconds)
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
    out["threshold"] = detector.threshold
    out["detector"] = detector.to_dict()
    return out
