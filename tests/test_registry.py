"""One registry: unknown names suggest the closest, overrides replace recipe fields."""

import pytest

import zoo
from zoo.registry import REGISTRY, get_spec


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(zoo.UnknownModelError, match="did you mean activity-gru-causal"):
        zoo.card("activity-gru-casual")


def test_every_task_accepts_every_cell() -> None:
    for spec in REGISTRY.values():
        for cell in ("simple", "lstm", "gru"):
            assert spec.with_overrides(cell=cell).arch.cell == cell


def test_overrides_and_bidirectional_head() -> None:
    spec = get_spec("activity-gru-causal").with_overrides(units=8, epochs=3, bidirectional=True)
    assert (spec.arch.units, spec.recipe.epochs) == (8, 3)
    assert spec.head == "sequence_classification"  # a model that reads the future has no per-step answer
    with pytest.raises(ValueError, match="unknown override"):
        get_spec("activity-gru-causal").with_overrides(colour="red")
