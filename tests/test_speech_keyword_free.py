"""The keyword spotter's keyword-free audio: King James verses without the keyword, and training sequences that
join keyword streams and keyword-free streams at one length."""

import re
import shutil

import numpy as np
import pytest

from zoo.data import speech
from zoo.tasks.speech import KEYWORD_SPOTTING

needs_bible = pytest.mark.skipif(shutil.which("bible") is None, reason="bible-kjv (scripts/setup.sh)")


@needs_bible
def test_keyword_free_verses_never_say_the_keyword() -> None:
    verses = speech.keyword_free_verses("seven")
    assert len(verses) > 10_000
    assert not any("seven" in v.lower() for v in verses)
    assert all(8 <= len(v.split()) <= 40 and re.fullmatch(r"[A-Za-z' ]+", v) for v in verses)
    assert any("heaven" in v.lower().split() for v in verses)  # sounds alike, stays


@pytest.mark.slow  # renders the keyword streams and 3 h of keyword-free audio on a cold cache (about 20 min)
def test_training_joins_keyword_streams_and_keyword_free_audio_at_one_length() -> None:
    task = KEYWORD_SPOTTING
    x_kw, y_kw, _ = task._part(0)
    x, y = task.training_streams(seed=0)
    t = x_kw.shape[1] * task.joined
    joined = len(x_kw) // task.joined
    assert x.shape == (joined + task.negative_streams, t, x_kw.shape[2]) and y.shape == x.shape[:2]
    assert not y[joined:].any()  # keyword-free: no target anywhere
    assert (
        y[:joined].sum()
        == y_kw[np.random.default_rng([0, 5]).permutation(len(x_kw))[: joined * task.joined]].sum()
    )
    again, _ = task.training_streams(seed=0)
    np.testing.assert_array_equal(x, again)
