"""CTC decoding (greedy and beam), error rates, and keyword detection scoring: small hand-made cases."""

import keras
import numpy as np
import pytest

from zoo.builder import Architecture, build_model
from zoo.losses import LOSSES
from zoo.speech import Detector, ctc_decode, edit_distance, vote_transcripts
from zoo.tasks.speech import choose_operating_point, error_rates, score_detections, scored


def _log(p: list[list[float]]) -> np.ndarray:
    return np.log(np.asarray([p], dtype="float32"))


def test_greedy_merges_repeats_and_drops_blanks() -> None:
    # best label per frame: 1 1 0 2 2 0 2  ->  1 2 2 (a blank separates the repeated 2s)
    rows = []
    for best in (1, 1, 0, 2, 2, 0, 2):
        row = [0.1, 0.1, 0.1]
        row[best] = 0.8
        rows.append(row)
    assert ctc_decode(_log(rows)) == [[1, 2, 2]]


def test_beam_search_sums_paths_where_greedy_takes_the_best_frame() -> None:
    # Each frame prefers blank (0.55), so greedy says nothing; but "A" collects three paths
    # (A-, -A, AA: 0.2475 + 0.2475 + 0.2025 = 0.6975 > 0.3025 for "--"), so the beam says A.
    probs = _log([[0.55, 0.45], [0.55, 0.45]])
    assert ctc_decode(probs) == [[]]
    assert ctc_decode(probs, beam_width=8) == [[1]]


def test_decoding_a_batch_keeps_rows_apart() -> None:
    a = [[0.1, 0.9, 0.0001], [0.9, 0.1, 0.0001]]
    b = [[0.1, 0.0001, 0.9], [0.1, 0.0001, 0.9]]
    probs = np.log(np.asarray([a, b], dtype="float32") + 1e-6)
    assert ctc_decode(probs) == [[1], [2]]
    assert ctc_decode(probs, beam_width=4) == [[1], [2]]


def test_edit_distance_and_error_rates() -> None:
    assert edit_distance([3, 1, 4], [3, 1, 4]) == 0
    assert edit_distance([3, 4], [3, 1, 4]) == 1
    assert edit_distance([], [1, 2]) == 2
    assert edit_distance([1, 2, 3], [3, 2, 1]) == 2
    rates = error_rates([[3, 1, 4], [1]], [[3, 1, 4], [1, 5]])
    assert rates == {"sequence_error_rate": 0.5, "digit_error_rate": pytest.approx(1 / 5)}


def test_vote_takes_the_transcript_the_models_agree_on() -> None:
    a = [[3, 1, 4], [9, 2], [5], []]
    b = [[3, 1, 4], [1, 9, 8], [6], [7]]
    c = [[3, 7, 4], [9, 2], [7], [7]]
    # two agree -> theirs; all differ -> the closest to the others (ties: the earlier model); 2 of 3 say "7"
    assert vote_transcripts([a, b, c]) == [[3, 1, 4], [9, 2], [5], [7]]
    assert vote_transcripts([a]) == a  # one model: its own transcripts
    # the medoid, not the first: [1, 2] is one edit from each of the others, which are two apart
    assert vote_transcripts([[[1, 2, 3]], [[1, 2]], [[1]]]) == [[1, 2]]
    with pytest.raises(ValueError):
        vote_transcripts([a, b[:2]])  # every model must transcribe every utterance


def test_ctc_head_trains_a_tiny_model() -> None:
    keras.utils.set_random_seed(0)
    model = build_model(Architecture(units=8, bidirectional=True), "ctc", 5, 4, np.zeros(5), np.ones(5))
    loss, metric = LOSSES["ctc"]
    model.compile(optimizer="adam", loss=loss, metrics=[metric] if metric else [])
    x = np.random.default_rng(0).normal(size=(6, 12, 5)).astype("float32")
    y = np.array([[1, 2, 0], [3, 0, 0]] * 3, dtype="int32")
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    out = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-5)  # log-probabilities


def test_detect_fires_once_per_refractory_period() -> None:
    scores = np.zeros(300)
    scores[[10, 11, 12, 40, 100, 250]] = 0.9
    assert Detector(0.5, refractory=50).detect(scores) == [10, 100, 250]


def test_smoothing_averages_the_last_frames_and_streams_bit_for_bit() -> None:
    probs = np.zeros(200)
    probs[[20, 21, 22]] = 0.9  # three frames: a smoothed score of 0.9 * 3 / 5 = 0.54 at frame 22
    probs[100] = 0.99  # one frame: 0.198 after smoothing over five
    detector = Detector(0.5, smoothing=5, refractory=50)
    assert detector.scores(probs)[22] == pytest.approx(0.54)
    assert detector.detect(probs) == [22] and Detector(0.5).detect(probs) == [20, 100]
    rng = np.random.default_rng(0)
    noisy = rng.uniform(size=(3, 400)) ** 4
    for smoothing in (1, 2, 7):
        detector = Detector(0.3, smoothing, refractory=20)
        scores = detector.scores(noisy)
        for row, row_scores in zip(noisy, scores, strict=True):
            stream = detector.stream()
            fired = [(t, stream.push(p)) for t, p in enumerate(row)]
            assert [t for t, s in fired if s is not None] == detector.detect(row)
            assert all(s == row_scores[t] for t, s in fired if s is not None)  # the same float, not close


def test_operating_point_is_the_fewest_false_alarms_at_the_detection_floor() -> None:
    points = {
        Detector(0.3, 1): {"false_alarms_per_hour": 9.0, "detection_rate": 0.95},
        Detector(0.6, 1): {"false_alarms_per_hour": 3.0, "detection_rate": 0.91},
        Detector(0.4, 5, 100): {"false_alarms_per_hour": 3.0, "detection_rate": 0.93},
        Detector(0.8, 5): {"false_alarms_per_hour": 0.5, "detection_rate": 0.85},
    }
    assert choose_operating_point(points)[0] == Detector(0.4, 5, 100)
    # nothing detects 0.90: the most sensitive point within 2 false alarms per hour
    weak = {key: {**r, "detection_rate": r["detection_rate"] - 0.2} for key, r in points.items()}
    detector, rule = choose_operating_point(weak)
    assert detector == Detector(0.8, 5) and "no point detects" in rule


def test_false_alarms_on_keyword_free_audio_count_in_the_rate() -> None:
    probs = np.zeros((1, 100))
    probs[0, 30] = 0.9  # finds the keyword at frames 20-40
    negatives = np.zeros((2, 500))
    negatives[0, [100, 400]] = 0.9  # two false alarms
    r = scored(Detector(0.5), probs, np.array([[0, 20, 40]]), negatives, frame_seconds=0.02)
    assert r["detection_rate"] == 1.0 and r["false_alarms"] == 2
    assert r["keyword_free_audio"] == {"false_alarms": 2, "hours": round(1000 * 0.02 / 3600, 4)}
    assert r["false_alarms_per_hour"] == pytest.approx(2 / (1100 * 0.02 / 3600))


def test_detections_are_scored_against_keyword_windows() -> None:
    events = np.array([[0, 20, 40], [0, 120, 140], [1, 10, 30]])
    # stream 0: one hit inside [20, 65), one late (miss + false alarm), stream 1: one hit, one false alarm
    result = score_detections([[45, 170], [25, 150]], events, n_frames=200, frame_seconds=0.02)
    assert result["detections"] == 2 and result["false_alarms"] == 2
    assert result["detection_rate"] == pytest.approx(2 / 3)
    assert result["false_alarms_per_hour"] == pytest.approx(2 / (400 * 0.02 / 3600))
