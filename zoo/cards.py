"""Model cards: write, read and verify ``saved_models/<name>/card.json`` beside ``model.keras``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def _models_root() -> Path:
    """Where the shipped models are: ``$RNNZOO_MODELS`` if set; else the checkout's top-level ``saved_models/``
    (an editable install, where training writes); else ``zoo/saved_models/`` inside an installed wheel."""
    if os.environ.get("RNNZOO_MODELS"):
        return Path(os.environ["RNNZOO_MODELS"])
    checkout = Path(__file__).resolve().parent.parent / "saved_models"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "saved_models"


SAVED_MODELS = _models_root()
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"


class IntegrityError(RuntimeError):
    """A model file that does not match the sha256 its card records (tampered or corrupt)."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_dir(name: str, root: Path | None = None) -> Path:
    return (root or SAVED_MODELS) / name


def shipped(root: Path | None = None) -> list[str]:
    """Names of the folders that hold both a model and its card."""
    base = root or SAVED_MODELS
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if (d / MODEL_FILE).is_file() and (d / CARD_FILE).is_file())


def read_card(folder: Path) -> dict:
    path = folder / CARD_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no card at {path}: train the model first (rnnzoo train NAME)") from None
    except json.JSONDecodeError as e:
        raise IntegrityError(f"{path} is not valid JSON ({e.msg}, line {e.lineno})") from None


def write_card(folder: Path, card: dict) -> dict:
    """Stamp the model file's sha256 into ``card`` and write it atomically."""
    card = {**card, "sha256": sha256(folder / MODEL_FILE)}
    tmp = folder / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(folder / CARD_FILE)
    return card


def verify(folder: Path, card: dict) -> Path:
    """The model file's path, once its sha256 matches the card."""
    path = folder / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    actual = sha256(path)
    if actual != card.get("sha256"):
        raise IntegrityError(
            f"{path} does not match its card (sha256 {actual[:12]}… != {str(card.get('sha256'))[:12]}…): "
            "the file was modified or corrupted; refusing to load it"
        )
    return path


def add_cell_comparison(names: list[str], metrics: tuple[str, ...], root: Path | None = None) -> list[dict]:
    """Write, into each named card, the table comparing those models (the same recipe with different cells),
    read from their own cards so every number is one that was measured."""
    table = []
    for name in names:
        card = read_card(model_dir(name, root))
        row = {"model": name, "cell": card["architecture"]["cell"], "parameters": card["parameters"]}
        row |= {m: card["test_metrics"][m] for m in metrics if m in card["test_metrics"]}
        row |= {
            k: card["recipe"][k] for k in ("best_epoch", "epochs_run", "wall_time_s", "backend", "device")
        }
        table.append(row)
    for name in names:
        folder = model_dir(name, root)
        write_card(folder, {**read_card(folder), "cell_comparison": table})
    return table


def write_assets(folder: Path, assets: dict) -> dict:
    """Write each asset (file name -> JSON content) beside the model; return ``{file name: sha256}`` for the
    card."""
    written = {}
    for file_name, content in assets.items():
        path = folder / file_name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        written[file_name] = sha256(path)
    return written


def verify_assets(folder: Path, card: dict) -> dict[str, Path]:
    """Paths of the card's assets (tokenizer vocabularies…), once each file's sha256 matches the card."""
    paths = {}
    for file_name, digest in card.get("assets", {}).items():
        path = folder / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (the card lists it as an asset of the model)")
        if sha256(path) != digest:
            raise IntegrityError(
                f"{path} does not match its card (sha256 {sha256(path)[:12]}… != {digest[:12]}…): "
                "the file was modified or corrupted; refusing to load the model"
            )
        paths[file_name] = path
    return paths
