"""Text tasks: a character language model (`language_model`: the King James Bible) and tweet sentiment
classification over words (`sentiment`) or over pretrained word pieces (`wordpiece`)."""

from zoo.tasks.text.language_model import KJV_CHARS, CharLMTask, KneserNey
from zoo.tasks.text.sentiment import TWEET_SENTIMENT, TextClassificationTask
from zoo.tasks.text.wordpiece import TWEET_SENTIMENT_WORDPIECE, LengthBatches, WordPieceClassificationTask

__all__ = [
    "KJV_CHARS",
    "TWEET_SENTIMENT",
    "TWEET_SENTIMENT_WORDPIECE",
    "CharLMTask",
    "KneserNey",
    "LengthBatches",
    "TextClassificationTask",
    "WordPieceClassificationTask",
]
