"""Speech tasks: speaker ID from cepstra, spoken-word recognition, keyword spotting and connected digits (CTC).

All audio tasks read features from one `zoo.audio.FrontEnd` (log-mel, 20 ms frames) whose parameters go on the
card, so the same front end turns a user's WAV file into the model's input. Voices in the test split are
voice variants never heard in training (`zoo.data.speech.split_variants`).

Modules: `common` (the front end, cards, placement and training copies the audio tasks share), `vowels`
(JapaneseVowels), `words` (spoken words), `keywords` (keyword spotting), `digits` (connected digits, CTC),
`scoring` (detections, operating points and error rates) and `real_voice_eval` (the recorded-speech figures).
"""

from zoo.tasks.speech.common import (
    SPEECH_FRONT,
    SPLIT_NAMES,
    placed_features,
)
from zoo.tasks.speech.digits import (
    CONNECTED_DIGITS,
    ConnectedDigitsTask,
)
from zoo.tasks.speech.keywords import (
    KEYWORD_SPOTTING,
    KWS_NEGATIVE_STREAMS,
    KeywordSpottingTask,
)
from zoo.tasks.speech.real_voice_eval import (
    DIGITS_LEAD,
    WORDS_LEAD,
    real_voice_digits,
    real_voice_keyword,
    real_voice_words,
)
from zoo.tasks.speech.scoring import (
    KWS_MIN_DETECTION,
    KWS_REFRACTORIES,
    KWS_SMOOTHING,
    KWS_TARGET,
    KWS_TARGET_FA_PER_HOUR,
    KWS_TOLERANCE,
    THRESHOLDS,
    choose_operating_point,
    error_rates,
    operating_points,
    score_detections,
    scored,
)
from zoo.tasks.speech.vowels import (
    JAPANESE_VOWELS,
)
from zoo.tasks.speech.words import (
    SPOKEN_WORDS,
    SpokenWordTask,
    plot_confusion,
)

__all__ = [
    "CONNECTED_DIGITS",
    "ConnectedDigitsTask",
    "DIGITS_LEAD",
    "JAPANESE_VOWELS",
    "KEYWORD_SPOTTING",
    "KWS_MIN_DETECTION",
    "KWS_NEGATIVE_STREAMS",
    "KWS_REFRACTORIES",
    "KWS_SMOOTHING",
    "KWS_TARGET",
    "KWS_TARGET_FA_PER_HOUR",
    "KWS_TOLERANCE",
    "KeywordSpottingTask",
    "SPEECH_FRONT",
    "SPLIT_NAMES",
    "SPOKEN_WORDS",
    "SpokenWordTask",
    "THRESHOLDS",
    "WORDS_LEAD",
    "choose_operating_point",
    "error_rates",
    "operating_points",
    "placed_features",
    "plot_confusion",
    "real_voice_digits",
    "real_voice_keyword",
    "real_voice_words",
    "score_detections",
    "scored",
]
