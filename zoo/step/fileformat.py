"""The step file: a step engine as one ``.npz`` — every op's arrays, and a JSON description (``meta``) of the
ops, their other fields and the engine's widths and dtypes. Read back with numpy alone (no pickle, no Keras).

``meta`` holds ``format`` (`STEP_FORMAT`), ``n_features``, ``n_outputs``, ``fingerprint`` (a hash of the Keras
weights it was read from), ``dtype`` (inputs, outputs, state), ``compute_dtype`` (the arithmetic) and ``ops``:
one ``{"type": <op class>, "fields": {name: {"array": key} | {"activation": name} | {"value": v}}}`` per op, in
order, each array stored under the key its field names.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.step.activations import _ACTIVATION_NAME, _ACTIVATIONS, Array
from zoo.step.ops import _OP_TYPES, _Op

STEP_FORMAT = "rnnzoo-step/1"  # the .npz a StepModel is saved as; bump when its contents change


@dataclass(frozen=True)
class StepFile:
    """What a step file holds: `zoo.step.StepModel`'s constructor arguments."""

    ops: list[_Op]
    n_features: int
    n_outputs: int
    fingerprint: str
    dtype: str
    compute_dtype: str


def write_step_file(path: str | os.PathLike, step: StepFile) -> None:
    """Write ``step`` to ``path`` (an .npz)."""
    meta: dict[str, Any] = {
        "format": STEP_FORMAT,
        "n_features": step.n_features,
        "n_outputs": step.n_outputs,
        "fingerprint": step.fingerprint,
        "dtype": step.dtype,
        "compute_dtype": step.compute_dtype,
        "ops": [],
    }
    arrays: dict[str, Array] = {}
    for i, op in enumerate(step.ops):
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(op):
            value = getattr(op, f.name)
            if isinstance(value, np.ndarray):
                arrays[f"op{i}.{f.name}"] = value
                fields[f.name] = {"array": f"op{i}.{f.name}"}
            elif callable(value):
                fields[f.name] = {"activation": _ACTIVATION_NAME[id(value)]}
            else:
                fields[f.name] = {"value": value}
        meta["ops"].append({"type": type(op).__name__, "fields": fields})
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def read_step_file(path: str | os.PathLike) -> StepFile:
    """Read a file written by `write_step_file`; ValueError if it is not one."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != STEP_FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not an rnnzoo step model")
        ops = []
        for entry in meta["ops"]:
            kwargs = {}
            for name, spec in entry["fields"].items():
                if "array" in spec:
                    kwargs[name] = data[spec["array"]]
                elif "activation" in spec:
                    kwargs[name] = _ACTIVATIONS[spec["activation"]]
                else:
                    kwargs[name] = spec["value"]
            ops.append(_OP_TYPES[entry["type"]](**kwargs))
    return StepFile(
        ops, meta["n_features"], meta["n_outputs"], meta["fingerprint"], meta["dtype"], meta["compute_dtype"]
    )
