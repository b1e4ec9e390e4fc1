"""One registry: unknown names suggest the closest, overrides replace recipe fields."""

import dataclasses

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


def test_list_models_filters_by_task_capability_and_name() -> None:
    import zoo

    assert zoo.list_models(task="chorales") == ["chorales-lstm", "chorales-gru", "chorales-simple"]
    streamable = zoo.list_models(capability="stream")
    assert "activity-gru-causal" in streamable and "kjv-char-lstm" not in streamable
    assert zoo.list_models(capability="generate", name="kjv") == ["kjv-char-lstm"]
    assert set(zoo.list_models(name="activity")) <= set(zoo.list_models())
    with pytest.raises(ValueError, match="unknown capability 'fly'"):
        zoo.list_models(capability="fly")


def test_the_registry_names_the_tasks_of_zoo_tasks_and_each_task_trains_its_models_heads() -> None:
    from zoo.registry import TASK_NAMES
    from zoo.tasks import TASKS

    assert sorted(TASKS) == sorted(TASK_NAMES)
    untrainable = [(s.name, s.task, s.head) for s in REGISTRY.values() if s.head not in TASKS[s.task].heads]
    assert not untrainable, untrainable


def test_an_entry_with_an_unknown_task_or_head_fails_when_it_is_built() -> None:
    from zoo.architecture import Architecture
    from zoo.registry import ModelSpec

    with pytest.raises(ValueError, match="model 'x': unknown task 'activty'; the tasks are activity, "):
        ModelSpec(name="x", task="activty", head="step_classification", arch=Architecture())
    with pytest.raises(ValueError, match="model 'x': unknown head 'step_clasification'; the heads are ctc, "):
        ModelSpec(name="x", task="activity", head="step_clasification", arch=Architecture())
    spec = get_spec("activity-gru-causal")
    with pytest.raises(ValueError, match="unknown head 'window'"):
        dataclasses.replace(spec, head="window")
