"""Shipped speech models: cards hold the issue's figures, and re-measuring reproduces them."""

import pytest

import zoo

SPEECH = {
    "japanese-vowels-bigru": ("accuracy", "balanced_accuracy"),
    "spoken-words-bigru": ("accuracy", "balanced_accuracy"),
    "keyword-seven-gru": ("detection_rate", "false_alarms_per_hour", "frame_accuracy"),
    "digits-ctc-bigru": ("sequence_error_rate", "digit_error_rate"),
}
SHIPPED = [n for n in SPEECH if n in zoo.list_models()]


def test_words_card_has_a_confusion_matrix_and_the_baseline() -> None:
    if "spoken-words-bigru" not in SHIPPED:
        pytest.skip("not shipped")
    card = zoo.card("spoken-words-bigru")
    assert card.files["test_plot"] == "test_plot.png"
    assert len(card.test_metrics["confusion_matrix"]) == 20
    assert "nearest_centroid_mean_mfcc" in card.baselines
    assert set(card.dataset.details["test_voice_variants"]).isdisjoint(
        card.dataset.details["validation_voice_variants"]
    )


def test_japanese_vowels_card_carries_the_published_figure() -> None:
    if "japanese-vowels-bigru" not in SHIPPED:
        pytest.skip("not shipped")
    assert 0.992 in zoo.card("japanese-vowels-bigru").test_metrics["published_accuracy"].values()


@pytest.mark.slow  # renders the test voices with espeak-ng on a cold cache (about a minute each)
@pytest.mark.parametrize("name", [n for n in SHIPPED if n in ("keyword-seven-gru", "digits-ctc-bigru")])
def test_streaming_and_ctc_metrics_re_measure_to_the_card(name: str) -> None:
    fresh, card = zoo.evaluate(name), zoo.card(name).test_metrics
    for key in SPEECH[name]:
        assert fresh[key] == pytest.approx(card[key], abs=2e-3 if key != "false_alarms_per_hour" else 0.5), (
            key
        )
    if name == "digits-ctc-bigru":
        assert "pause_segmentation_nearest_centroid" in zoo.card(name).baselines
