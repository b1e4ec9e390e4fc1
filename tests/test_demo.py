"""`rnnzoo demo`: every device visible, every activity replayed, the running accuracy and the live page's URL."""

from __future__ import annotations

import io
import re
import urllib.request

import numpy as np
import pytest

from streaming.demo import cycle_classes
from streaming.simulate import Dataset


def test_the_devices_cycle_through_every_class() -> None:
    y = np.repeat(np.arange(4), 10)  # sorted by class, as the zoo's test split is
    data = cycle_classes(Dataset(np.arange(40, dtype=np.float32).reshape(40, 1, 1), y), devices=3)
    n = len(data.y)
    for i in range(3):  # the simulator gives device i sequences i, i + 3, i + 6, ...
        played = [int(data.y[(i + k * 3) % n]) for k in range(4)]
        assert sorted(played) == [0, 1, 2, 3], (i, played)
    assert {int(x) for x in data.X[:, 0, 0]} <= set(range(40))


@pytest.mark.slow
def test_demo_shows_every_device_and_class_the_accuracy_and_the_page() -> None:
    from rich.console import Console

    from streaming.demo import run_demo

    lines: list[str] = []
    screen = io.StringIO()
    pages: list[int] = []

    def out(line: str) -> None:
        lines.append(line)
        if line.startswith("live page: "):  # the page answers while the demo runs
            with urllib.request.urlopen(line.split(": ", 1)[1], timeout=5) as resp:
                pages.append(resp.status)

    # 4 recordings of 100 steps at 40 Hz: 10 s plays each device's 4 classes.
    code = run_demo(
        "activity-gru-causal", 4, 40.0, 10.5, None, None, 0, out=out, console=Console(file=screen, width=140)
    )
    assert code == 0 and pages == [200]
    table = screen.getvalue()
    for device in ("sim0000", "sim0001", "sim0002", "sim0003"):
        assert re.search(rf"{device} .* 4/4 ", table), table[-2000:]
    assert "running accuracy" in table
    assert re.search(r"accuracy \d+\.\d% over \d+ labelled steps", lines[-1])
