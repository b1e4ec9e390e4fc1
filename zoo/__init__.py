"""rnn-zoo: pretrained Keras 3 recurrent networks, loaded offline in one call.

>>> import zoo
>>> zoo.list_models()
>>> model = zoo.load("activity-gru-causal")
>>> zoo.card("activity-gru-causal").test_metrics["accuracy"]
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
from zoo.export import export  # (same reason: a function named like its package)
from zoo.registry import REGISTRY, Capability, CapabilityError, UnknownModelError, get_spec, require
from zoo.translate import translate  # (same reason as compose: a function named like its module)

if TYPE_CHECKING:
    import keras
    import numpy as np

    from zoo.inference import Predictor

__all__ = [
    "list_models",
    "card",
    "load",
    "predictor",
    "train",
    "evaluate",
    "test_data",
    "compose",
    "transcribe",
    "listen",
    "classify_audio",
    "generate",
    "classify_text",
    "translate",
    "export",
    "UnknownModelError",
    "CapabilityError",
    "Capability",
    "require",
]


def list_models() -> list[str]:
    """Names of the pretrained models shipped in ``saved_models/``, in registry order."""
    present = set(cards.shipped())
    return [name for name in REGISTRY if name in present]


def _folder(name: str) -> Path:
    get_spec(name)  # unknown names fail here, with suggestions
    return cards.model_dir(name)


def card(name: str) -> cards.Card:
    """The model card of a shipped model (a typed `zoo.cards.Card`): task, data, split, metrics, baselines,
    recipe, licence, state spec, sha256. ``.to_json()`` gives the card.json form."""
    return cards.read_card(_folder(name))


def load(name: str) -> keras.Model:
    """Load a shipped model offline, after checking its sha256 (and its assets') against the card (Keras
    ``safe_mode``). For the tokenizer and step engine that go with it, use `predictor`."""
    from zoo.backend import keras

    folder = _folder(name)
    info = cards.read_card(folder)
    path = cards.verify(folder, info)
    cards.verify_assets(folder, info)
    return keras.models.load_model(path, safe_mode=True, compile=False)


def predictor(name: str) -> Predictor:
    """A shipped model with its card, its tokenizer (text models) and its numpy step engine (on first use)."""
    from zoo.inference import Predictor

    model = load(name)
    info = card(name)
    tokenizer = None
    tokenizer_file = info.preprocessing.tokenizer_file
    if tokenizer_file:  # text models keep the vocabulary they were trained with (verified by load above)
        from zoo.text import load_tokenizer

        tokenizer = load_tokenizer(_folder(name) / tokenizer_file)
    return Predictor(name, model, info, tokenizer)


def test_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Held-out raw inputs ``[N, T, F]`` of a model's dataset and their labels or targets."""
    from zoo.tasks import TASKS

    return TASKS[get_spec(name).task].test_data()


def train(name: str, out: str | Path | None = None, verbose: int = 1, **overrides: object) -> cards.Card:
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
    return task.evaluate(model, task.prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size), spec.head)


def _predictor_for(name: str, capability: Capability) -> Predictor:
    """The model's Predictor, once the registry says the model can do ``capability`` (else one clear
    CapabilityError, before anything is loaded)."""
    require(name, capability)
    return predictor(name)


def transcribe(name: str, wav_path: str | Path, beam_width: int = 16) -> str:
    """The digits spoken in a WAV file (any sample rate), e.g. ``"314"``, by a CTC model such as
    ``digits-ctc-bigru``; `zoo.audio.AudioError` (a ValueError) for unusable audio."""
    from zoo.speech import load_audio, transcribe_wave

    p = _predictor_for(name, Capability.TRANSCRIBE)
    return transcribe_wave(p.model, p.card, load_audio(wav_path, p.card), beam_width)


def listen(name: str, wav_path: str | Path) -> list[dict]:
    """Run a keyword spotter over a WAV file as a stream (frame by frame, explicit state); one dict per
    detection: ``time_s`` and ``probability``."""
    from zoo.speech import listen_wave, load_audio

    p = _predictor_for(name, Capability.LISTEN)
    return listen_wave(p.stepper, p.card, load_audio(wav_path, p.card))


def classify_audio(name: str, wav_paths: str | Path | list[str | Path]) -> list[dict]:
    """Which word each WAV file (any sample rate) says, by a spoken-word classifier such as
    ``spoken-words-bigru``: one ``{"file", "label", "probability", "probabilities"}`` per file, in order;
    `zoo.audio.AudioError` (a ValueError) for unusable audio."""
    from zoo.speech import classify_wave, load_audio

    p = _predictor_for(name, Capability.CLASSIFY_AUDIO)
    paths = [wav_paths] if isinstance(wav_paths, (str, Path)) else list(wav_paths)
    return [{"file": str(f), **classify_wave(p.model, p.card, load_audio(f, p.card))} for f in paths]


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

    p = _predictor_for(name, Capability.GENERATE)
    return generate_text(p.stepper, p.tokenizer, prompt, length, temperature, top_k, seed)


def classify_text(name: str, texts: str | list[str]) -> list[dict]:
    """Label texts with a text classifier (e.g. ``sentiment-bilstm``): one ``{"text", "label",
    "probabilities"}`` per text. Empty or over-long texts raise ValueError with one clear sentence."""
    from zoo.text import classify

    p = _predictor_for(name, Capability.CLASSIFY)
    return classify(p.model, p.tokenizer, p.card.class_names, texts)
