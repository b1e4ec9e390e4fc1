"""The README and docs/ cannot drift from the project: every relative link and image resolves, the README stays
a front door, and the README's own-data journey runs as written (slow: it trains a model)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else None]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = target.split("#")[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for heading in (
        "## Set up",
        "## 1. Use a pretrained model",
        "## 2. Stream it",
        "## 3. Train on your own data",
    ):
        assert heading in text
    # No history narration: git keeps history, the docs say what is.
    for page in PAGES:
        assert not re.search(r"\bissue \d+|\bdown from\b|\bup from\b", page.read_text()), page.name


def test_code_names_no_issue_numbers() -> None:
    """Comments and docstrings say what is; which issue a line came from is git log's to keep."""
    sources = [p for d in ("zoo", "streaming", "rnnzoo", "scripts", "tests", "benchmarks") for p in (ROOT / d).rglob("*")
               if p.suffix in (".py", ".sh", ".js", ".html") and "__pycache__" not in p.parts]  # fmt: skip
    pattern = re.compile("\\bissue" + r" ?#?\d+", re.IGNORECASE)  # split so this file does not match itself
    found = [f"{p.relative_to(ROOT)}:{i}" for p in sources for i, line in enumerate(p.read_text().splitlines(), 1)
             if pattern.search(line)]  # fmt: skip
    assert sources and not found, found


def test_readme_python_blocks_compile() -> None:
    for block in _blocks((ROOT / "README.md").read_text(), "python"):
        compile(block, "README.md", "exec")


@pytest.mark.slow  # fits a model (about a minute on 2 cores), then serves it on a real Mosquitto
def test_readme_own_data_journey_runs_as_written(tmp_path: Path, mosquitto) -> None:
    """The README's three commands, run as printed (the broker's address swapped for the test's own Mosquitto),
    then the fitted folder's test sessions replayed through the served model: every answer equals Keras."""
    section = _section((ROOT / "README.md").read_text(), "## 3. Train on your own data")
    (bash,) = _blocks(section, "bash")
    commands = [shlex.split(line) for line in bash.strip().splitlines()]
    assert [c[:2] for c in commands] == [["python", "scripts/example_readings.py"], ["rnnzoo", "fit"],
                                         ["rnnzoo", "evaluate"], ["rnnzoo", "serve"]]  # fmt: skip
    bin_dir = Path(sys.executable).parent

    def argv(cmd: list[str]) -> list[str]:
        cmd = [a.replace("mqtt://127.0.0.1:1883", mosquitto.url) for a in cmd]
        if cmd[0] == "python":
            return [sys.executable, str(ROOT / cmd[1]), *cmd[2:]]
        return [str(bin_dir / "rnnzoo"), *cmd[1:]]

    for cmd in commands[:3]:
        proc = subprocess.run(argv(cmd), cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test split re-measured" in proc.stdout
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(argv(commands[3]), cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        # The service subscribes once its step engine is ready; a simulation started before that would lose the
        # first readings of every device (and, with them, each device's state from step 0).
        deadline = time.monotonic() + 300
        while "subscribed to" not in log.read_text():
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        check = [str(bin_dir / "rnnzoo"), "simulate", "--model", "runs/motions", "--broker", mosquitto.url,
                 "--devices", "4", "--sequences", "1", "--rate", "50", "--check"]  # fmt: skip
        proc = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "-> OK" in proc.stdout, proc.stdout + proc.stderr
        assert "400/400 predictions compared" in proc.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
