"""A model folder's precomputed step engine: ``step.npz`` (a step file, `zoo.step.fileformat`) beside
``model.keras``, so that an install without Keras or TensorFlow (``pip install "rnn-zoo[serve]"``) streams the
model. ``step.json`` ties it to the model file it was read from::

    {"format": "rnnzoo-step/1", "file": "step.npz", "sha256": "<of step.npz>",
     "model_sha256": "<of the model.keras it was read from>", "compute_dtype": "float64"}

`read_engine` hands the engine out only for the very model file the card vouches for (``model_sha256`` equal
to the card's ``sha256``) and only when ``step.npz`` still has its sha256; `write_engine` writes both files
(``python scripts/step_engines.py`` for every causal shipped model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zoo.step.engine import StepModel
from zoo.step.fileformat import STEP_FORMAT

ENGINE_FILE = "step.npz"
ENGINE_META = "step.json"


def write_engine(folder: str | os.PathLike, step_model: StepModel, model_sha256: str) -> dict[str, Any]:
    """Write ``step_model`` (read from the folder's model file, whose sha256 is ``model_sha256``) into
    ``folder`` as ``step.npz`` + ``step.json``; return what ``step.json`` holds."""
    from zoo.cards import sha256

    folder = Path(folder)
    tmp = folder / (ENGINE_FILE + ".tmp")
    step_model.save(tmp)
    tmp.replace(folder / ENGINE_FILE)
    meta = {
        "format": STEP_FORMAT,
        "file": ENGINE_FILE,
        "sha256": sha256(folder / ENGINE_FILE),
        "model_sha256": model_sha256,
        "compute_dtype": step_model.compute_dtype.name,
    }
    tmp = folder / (ENGINE_META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(folder / ENGINE_META)
    return meta


def read_engine(folder: str | os.PathLike, model_sha256: str) -> StepModel | None:
    """The folder's precomputed step engine, if it was read from the model file whose sha256 is
    ``model_sha256`` (the card's) in the current step format; None when there is none, or it belongs to another
    model file or format. IntegrityError when ``step.npz`` no longer has the sha256 ``step.json`` records."""
    from zoo.cards import IntegrityError, sha256

    folder = Path(folder)
    try:
        meta = json.loads((folder / ENGINE_META).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != STEP_FORMAT
        or meta.get("model_sha256") != model_sha256
    ):
        return None
    path = folder / ENGINE_FILE
    if not path.is_file() or sha256(path) != meta.get("sha256"):
        raise IntegrityError(
            f"{path} does not match {folder / ENGINE_META} (sha256): the file was modified or corrupted; "
            "refusing to serve it"
        )
    return StepModel.load(path)
