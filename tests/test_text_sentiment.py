"""Sentiment: word tokenizer, masking of padded texts, the shared loop with a vocabulary asset, shipped models."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo import cards
from zoo.builder import Architecture, build_model
from zoo.tasks import TASKS
from zoo.tasks.text import TextClassificationTask
from zoo.text import WordTokenizer, tokenizer_from_dict

NAMES = ["sentiment-bilstm", "sentiment-bigru", "sentiment-bisimple"]
ROOT = Path(__file__).resolve().parent.parent


def _shipped(name: str):  # noqa: ANN202
    return pytest.mark.skipif(name not in zoo.list_models(), reason=f"{name} is not trained yet")


def test_word_tokenizer_round_trip_unknown_words_and_padding() -> None:
    tok = WordTokenizer.fit(["what a wonderful film", "what a bad film", "a film"], min_count=2, max_length=6)
    assert WordTokenizer.split("RT @bob: LOVED it!!! :) #fun http://t.co/x &amp; don't") == [
        "rt", "<user>", ":", "loved", "it", "!!!", ":)", "#", "fun", "<url>", "&", "don't",
    ]  # fmt: skip
    ids = tok.encode_batch(["what a film", "a zebra"])
    assert ids.shape == (2, 3) and ids[1, 1] == WordTokenizer.UNK and ids[1, 2] == WordTokenizer.PAD
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.tokens == tok.tokens and (again.encode_batch(["what a film", "a zebra"]) == ids).all()
    with pytest.raises(ValueError, match="is empty"):
        tok.encode_batch(["   "])
    with pytest.raises(ValueError, match="reads at most 6"):
        tok.encode_batch(["a " * 7])


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_padding_is_masked_in_both_directions(cell) -> None:
    """A right-padded text gets the same answer as the text alone: variable lengths are handled."""
    keras.utils.set_random_seed(0)
    arch = Architecture(cell=cell, units=6, bidirectional=True, embedding=5)
    model = build_model(arch, "sequence_classification", 30, 3, np.zeros(0), np.ones(0))
    short = np.array([[4, 9, 2]], "int32")
    padded = np.array([[4, 9, 2, 0, 0, 0, 0]], "int32")
    a, b = (np.asarray(model.predict(x, verbose=0)) for x in (short, padded))
    assert np.abs(a - b).max() <= 1e-6


@pytest.mark.slow  # a training run (16 s); the shipped sentiment models re-measure in the quick suite
def test_tiny_sentiment_model_trains_and_exports_its_vocabulary(tmp_path, monkeypatch) -> None:
    from zoo.data.text import TWEETS, tweets

    def few() -> tuple[list[str], list[str]]:
        texts, labels = tweets()
        return texts[::40], labels[::40]  # the file is grouped by label: every 40th tweet keeps all three

    task = TextClassificationTask(loader=few, dataset=TWEETS, class_names=("negative", "neutral", "positive"))
    monkeypatch.setitem(TASKS, "tweet-sentiment", task)
    card = zoo.train("sentiment-bigru", out=tmp_path, verbose=0, units=4, epochs=1)
    folder = tmp_path / "sentiment-bigru"
    assert card.streaming.mode == "window" and card.architecture.embedding == 64
    assert card.assets == {"vocab.json": cards.sha256(folder / "vocab.json")}
    tok = tokenizer_from_dict(json.loads((folder / "vocab.json").read_text()))
    assert len(tok) == card.preprocessing.details["vocab_size"]
    assert set(card.baselines) == {"majority_class", "tfidf_logistic_regression"}
    assert 0 <= card.test_metrics["macro_f1"] <= 1 and card.split["test"] == 94


@pytest.mark.parametrize("name", NAMES)
def test_shipped_sentiment_model_matches_its_card(name) -> None:
    if name not in zoo.list_models():
        pytest.skip(f"{name} is not trained yet")
    card = zoo.card(name)
    fresh = zoo.evaluate(name)
    for key in ("accuracy", "macro_f1"):
        assert abs(fresh[key] - card.test_metrics[key]) <= 1e-3, key
    assert card.test_metrics["accuracy"] > card.baselines["majority_class"]["accuracy"] + 0.2
    assert {row["model"] for row in card.cell_comparison} == set(NAMES)
    assert card.versus_baseline == cards.typed(
        cards.Versus, TASKS["tweet-sentiment"].compare(card.test_metrics, card.baselines)
    )


@_shipped("sentiment-bilstm")
def test_shipped_classifier_reads_clear_sentences_and_keeps_its_vocabulary() -> None:
    p = zoo.predictor("sentiment-bilstm")
    assert (
        isinstance(p.tokenizer, WordTokenizer)
        and len(p.tokenizer) == zoo.card("sentiment-bilstm").preprocessing.details["vocab_size"]
    )
    out = zoo.classify_text(
        "sentiment-bilstm",
        [
            "I love this, what a wonderful day",
            "worst flight ever, they lost my bag and nobody helps. awful service",
        ],
    )
    assert [r["label"] for r in out] == ["positive", "negative"]


@_shipped("sentiment-bilstm")
def test_cli_classify_refuses_an_empty_text_in_one_line(capsys) -> None:
    from zoo.cli import main

    assert main(["classify", "sentiment-bilstm", "good", "  "]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "rnnzoo: error: text 2 ('  ') is empty: give at least one word"
    ]


def test_lexicon_words_become_labelled_training_examples_and_vocabulary() -> None:
    from zoo.data.text import vader_lexicon

    lexicon = vader_lexicon()  # the human-rated file shipped in the vaderSentiment wheel
    assert lexicon["wonderful"] > 2 and lexicon["awful"] < -1.5 and len(lexicon) > 7000
    ratings = {"wonderful": 2.7, "meh": -0.5, ":)": 2.0, "so so": 1.8, "awful": -2.0, "zany": 1.6}
    task = TextClassificationTask(
        loader=lambda: ([f"text {i}" for i in range(60)], ["negative", "neutral", "positive"] * 20),
        dataset={},
        class_names=("negative", "neutral", "positive"),
        lexicon=lambda: ratings,
        lexicon_min_abs=1.5,
    )
    # Mild ("meh") and multi-token ("so so") entries are left out; emoticons are single tokens and stay.
    assert task.lexicon_words() == [(":)", 2), ("awful", 0), ("wonderful", 2), ("zany", 2)]
    tok = task._split()["tokenizer"]
    assert WordTokenizer.UNK not in tok.encode("zany awful :)")  # in the vocabulary though no text uses them
    prepared = task.prepare(0, "sequence_classification")
    assert prepared.split["train_lexicon_words"] == 4 and len(prepared.x_train) == prepared.split["train"] + 4
    assert len(prepared.x_val) == prepared.split["validation"]  # validation data is never augmented


@_shipped("sentiment-bilstm")
def test_shipped_bilstm_reads_the_clear_examples_right() -> None:
    """The README's examples, out of the tweets' domain: a film review and a plainly negative sentence."""
    out = zoo.classify_text(
        "sentiment-bilstm",
        [
            "what a wonderful, moving film",
            "this was a terrible, boring waste of time",
            "a superb, delightful performance",
        ],
    )
    assert [r["label"] for r in out] == ["positive", "negative", "positive"]
