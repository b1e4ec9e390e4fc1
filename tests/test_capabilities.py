"""Every command × every shipped model: a model asked to do what it cannot is refused in one line, exit 2."""

from __future__ import annotations

import pytest

import zoo
from rnnzoo.cli import main
from zoo.registry import REGISTRY, Capability

# One command line per capability, with placeholder arguments: the capability is checked before any of them.
COMMANDS = {
    Capability.PREDICT: ["predict", "{name}", "--input", "x.npy"],
    Capability.STREAM: ["serve", "--model", "{name}", "--topic", "s/+/x", "--broker", "mqtt://127.0.0.1:1"],
    Capability.COMPOSE: ["compose", "{name}", "--out", "x.mid"],
    Capability.GENERATE: ["generate", "{name}", "--prompt", "And "],
    Capability.CLASSIFY: ["classify", "{name}", "good"],
    Capability.TRANSLATE: ["translate", "{name}", "Cannot open file"],
    Capability.TRANSCRIBE: ["transcribe", "{name}", "x.wav"],
    Capability.LISTEN: ["listen", "{name}", "--input", "x.wav"],
    Capability.CLASSIFY_AUDIO: ["classify-audio", "{name}", "x.wav"],
}
PAIRS = [
    (capability, name)
    for name in zoo.list_models()
    for capability in Capability
    if capability not in REGISTRY[name].capabilities
]


def test_every_capability_has_a_command_and_every_model_a_capability() -> None:
    assert set(COMMANDS) == set(Capability)
    assert all(REGISTRY[name].capabilities for name in zoo.list_models())


@pytest.mark.parametrize(("capability", "name"), PAIRS, ids=[f"{c}-{n}" for c, n in PAIRS])
def test_a_command_refuses_a_model_without_its_capability_in_one_line(capability, name, capsys) -> None:
    argv = [a.format(name=name) for a in COMMANDS[capability]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnzoo") and f"cannot {capability}" in err[0], err
