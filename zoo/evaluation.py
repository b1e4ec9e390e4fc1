"""A model's test split: its held-out data (`zoo.test_data`) and the model re-measured on it (`zoo.evaluate`).

These sit above the tasks (`zoo.tasks`), which they ask for the split; a registry model's split comes from its
registry task, a fitted folder's from the file it was fitted on (`zoo.tasks.user_table.task_of`). Both import
the tasks, and Keras with them, only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo.loaders import card, is_fitted_folder, load
from zoo.registry import get_spec

if TYPE_CHECKING:
    import numpy as np


def test_data(name: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Held-out raw inputs ``[N, T, F]`` of a model's dataset and their labels or targets."""
    from zoo.tasks import TASKS
    from zoo.tasks.user_table import task_of

    if is_fitted_folder(name):
        return task_of(Path(name), card(name)).test_data()
    return TASKS[get_spec(str(name)).task].test_data()


def evaluate(name: str | Path) -> dict:
    """Re-measure a shipped model — or a fitted folder, on the file it was fitted on — on its test split;
    returns the fresh test metrics."""
    from zoo.tasks import TASKS
    from zoo.tasks.user_table import task_of

    if is_fitted_folder(name):
        info = card(name)
        task = task_of(Path(name), info)
        return task.evaluate(load(name), task.prepare(task.seed, info.head), info.head)
    spec = get_spec(str(name))
    task = TASKS[spec.task]
    model = load(name)
    return task.evaluate(model, task.prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size), spec.head)
