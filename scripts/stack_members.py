"""Ship an ensemble from members trained one by one: what ``rnnzoo train NAME`` does for a recipe with
``members`` > 1 (`zoo.registry.Recipe`), for when the members' runs already exist — trained in parallel, on
another machine, or before the recipe became an ensemble.

    rnnzoo train digits-ctc-bigru --seed 1 --members 1 --out /tmp/s1          # one folder per seed
    KERAS_BACKEND=jax python scripts/stack_members.py digits-ctc-bigru /tmp/s0 /tmp/s1 /tmp/s2

Each DIR holds ``NAME/`` as training wrote it (model.keras, history.json, card.json; the model is checked
against its card's sha256). The members must be the registry recipe's, seed by seed: the same architecture and
training settings, seeds ``seed``, ``seed + 1``, ... in the order given; anything else is refused in one line.
The stacked model is evaluated and written with its card exactly as training writes it
(`zoo.training.export_trained`), into ``--out`` (default ``saved_models/``, replacing the shipped model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zoo import cards
from zoo.registry import UnknownModelError, get_spec

# Card recipe fields a member must share with the registry recipe (the seed is checked on its own).
SHARED = ("epochs", "batch_size", "learning_rate", "clipnorm", "patience", "optimizer")
SHARED_DETAILS = ("monitor", "class_weight", "refit", "lr_decay")


def member_problem(spec, card: cards.Card, seed: int) -> str | None:
    """Why ``card`` is not the member of ``spec`` with ``seed`` (None when it is)."""
    recipe = spec.recipe.to_dict()
    if card.name != spec.name or card.architecture != spec.arch:
        return f"it is {card.name} with {card.architecture}, not {spec.name} with {spec.arch}"
    if card.recipe.seed != seed:
        return f"its seed is {card.recipe.seed}, expected {seed}"
    for key in SHARED:
        if getattr(card.recipe, key) != recipe[key]:
            return f"its {key} is {getattr(card.recipe, key)}, the recipe's {recipe[key]}"
    for key in SHARED_DETAILS:
        if card.recipe.details.get(key) != recipe[key]:
            return f"its {key} is {card.recipe.details.get(key)}, the recipe's {recipe[key]}"
    if card.recipe.details.get("members", 1) != 1:
        return "it is an ensemble itself"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", help="the registry model, e.g. digits-ctc-bigru")
    parser.add_argument("members", nargs="+", type=Path, metavar="DIR", help="member folders, seed order")
    parser.add_argument("--out", type=Path, help="output root (default: saved_models/)")
    args = parser.parse_args()
    try:
        spec = get_spec(args.name)
    except UnknownModelError as err:  # its message names the near misses
        parser.error(str(err))
    if spec.recipe.members != len(args.members):
        parser.error(
            f"{args.name}'s recipe has {spec.recipe.members} members; {len(args.members)} folders given"
        )

    from zoo.backend import keras
    from zoo.tasks import TASKS
    from zoo.training import Run, export_trained

    runs = []
    for i, root in enumerate(args.members):
        folder = root / args.name
        seed = spec.recipe.seed + i
        try:
            card = cards.read_card(folder)
            path = cards.verify(folder, card)
        except (OSError, cards.IntegrityError) as err:
            parser.error(f"{folder}: {str(err).splitlines()[0]}")
        problem = member_problem(spec, card, seed)
        if problem:
            parser.error(f"{folder} is not member {i} of {args.name}: {problem}")
        history = json.loads((folder / "history.json").read_text())
        model = keras.models.load_model(path, safe_mode=True, compile=False)
        runs.append(
            Run(model, history, card.recipe.wall_time_s, seed, card.recipe.backend, card.recipe.device)
        )
    task = TASKS[spec.task]
    prepared = task.prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size)
    card = export_trained(spec, runs, prepared, args.out)
    print(f"wrote {cards.model_dir(spec.name, args.out)}: {len(runs)} members, test metrics "
          + json.dumps({k: v for k, v in card.test_metrics.items() if isinstance(v, float)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
