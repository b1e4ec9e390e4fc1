"""Character language model: tokenizer, seeded step-by-step generation, the n-gram baseline, the shipped model."""

import json
import math
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo import cards
from zoo.builder import Architecture, build_model
from zoo.registry import REGISTRY
from zoo.step import StepModel
from zoo.tasks import TASKS
from zoo.tasks.text import CharLMTask, KneserNey
from zoo.text import CharVocab, generate_text, load_tokenizer, next_char_distribution, tokenizer_from_dict

LM = "kjv-char-lstm"
shipped = pytest.mark.skipif(LM not in zoo.list_models(), reason=f"{LM} is not trained yet")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny() -> tuple[keras.Model, CharVocab, StepModel]:
    vocab = CharVocab.fit("And God said, In the beginning God created the heaven and the earth.\n")
    v = len(vocab)
    keras.utils.set_random_seed(3)
    model = build_model(
        Architecture(cell="lstm", units=12, layers=2), "step_classification", v, v, np.zeros(v), np.ones(v)
    )
    return model, vocab, StepModel.from_keras(model)


def test_char_vocab_round_trip() -> None:
    vocab = CharVocab.fit("And God said, Let there be light.\n")
    text = "Let God be light.\n"
    assert vocab.decode(vocab.encode(text)) == text
    again = tokenizer_from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.chars == vocab.chars and (again.encode(text) == vocab.encode(text)).all()
    with pytest.raises(ValueError, match="outside the model's alphabet: '€'"):
        vocab.encode("light €")


def test_same_seed_same_text_and_other_seed_differs(tiny) -> None:
    model, vocab, stepper = tiny
    a = generate_text(stepper, vocab, "And ", 200, temperature=1.0, top_k=5, seed=7)
    b = generate_text(stepper, vocab, "And ", 200, temperature=1.0, top_k=5, seed=7)
    c = generate_text(stepper, vocab, "And ", 200, temperature=1.0, top_k=5, seed=8)
    assert a == b and a != c and len(a) == 200 and set(a) <= set(vocab.chars)


def test_temperature_to_zero_is_greedy_and_greedy_follows_keras(tiny) -> None:
    model, vocab, stepper = tiny
    greedy = generate_text(stepper, vocab, "the ", 60, temperature=0.0)
    assert generate_text(stepper, vocab, "the ", 60, temperature=1e-6, seed=1) == greedy
    assert generate_text(stepper, vocab, "the ", 60, temperature=1.0, top_k=1, seed=2) == greedy
    # Greedy: each generated character is the argmax of Keras run on everything before it.
    ids = vocab.encode("the " + greedy)
    probs = np.asarray(model.predict(vocab.one_hot(ids[None, :-1]), verbose=0))[0]
    assert (probs[3:].argmax(-1) == ids[4:]).all()


def test_step_by_step_generation_equals_keras_on_the_whole_sequence(tiny) -> None:
    model, vocab, stepper = tiny
    text, step_probs = generate_text(
        stepper, vocab, "In the ", 120, temperature=1.0, seed=0, return_probs=True
    )
    ids = vocab.encode("In the " + text)
    keras_probs = np.asarray(model.predict(vocab.one_hot(ids[None, :-1]), verbose=0))[0]
    assert step_probs.shape == keras_probs.shape
    assert np.abs(step_probs - keras_probs).max() <= 1e-5


def test_next_char_distribution_top_k_and_temperature() -> None:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    assert np.allclose(next_char_distribution(p, 1.0, 0), p)
    top2 = next_char_distribution(p, 1.0, 2)
    assert np.allclose(top2, [0.625, 0.375, 0, 0])
    assert next_char_distribution(p, 0.5, 0)[0] > 0.5 > next_char_distribution(p, 2.0, 0)[0]


@pytest.mark.parametrize(
    ("prompt", "length", "message"),
    [
        ("", 10, "prompt is empty"),
        ("the €", 10, "outside the model's alphabet"),
        ("the", 10**7, "length must be"),
    ],
)
def test_bad_generation_requests_raise_one_clear_error(tiny, prompt, length, message) -> None:
    model, vocab, stepper = tiny
    with pytest.raises(ValueError, match=message):
        generate_text(stepper, vocab, prompt, length)


def test_kneser_ney_is_a_distribution() -> None:
    text = "in the beginning god created the heaven and the earth. and the earth was without form"
    alphabet = sorted(set(text))
    kn = KneserNey(text, 5, len(alphabet))
    for context in ("", "th", "the e", "zzzz"):
        assert math.isclose(sum(kn.prob(context, c) for c in alphabet), 1.0, rel_tol=1e-9)
    assert kn.prob("the ", "e") > kn.prob("the ", "q")


def test_tiny_char_lm_trains_and_exports_its_vocabulary(tmp_path, monkeypatch) -> None:
    """The shared loop on a 60k-character slice: card with bpc and baselines, vocabulary asset with sha256."""
    from zoo.data.text import KJV, kjv_text

    task = CharLMTask(loader=lambda: kjv_text()[:60_000], dataset=KJV, block=2_000, window=50)
    monkeypatch.setitem(TASKS, "kjv-chars", task)
    card = zoo.train(LM, out=tmp_path, verbose=0, units=8, layers=1, epochs=2, learning_rate=0.02)
    folder = tmp_path / LM
    assert card.streaming.mode == "step" and card.streaming.max_abs_diff_vs_keras <= 1e-5
    assert card.assets["vocab.json"] == cards.sha256(folder / "vocab.json")
    assert cards.verify_assets(folder, card) == {"vocab.json": folder / "vocab.json"}
    vocab = load_tokenizer(folder / "vocab.json")
    assert len(vocab) == card.preprocessing.details["vocab_size"]
    m = card.test_metrics
    assert 0 < m["bits_per_character"] < math.log2(len(vocab))  # learned something beyond uniform
    assert math.isclose(m["perplexity"], 2 ** m["bits_per_character"], rel_tol=1e-3)
    (folder / "vocab.json").write_text((folder / "vocab.json").read_text().replace('"a"', '"@"'))
    with pytest.raises(cards.IntegrityError, match="vocab.json does not match its card"):
        cards.verify_assets(folder, card)


@shipped
def test_shipped_char_lm_card_beats_the_ngram() -> None:
    # Its test figures are re-measured by tests/test_shipped_models.py::test_re_evaluation_matches_card.
    card = zoo.card(LM)
    m, b = card.test_metrics, card.baselines
    assert (
        m["bits_per_character"]
        < b["kneser_ney_5gram"]["bits_per_character"]
        < b["unigram"]["bits_per_character"]
    )
    assert card.versus_baseline == cards.typed(cards.Versus, TASKS["kjv-chars"].compare(m, b))
    assert card.recipe.device and card.recipe.wall_time_s > 0


@shipped
def test_shipped_generation_is_seeded_and_fast() -> None:
    p = zoo.predictor(LM)
    assert isinstance(p.tokenizer, CharVocab) and not hasattr(zoo.load(LM), "tokenizer")
    generate_text(p.stepper, p.tokenizer, "And ", 10, seed=0)  # build the step engine once
    start = time.perf_counter()
    text = generate_text(p.stepper, p.tokenizer, "And ", 1000, temperature=0.8, seed=1)
    assert time.perf_counter() - start < 1.0
    assert text == zoo.generate(LM, "And ", 1000, temperature=0.8, seed=1)
    assert len(text.split()) > 100  # words separated by spaces, not noise


@shipped
@pytest.mark.parametrize(
    "args",
    [
        ["--prompt", ""],
        ["--prompt", "The €uro"],
        ["--prompt", "The", "--length", "0"],
    ],
)
def test_cli_generate_refuses_bad_input_in_one_line(args, capsys) -> None:
    # In process: main() is what turns an error into one line (subprocess runs elsewhere check no stray output).
    from rnnzoo.cli import main

    assert main(["generate", LM, *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnzoo: error:"), lines


def test_registry_holds_the_text_models() -> None:
    assert REGISTRY[LM].task == "kjv-chars" and REGISTRY[LM].head == "step_classification"
