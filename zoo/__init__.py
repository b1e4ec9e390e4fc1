"""rnn-zoo: pretrained Keras 3 recurrent networks, loaded offline in one call.

>>> import zoo
>>> zoo.list_models()
>>> model = zoo.load("activity-gru-causal")
>>> zoo.card("activity-gru-causal").test_metrics["accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

# Keras (and TensorFlow behind it, ~10 s and ~600 MB) is imported only by what needs it — loading, training,
# running a model — so `rnnzoo --help`, `list` and `info`, and the streaming service, start without it: every
# module imported here is light (numpy; pandas, music21, mido and matplotlib load when used).
from zoo import cards
from zoo.evaluation import evaluate, test_data
from zoo.export import export
from zoo.fit import fit
from zoo.loaders import card, load, predictor, require
from zoo.music import compose
from zoo.registry import REGISTRY, Capability, CapabilityError, UnknownModelError, get_spec
from zoo.translation import translate

if TYPE_CHECKING:
    from zoo.inference import Predictor

__all__ = [
    "list_models",
    "card",
    "load",
    "predictor",
    "train",
    "fit",
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


def list_models(task: str | None = None, capability: str | None = None, name: str | None = None) -> list[str]:
    """Names of the pretrained models shipped in ``saved_models/``, in registry order; only those of a registry
    ``task`` (e.g. ``"activity"``), those that can do ``capability`` (e.g. ``"stream"``, ``"generate"``) and
    those whose name contains ``name``, when given.

    Example:
        >>> zoo.list_models(capability="stream", name="activity")
        ['activity-gru-causal', 'activity-lstm-causal', 'activity-simple-causal', 'activity-bigru']
    """
    present = set(cards.shipped())
    if capability is not None and capability not in {c.value for c in Capability}:
        raise ValueError(
            f"unknown capability {capability!r}: one of {', '.join(c.value for c in Capability)}"
        )
    return [
        n
        for n, spec in REGISTRY.items()
        if n in present
        and (task is None or spec.task == task)
        and (capability is None or capability in spec.capabilities)
        and (name is None or name in n)
    ]


def train(
    name: str,
    out: str | Path | None = None,
    verbose: int = 1,
    devices: int | Literal["all"] | None = None,
    **overrides: object,
) -> cards.Card:
    """Retrain a registry model (``cell=``, ``units=``, ``layers=``, ``epochs=``, ``seed=``… override the
    recipe) and write it with its card to ``out/<name>/`` (default: ``saved_models/``). Returns the card.
    ``devices`` (an int >= 2 or ``"all"``, JAX backend): data-parallel over that many devices, the global batch
    split across them (`zoo.distributed`; ValueError where it cannot work)."""
    from zoo.training import train_and_export

    spec = get_spec(name).with_overrides(**overrides)
    return train_and_export(spec, Path(out) if out else None, verbose=verbose, devices=devices)


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
