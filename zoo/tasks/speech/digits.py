"""Connected digits: strings of 1-6 digits said in one breath, transcribed by bidirectional CTC models."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.neighbors import NearestCentroid

from zoo.audio import FrontEnd, mean_mfcc
from zoo.backend import keras
from zoo.data import speech
from zoo.speech import ctc_decode
from zoo.tasks.base import Prepared, Task, feature_stats
from zoo.tasks.speech.common import (
    _SPLIT_HOW,
    SPEECH_FRONT,
    _audio_frame_step,
    _augmentation_card,
    _normalization,
    _placement,
    _speech_frames,
    _split_card,
    _synth_dataset_card,
    _with_augmented_copies,
)
from zoo.tasks.speech.real_voice_eval import DIGITS_LEAD, real_voice_digits
from zoo.tasks.speech.scoring import error_rates


@dataclass
class ConnectedDigitsTask(Task):
    """Transcribe 1-6 digits spoken in one breath; bidirectional models trained with CTC (the shipped recipe: three
    seeds voting, `zoo.ensemble`)."""

    front: FrontEnd = field(default_factory=lambda: SPEECH_FRONT)
    beam_width: int = 16
    # One randomised copy per training utterance, as the word classifier has (validation voices,
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


CONNECTED_DIGITS = ConnectedDigitsTask()
