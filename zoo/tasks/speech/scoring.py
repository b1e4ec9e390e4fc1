"""Scoring detections and transcriptions: keyword occurrences found and false alarms, the detector grid and
the rule that picks its operating point, and sequence and digit error rates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo.speech import Detector, edit_distance

# A frame is a keyword target from 3 frames before the word ends to 12 after (60 ms before, 240 ms after): a
# causal model can only be sure once it has heard the whole word.
KWS_TARGET = (-3, 12)
# A detection within this many frames after the keyword ends still counts as finding it (0.5 s).
KWS_TOLERANCE = 25
# Operating point, chosen on the validation streams and the validation voices' long keyword-free audio: the
# (smoothing, threshold, refractory period) with the fewest false alarms per hour among those that find at least
# this share of the keywords (no such point: the most sensitive one within KWS_TARGET_FA_PER_HOUR).
KWS_MIN_DETECTION = 0.90
KWS_TARGET_FA_PER_HOUR = 2.0
KWS_SMOOTHING = (1, 2, 3, 5, 8, 12, 16, 24)  # frames averaged (`zoo.speech.Detector`), the candidates
KWS_REFRACTORIES = (25, 50, 100)  # frames the detector stays quiet after a detection (0.5, 1, 2 s)
THRESHOLDS = tuple(np.round(np.arange(0.05, 0.995, 0.01), 2).tolist())


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


def scored(
    detector: Detector,
    probs: np.ndarray,
    events: np.ndarray,
    negatives: np.ndarray,
    frame_seconds: float,
    smoothed: bool = False,
) -> dict:
    """`score_detections` of ``detector`` on keyword streams ``probs`` ``[N, T]`` (keyword probability per
    frame, ``events`` as `score_detections` reads them), with the false alarms on keyword-free audio
    ``negatives`` ``[M, T']`` counted in: ``false_alarms_per_hour`` is over both; ``keyword_streams`` and
    ``keyword_free_audio`` give each part's false alarms and hours. ``smoothed``: both are scores already."""
    kw = probs if smoothed else detector.scores(probs)
    neg = negatives if smoothed else detector.scores(negatives)
    r = score_detections([detector.fire(p) for p in kw], events, kw.shape[1], frame_seconds)
    kw_hours = kw.size * frame_seconds / 3600
    neg_hours = neg.size * frame_seconds / 3600
    neg_fa = sum(len(detector.fire(p)) for p in neg)
    hours = kw_hours + neg_hours
    return {
        **r,
        "false_alarms": r["false_alarms"] + neg_fa,
        "false_alarms_per_hour": (r["false_alarms"] + neg_fa) / hours if hours else 0.0,
        "audio_hours": round(hours, 4),
        "keyword_streams": {"false_alarms": r["false_alarms"], "hours": round(kw_hours, 4)},
        "keyword_free_audio": {"false_alarms": neg_fa, "hours": round(neg_hours, 4)},
    }


def operating_points(
    probs: np.ndarray,
    events: np.ndarray,
    negatives: np.ndarray,
    frame_seconds: float,
    smoothing: Sequence[int] = KWS_SMOOTHING,
    thresholds: Sequence[float] = THRESHOLDS,
    refractory: Sequence[int] = KWS_REFRACTORIES,
) -> dict[Detector, dict]:
    """`scored` at every detector of the grid (smoothing x threshold x refractory), keyed by the detector."""
    out = {}
    for k in smoothing:
        kw, neg = Detector(1.0, k).scores(probs), Detector(1.0, k).scores(negatives)
        for th in thresholds:
            for r in refractory:
                detector = Detector(th, k, r)
                out[detector] = scored(detector, kw, events, neg, frame_seconds, smoothed=True)
    return out


def choose_operating_point(points: dict[Detector, dict]) -> tuple[Detector, str]:
    """The detector `KeywordSpottingTask` ships, from validation ``points`` (`operating_points`), and its rule in
    words: fewest false alarms per hour at detection >= ``KWS_MIN_DETECTION`` (ties: higher detection, less
    smoothing, lower threshold, shorter refractory period); where no point detects that much, the most
    sensitive point within ``KWS_TARGET_FA_PER_HOUR`` (or, failing that, the one with the fewest false alarms)."""

    def order(d: Detector) -> tuple:
        return d.smoothing, d.threshold, d.refractory

    rows = [(r["false_alarms_per_hour"], r["detection_rate"], d) for d, r in points.items()]
    ok = [r for r in rows if r[1] >= KWS_MIN_DETECTION]
    if ok:
        chosen = min(ok, key=lambda r: (r[0], -r[1], order(r[2])))[2]
        rule = f"fewest false alarms per hour among the points detecting >= {KWS_MIN_DETECTION:g}"
    else:
        within = [r for r in rows if r[0] <= KWS_TARGET_FA_PER_HOUR] or [min(rows, key=lambda r: r[0])]
        chosen = min(within, key=lambda r: (-r[1], r[0], order(r[2])))[2]
        rule = (
            f"no point detects >= {KWS_MIN_DETECTION:g} on validation: the most sensitive point with <= "
            f"{KWS_TARGET_FA_PER_HOUR:g} false alarms per hour"
        )
    return chosen, rule


def error_rates(hyps: list[list[int]], refs: list[list[int]]) -> dict:
    """Sequence error rate (any mistake) and digit error rate (edits / reference digits)."""
    edits = sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
    return {
        "sequence_error_rate": float(np.mean([h != r for h, r in zip(hyps, refs, strict=True)])),
        "digit_error_rate": edits / max(1, sum(len(r) for r in refs)),
    }
