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
from zoo.text import WordPieceTokenizer, WordTokenizer, bert_words, tokenizer_from_dict

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


def test_wordpiece_tokenizer_spells_words_greedily_and_round_trips() -> None:
    pieces = ["[PAD]", "[UNK]", "un", "##aff", "##able", "##a", "cafe", "!", "'", "s", "it", "link", "user", "the"]  # fmt: skip
    tok = WordPieceTokenizer(pieces, max_length=6)
    assert bert_words("Unaffable CAFÉ!! it's\ttHe") == ["unaffable", "cafe", "!", "!", "it", "'", "s", "the"]
    assert tok.split("unaffable café!") == ["un", "##aff", "##able", "cafe", "!"]  # longest match first
    assert tok.split("@bob http://t.co/x the") == ["user", "link", "the"]  # tweet markup rewritten first
    assert tok.encode("unzebra") == [tok.UNK]  # a word the pieces cannot spell is one unknown piece
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.tokens == tok.tokens
    assert again.encode_batch(["the cafe", "it"]).tolist() == [[13, 6], [10, 0]]
    with pytest.raises(ValueError, match="is empty"):
        tok.encode_batch([" "])
    with pytest.raises(ValueError, match="reads at most 6"):
        tok.encode_batch(["the " * 7])


def test_minilm_vocabulary_and_vectors_read_from_the_package() -> None:
    """The shipped table, and pieces equal to the tokenizers library's BERT pipeline (its ids recorded here; the
    pure-Python tokenizer matched it on all 37,237 tweets when it was written)."""
    from zoo.data.minilm import wordpiece_vectors, wordpiece_vocab

    vocab, table = wordpiece_vocab(), wordpiece_vectors()
    assert table.shape == (30522, 384) and table.dtype == np.float32 and len(vocab) == 30522
    assert (vocab[0], vocab[100], vocab.index("the")) == ("[PAD]", "[UNK]", 1996)
    assert 0.05 < float(table.std()) < 0.06 and np.isfinite(table).all()
    tok = WordPieceTokenizer(vocab, url=None, user=None)
    cases = {
        "Unaffable CAFÉ!!! it's #DeflateGate :)": [
            14477, 20961, 3468, 7668, 999, 999, 999, 2009, 1005, 1055, 1001, 13366, 13806, 5867, 1024, 1007,
        ],
        "naïve 東京 résumé\tdon't": [15743, 1879, 1755, 13746, 2123, 1005, 1056],
        "@united worst flight http://t.co/x": [1030, 2142, 5409, 3462, 8299, 1024, 1013, 1013, 1056, 1012, 2522, 1013, 1060],
    }  # fmt: skip
    for text, ids in cases.items():
        assert tok.encode(text) == ids, text


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


def test_length_batches_start_with_two_lengths_so_tensorflow_leaves_the_length_free() -> None:
    from zoo.tasks.text import LengthBatches

    ids = [[5] * 3] * 200 + [[5] * 20] * 5  # almost every batch 8 pieces long: the first two would share it
    for seed in range(5):
        batches = LengthBatches(ids, np.zeros(len(ids), "int32"), batch_size=16, seed=seed)
        assert batches[0][0].shape[1] != batches[1][0].shape[1]
        assert sorted(len(b) for b in batches.batches) == [5, 8] + [16] * 12  # a reorder, nothing lost
    assert len(LengthBatches([[5]] * 40, np.zeros(40), batch_size=16, seed=0)) == 3  # one length: left as is


@pytest.mark.slow  # a training run over the pretrained table (about a minute)
def test_tiny_wordpiece_model_starts_from_the_pretrained_vectors(tmp_path, monkeypatch) -> None:
    import dataclasses

    from zoo.data.minilm import wordpiece_vectors
    from zoo.data.text import tweets

    def few() -> tuple[list[str], list[str]]:
        texts, labels = tweets()
        return texts[::40], labels[::40]

    task = dataclasses.replace(TASKS["tweet-sentiment-wordpiece"], loader=few)
    monkeypatch.setitem(TASKS, "tweet-sentiment-wordpiece", task)
    card = zoo.train("sentiment-bilstm", out=tmp_path, verbose=0, units=4, epochs=1)
    folder = tmp_path / "sentiment-bilstm"
    model = keras.models.load_model(folder / "model.keras", safe_mode=True, compile=False)
    embed = model.get_layer("embed")
    assert not embed.trainable
    ids = np.array([[1996, 2204, 0]], "int32")  # "the", "good", padding
    expected = task.vector_scale * wordpiece_vectors()[ids[0, :2]]
    got = np.asarray(embed(ids))[0, :2]
    assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max()  # exact, or int8 per-row rounding
    assert set(card.baselines) >= {
        "char_ngram_logistic_regression",
        "mean_pooled_vectors_logistic_regression",
    }
    tok = tokenizer_from_dict(json.loads((folder / "vocab.json").read_text()))
    assert isinstance(tok, WordPieceTokenizer) and len(tok) == 30522 and card.split["test"] == 94


@pytest.mark.parametrize("name", NAMES)
def test_shipped_sentiment_card_beats_majority_and_states_its_comparisons(name) -> None:
    # Its test figures are re-measured by tests/test_shipped_models.py::test_re_evaluation_matches_card.
    if name not in zoo.list_models():
        pytest.skip(f"{name} is not trained yet")
    card = zoo.card(name)
    assert card.test_metrics["accuracy"] > card.baselines["majority_class"]["accuracy"] + 0.2
    # The BiLSTM reads pretrained word pieces (its own task); the GRU and SimpleRNN share a recipe.
    if name == "sentiment-bilstm":
        assert card.task == "tweet-sentiment-wordpiece" and card.cell_comparison is None
    else:
        assert {row["model"] for row in card.cell_comparison} == {"sentiment-bigru", "sentiment-bisimple"}
    assert card.versus_baseline == cards.typed(
        cards.Versus, TASKS[card.task].compare(card.test_metrics, card.baselines)
    )


@_shipped("sentiment-bilstm")
def test_shipped_bilstm_reports_every_baseline_on_its_split_and_its_pretrained_embedding() -> None:
    card = zoo.card("sentiment-bilstm")
    assert set(card.baselines) == {
        "majority_class",
        "tfidf_logistic_regression",
        "char_ngram_logistic_regression",
        "mean_pooled_vectors_logistic_regression",
    }
    assert card.split["test"] == 3724 and card.preprocessing.details["vocab_size"] == 30522
    best = max(b["accuracy"] for b in card.baselines.values())
    assert card.versus_baseline.details["beats_every_baseline"] == (card.test_metrics["accuracy"] > best)
    assert "all-MiniLM-L6-v2" in card.dataset.details["pretrained_vectors"]["name"]
    embed = zoo.load("sentiment-bilstm").get_layer("embed")
    assert not embed.trainable and (embed.input_dim, embed.output_dim) == (30522, 384)


@_shipped("sentiment-bilstm")
def test_shipped_classifier_reads_clear_sentences_and_keeps_its_vocabulary() -> None:
    p = zoo.predictor("sentiment-bilstm")
    assert (
        isinstance(p.tokenizer, WordPieceTokenizer)
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
    from rnnzoo.cli import main

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
