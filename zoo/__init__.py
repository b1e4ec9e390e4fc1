"""rnn-zoo: pretrained Keras 3 recurrent networks, loaded offline in one call.

>>> import zoo
>>> zoo.list_models()
>>> model = zoo.load("activity-gru-causal")
>>> zoo.card("activity-gru-causal")["test_metrics"]["accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

# Keras (and TensorFlow behind it, ~10 s and ~600 MB) is imported only by what needs it — loading, training,
# running a model — so `rnnzoo --help`, `list` and `info`, and the streaming service, start without it.
# `compose` is imported here, not lazily inside a wrapper: the submodule `zoo.compose` would otherwise replace a
# function of the same name on its first import. It is light (numpy; music21, mido, matplotlib load when used).
from zoo import cards
from zoo.compose import compose
from zoo.registry import REGISTRY, UnknownModelError, get_spec
from zoo.translate import translate  # (same reason as compose: a function named like its module)

if TYPE_CHECKING:
    import keras
    import numpy as np

__all__ = [
    "list_models",
    "card",
    "load",
    "train",
    "evaluate",
    "test_data",
    "compose",
    "transcribe",
    "listen",
    "generate",
    "classify_text",
    "translate",
    "UnknownModelError",
]


def list_models() -> list[str]:
    """Names of the pretrained models shipped in ``saved_models/``, in registry order."""
    present = set(cards.shipped())
    return [name for name in REGISTRY if name in present]


def _folder(name: str) -> Path:
    get_spec(name)  # unknown names fail here, with suggestions
    return cards.model_dir(name)


def card(name: str) -> dict:
    """The model card of a shipped model: task, data, split, metrics, baselines, recipe, sha256."""
    return cards.read_card(_folder(name))


def load(name: str) -> keras.Model:
    """Load a shipped model offline, after checking its sha256 against the card (Keras ``safe_mode``)."""
    from zoo.backend import keras

    folder = _folder(name)
    info = cards.read_card(folder)
    path = cards.verify(folder, info)
    assets = cards.verify_assets(folder, info)
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    tokenizer_file = info.get("preprocessing", {}).get("tokenizer_file")
    if tokenizer_file:  # text models keep the vocabulary they were trained with
        from zoo.text import load_tokenizer

        model.tokenizer = load_tokenizer(assets[tokenizer_file])
    return model


def test_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Held-out raw inputs ``[N, T, F]`` of a model's dataset and their labels or targets."""
    from zoo.tasks import TASKS

    return TASKS[get_spec(name).task].test_data()


def train(name: str, out: str | Path | None = None, verbose: int = 1, **overrides: object) -> dict:
    """Retrain a registry model (``cell=``, ``units=``, ``layers=``, ``epochs=``, ``seed=``… override the
    recipe) and write it with its card to ``out/<name>/`` (default: ``saved_models/``). Returns the card."""
    from zoo.training import train_and_export

    spec = get_spec(name).with_overrides(**overrides)
    return train_and_export(spec, Path(out) if out else None, verbose=verbose)


def evaluate(name: str) -> dict:
    """Re-measure a shipped model on its test split; returns the fresh test metrics."""
    from zoo.tasks import TASKS

    spec = get_spec(name)
    task = TASKS[spec.task]
    model = load(name)
    return task.evaluate(model, task.prepare(spec.recipe.seed, spec.head), spec.head)


def _speech_model(name: str, kind: str, what: str) -> tuple[keras.Model, dict]:
    info = card(name)
    if info.get("kind") != kind:
        raise ValueError(f"{name} is a {info.get('kind')} model, not {what}")
    return load(name), info


def transcribe(name: str, wav_path: str | Path, beam_width: int = 16) -> str:
    """The digits spoken in a WAV file (any sample rate), e.g. ``"314"``, by a CTC model such as
    ``digits-ctc-bigru``; `zoo.audio.AudioError` (a ValueError) for unusable audio."""
    from zoo.tasks.speech import load_audio, transcribe_wave

    model, info = _speech_model(name, "ctc", "a CTC transcriber (try digits-ctc-bigru)")
    return transcribe_wave(model, info, load_audio(wav_path, info), beam_width)


def listen(name: str, wav_path: str | Path) -> list[dict]:
    """Run a keyword spotter over a WAV file as a stream (frame by frame, explicit state); one dict per
    detection: ``time_s`` and ``probability``."""
    from zoo.tasks.speech import listen_wave, load_audio

    model, info = _speech_model(name, "keyword-spotting", "a keyword spotter (try keyword-seven-gru)")
    return listen_wave(model, info, load_audio(wav_path, info))


def _text_model(name: str, kind: str, what: str) -> tuple[keras.Model, dict]:
    info = card(name)
    if info.get("kind") != kind:
        raise ValueError(f"{name} is a {info.get('kind')} model, not {what}")
    return load(name), info


def generate(
    name: str,
    prompt: str,
    length: int = 300,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
) -> str:
    """Continue ``prompt`` by ``length`` characters with a character language model (e.g. ``kjv-char-lstm``);
    returns the new text only. The same ``seed`` gives the same text; ``temperature=0`` is greedy; ``top_k``
    > 0 samples among the k most likely characters. Bad requests raise ValueError with one clear sentence."""
    from zoo.text import generate_text

    model, _ = _text_model(name, "generation", "a character language model (try kjv-char-lstm)")
    return generate_text(model, model.tokenizer, prompt, length, temperature, top_k, seed)


def classify_text(name: str, texts: str | list[str]) -> list[dict]:
    """Label texts with a text classifier (e.g. ``sentiment-bilstm``): one ``{"text", "label",
    "probabilities"}`` per text. Empty or over-long texts raise ValueError with one clear sentence."""
    from zoo.text import classify

    model, info = _text_model(name, "text-classification", "a text classifier (try sentiment-bilstm)")
    return classify(model, model.tokenizer, info["preprocessing"]["class_names"], texts)
