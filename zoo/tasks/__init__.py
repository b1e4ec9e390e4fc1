"""Tasks: what differs between models — data, split, targets, metrics and baselines.

Every task turns a dataset into ``Prepared`` arrays and scores a model on its test split; the builder and the
training loop are shared by all of them.
"""

from __future__ import annotations

from zoo.tasks.base import Prepared, Task
from zoo.tasks.classification import ACTIVITY, PIG_CVP
from zoo.tasks.forecast import ABP_ANOMALY, CO2_FORECAST, ECG_ANOMALY
from zoo.tasks.music import CHORALES
from zoo.tasks.patients import PBC_VISITS
from zoo.tasks.speech import CONNECTED_DIGITS, JAPANESE_VOWELS, KEYWORD_SPOTTING, SPOKEN_WORDS
from zoo.tasks.text import KJV_CHARS, TWEET_SENTIMENT, TWEET_SENTIMENT_WORDPIECE
from zoo.tasks.translation import EN_FR

TASKS: dict[str, Task] = {
    "activity": ACTIVITY,
    "pigcvp": PIG_CVP,
    "ecg-anomaly": ECG_ANOMALY,
    "abp-anomaly": ABP_ANOMALY,
    "co2-forecast": CO2_FORECAST,
    "japanese-vowels": JAPANESE_VOWELS,
    "spoken-words": SPOKEN_WORDS,
    "keyword-spotting": KEYWORD_SPOTTING,
    "connected-digits": CONNECTED_DIGITS,
    "chorales": CHORALES,
    "kjv-chars": KJV_CHARS,
    "tweet-sentiment": TWEET_SENTIMENT,
    "tweet-sentiment-wordpiece": TWEET_SENTIMENT_WORDPIECE,
    "translate-en-fr": EN_FR,
    "pbc-visits": PBC_VISITS,
}

__all__ = ["TASKS", "Prepared", "Task"]
