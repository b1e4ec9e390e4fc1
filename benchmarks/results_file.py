"""Where a benchmark's result goes: one JSON file (``--json PATH``), written whole; and the machine it ran on."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | Path | None, result: dict[str, Any]) -> None:
    """Write ``result`` to ``path`` (its folder made if missing) as indented JSON, through a temporary file
    renamed into place, so an interrupted run never leaves half a result; nothing when ``path`` is None."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def cpu_model() -> str | None:
    """The CPU's model name (Linux's /proc/cpuinfo; None elsewhere): rows measured on different machines are
    not comparable."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
