"""Finding a model and loading it: `zoo.card`, `zoo.load`, `zoo.predictor`, `zoo.require`.

A model is named by its registry name or by a model folder (one `zoo.fit` wrote, or a copy of a shipped
model's folder). This module sits below the modules that use a shipped model (music, translation, export,
fine-tuning in `zoo.fit`), which load it through here; the facade `zoo/__init__.py` re-exports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo import cards
from zoo.registry import SENSOR, Capability, CapabilityError, get_spec
from zoo.registry import require as require_registered

if TYPE_CHECKING:
    import keras

    from zoo.inference import Predictor


def is_fitted_folder(spec: str | Path) -> bool:
    """Whether ``spec`` names a folder holding a model and its card (a fitted or copied zoo model)."""
    p = Path(spec)
    return p.is_dir() and (p / cards.MODEL_FILE).is_file() and (p / cards.CARD_FILE).is_file()


def model_folder(name: str | Path) -> Path:
    """The folder of a shipped model (a registry name), or ``name`` itself when it is a model folder (one
    written by `fit`, or a copy of a zoo model's folder)."""
    if is_fitted_folder(name):
        return Path(name)
    get_spec(str(name))  # unknown names fail here, with suggestions
    return cards.model_dir(str(name))


def require(name: str | Path, capability: Capability) -> object:
    """The registry entry for ``name`` if the model can do ``capability`` (else one CapabilityError); a fitted
    folder can predict and, when its model is causal or served in window mode, stream."""
    if is_fitted_folder(name):
        if capability not in SENSOR:
            raise CapabilityError(
                f"{name} cannot {capability}: a fitted model can {', '.join(sorted(SENSOR))}"
            )
        return None
    return require_registered(str(name), capability)


def card(name: str | Path) -> cards.Card:
    """The model card of a shipped model (a typed `zoo.cards.Card`): task, data, split, metrics, baselines,
    recipe, licence, state spec, sha256. ``.to_json()`` gives the card.json form."""
    return cards.read_card(model_folder(name))


def load(name: str | Path) -> keras.Model:
    """Load a shipped model offline, after checking its sha256 (and its assets') against the card (Keras
    ``safe_mode``). For the tokenizer and step engine that go with it, use `predictor`."""
    from zoo.backend import keras

    folder = model_folder(name)
    info = cards.read_card(folder)
    path = cards.verify(folder, info)
    cards.verify_assets(folder, info)
    return keras.models.load_model(path, safe_mode=True, compile=False)


def predictor(name: str | Path) -> Predictor:
    """A shipped model with its card, its tokenizer (text models) and its numpy step engine (on first use)."""
    from zoo.inference import Predictor

    model = load(name)
    info = card(name)
    tokenizer = None
    tokenizer_file = info.preprocessing.tokenizer_file
    if tokenizer_file:  # text models keep the vocabulary they were trained with (verified by load above)
        from zoo.text import load_tokenizer

        tokenizer = load_tokenizer(model_folder(name) / tokenizer_file)
    return Predictor(name, model, info, tokenizer)
