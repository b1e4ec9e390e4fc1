"""Fit a recurrent model on the user's own table: ``rnnzoo fit`` and `zoo.fit`.

Reads a long table (CSV, Parquet, a DataFrame, or arrays ``x [N, T, F]`` + ``y``), chooses or checks the task,
splits it honestly (`zoo.tasks.user`), trains with the zoo's one loop (`zoo.training`: clipping, early
stopping with the best weights, seeds, Ctrl-C keeps the best so far), measures the baselines on the same split
and writes a folder that every other command takes: ``model.keras``, ``card.json`` (a `zoo.cards.Card`),
history, learning curve, test plot. The folder is written under a temporary name and renamed when complete, so
a failed or refused run leaves nothing behind.

>>> import zoo
>>> result = zoo.fit("readings.csv", target="activity", id="device", time="t", out="runs/my-model")
>>> result.card.test_metrics["balanced_accuracy"], result.card.versus_baseline.verdict
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo import cards, loaders
from zoo.architecture import CELL_NAMES, Architecture
from zoo.data.split import KINDS
from zoo.data.table import DataError
from zoo.registry import ModelSpec, Recipe

# --search: every cell x these widths x these depths, each with the same epoch budget.
SEARCH_UNITS = (32, 64)
SEARCH_LAYERS = (1, 2)


@dataclass(frozen=True)
class FitResult:
    """What `fit` made: the model (best weights), its card, the training history and the folder holding them."""

    model: Any
    card: cards.Card
    history: dict
    folder: Path
    chosen: str  # the task and why it was chosen, in one sentence


def _arrays_frame(x: np.ndarray, y: np.ndarray) -> Any:
    """Arrays ``x [N, T, F]`` and ``y [N]`` (one label or value per sequence) or ``[N, T]`` (per reading) as
    a long table with columns ``sequence``, ``step``, ``x0 … x{F-1}``, ``target``."""
    import pandas as pd

    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 3:
        raise DataError(f"x must be [sequences, steps, features] (got shape {list(x.shape)})")
    n, t, f = x.shape
    if y.shape not in ((n,), (n, t)):
        raise DataError(f"y must be [{n}] or [{n}, {t}] to match x (got shape {list(y.shape)})")
    frame = pd.DataFrame(x.reshape(n * t, f), columns=[f"x{i}" for i in range(f)])
    frame.insert(0, "step", np.tile(np.arange(t), n))
    frame.insert(0, "sequence", np.repeat(np.arange(n), t))
    frame["target"] = np.repeat(y, t) if y.ndim == 1 else y.reshape(-1)
    return frame


def fit(
    data: Any = None,
    target: str | list[str] | None = None,
    *,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    id: str | None = None,  # noqa: A002 (the CLI's --id)
    time_col: str | None = None,
    features: list[str] | None = None,
    task: str | None = None,
    horizon: int = 1,
    window: int | None = None,
    season: int | None = None,
    fill: str | None = None,
    balance: str = "auto",
    cell: str = "gru",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = False,
    epochs: int = 60,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    patience: int = 12,
    seed: int = 0,
    search: bool = False,
    from_model: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    chunked: bool | None = None,
    steps_per_epoch: int | None = None,
    devices: int | str | None = None,
    verbose: int = 1,
    say: Any = print,
) -> FitResult:
    """Fit a recurrent model on a table of one's own readings; write it as a zoo model folder.

    Args:
        data: a CSV / Parquet path or a pandas DataFrame, one row per reading (or None with ``x`` and ``y``).
        target: the column(s) to predict (several for a multi-series forecast).
        x, y: instead of ``data``: arrays ``[N, T, F]`` and ``[N]`` or ``[N, T]``.
        id: the column naming each sequence (device, recording, patient); None: one long recording.
        time_col: the column that orders rows within a sequence and gives the sampling rate.
        features: input columns (default: every other numeric column).
        task: ``classify``, ``tag``, ``forecast`` or ``regress``; None: chosen from the target (``say`` tells why).
        horizon: forecast steps ahead. window: training window of the per-reading kinds. season: seasonal-naive
            period of the forecast baseline. fill: ``ffill`` or ``zero`` for NaN / inf in features.
        balance: balanced class weights ``auto`` (when classes are skewed), ``on`` or ``off``.
        cell, units, layers, dropout, bidirectional: the recurrent stack (bidirectional: classify only, not
            streamable step by step: served in window mode).
        epochs, batch_size, learning_rate, patience, seed: the recipe (early stopping on validation loss).
        search: train every cell x units (32, 64) x layers (1, 2) with the same budget; keep the best on the
            validation split; the card holds the whole table.
        from_model: fine-tune a zoo model (name or fitted folder): its recurrent layers, normalisation
            re-adapted, a new head when the targets differ; head first, then everything at a tenth of the rate.
        out: the model folder to write (default ``runs/fit-<target>``); refused if it exists unless ``force``.
        chunked: read the file block by block instead of whole (`zoo.data.chunked`); None: when the file is
            larger than 256 MB. steps_per_epoch: batches per epoch (None: one pass over the training data).
        devices: data-parallel training over that many JAX devices (an int >= 2 or ``"all"``; the global
            batch split across them, `zoo.distributed`); None: one device. Refused before the data is read
            when it cannot work (TensorFlow backend, too few devices, a batch that does not split).
        verbose: 0 silent, 1 progress bar, 2 Keras logs. say: where the one-line messages go.
    """

    if data is None and x is None:
        raise DataError("give data (a CSV / Parquet path or a DataFrame) or arrays x and y")
    if x is not None:
        if data is not None or y is None:
            raise DataError("give either data or both x and y")
        data, target, id, time_col = _arrays_frame(x, y), "target", "sequence", "step"
    if target is None:
        raise DataError("--target is required: the column to predict")
    _check_options(epochs, batch_size, learning_rate, patience, units, layers, dropout, horizon, balance)
    if devices is not None:
        from zoo.distributed import data_parallel

        try:
            data_parallel(devices, batch_size)  # one sentence, before any data is read
        except ValueError as e:
            raise DataError(str(e)) from None
    folder = (
        Path(out)
        if out is not None
        else Path("runs") / f"fit-{target if isinstance(target, str) else target[0]}"
    )
    if folder.exists() and not force:
        raise DataError(f"--out {folder} exists; choose another folder or pass --force to replace it")
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--out {folder} is a file; give a folder")
    if task is not None and task not in KINDS:
        raise DataError(f"--task must be classify, tag, forecast or regress (got {task!r})")
    # Keras comes with the tasks: imported once a fit starts
    from zoo.tasks.user_baselines import compact
    from zoo.tasks.user_table import build_task

    user, chosen = build_task(data, target, id, time_col, features, fill, task, horizon, window, season, balance,
                              seed, batch_size, chunked, steps_per_epoch, progress=verbose == 1)  # fmt: skip
    task, seqs = user.task, user.seqs
    say(f"rnnzoo fit: {chosen}")
    if bidirectional and task != "classify":
        raise DataError(
            f"--bidirectional reads each sequence both ways, so it fits --task classify only (a {task} model "
            "must answer after every reading from the readings so far)"
        )
    if bidirectional and (user.stream is not None or len(set(seqs.lengths.tolist())) > 1):
        raise DataError(
            "--bidirectional needs sequences of one length held in memory (a causal model takes any length)"
        )
    source = _source_model(from_model, len(seqs.features)) if from_model else None
    if source is not None and search:
        raise DataError(
            "--search and --from exclude each other: a fine-tuned model keeps its source's architecture"
        )
    head = "sequence_classification" if bidirectional else (
        "step_classification" if task in ("classify", "tag") else "step_regression"
    )  # fmt: skip
    recipe = Recipe(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed
    )
    arch = Architecture(cell=cell, units=units, layers=layers, dropout=dropout, bidirectional=bidirectional)
    name = folder.name
    spec = ModelSpec(name=name, task=f"fit-{task}", head=head, arch=arch, recipe=recipe,
                     summary=f"{task} on {seqs.source['name']} (target {', '.join(seqs.target_names)})")  # fmt: skip
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        prepared = user.prepare(seed, head)
        if source is not None:
            spec = dataclasses.replace(spec, arch=source[1].architecture)
            runs, extra = _fine_tune(spec, user, prepared, source, verbose, devices)
            # Did it pay? The same architecture from a fresh start, same epochs and split, as a baseline.
            scratch = _train(spec, user, prepared, verbose, devices)
            user.extra_baselines["same_architecture_from_scratch"] = compact(
                user.evaluate(scratch.model, prepared, spec.head)
            ) | {"how": f"the fine-tuned architecture freshly initialised (seed {seed}), trained {epochs} epochs "
                 "at the full learning rate on the same split", "wall_time_s": round(scratch.wall_time_s, 1)}  # fmt: skip
            table = None
        elif search:
            runs, table, spec = _search(spec, user, prepared, verbose, say, devices)
            extra = {}
        else:
            runs, extra, table = [_train(spec, user, prepared, verbose, devices)], {}, None
        card = _export(spec, runs, prepared, user, staging, chosen, extra, table, say)
        if folder.exists():
            shutil.rmtree(folder)
        staging.replace(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return FitResult(runs[0].model, card, runs[0].history, folder, chosen)


def _check_options(epochs: int, batch: int, lr: float, patience: int, units: int, layers: int,
                   dropout: float, horizon: int, balance: str) -> None:  # fmt: skip
    import math

    checks = [
        (1 <= epochs <= 100_000, f"--epochs must be between 1 and 100000 (got {epochs})"),
        (1 <= batch <= 65_536, f"--batch-size must be between 1 and 65536 (got {batch})"),
        (math.isfinite(lr) and 0 < lr <= 1, f"--learning-rate must be a finite number in (0, 1] (got {lr})"),
        (0 <= patience <= 100_000, f"--patience must be between 0 and 100000 (got {patience})"),
        (1 <= units <= 4096 and 1 <= layers <= 16, f"--units (1-4096) and --layers (1-16) out of range ({units}, {layers})"),
        (math.isfinite(dropout) and 0 <= dropout < 1, f"--dropout must lie in [0, 1) (got {dropout})"),
        (1 <= horizon <= 1000, f"--horizon must be between 1 and 1000 (got {horizon})"),
        (balance in ("auto", "on", "off"), f"--balance must be auto, on or off (got {balance!r})"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise DataError(message)


def _train(spec: ModelSpec, user: Any, prepared: Any, verbose: int, devices: int | str | None = None) -> Any:
    from zoo.backend import keras
    from zoo.distributed import data_parallel
    from zoo.training import Run, device_name
    from zoo.training import fit as train_loop

    start = time.perf_counter()
    model, history = train_loop(spec, prepared, verbose=verbose, task=user, devices=devices)
    wall = time.perf_counter() - start
    device = data_parallel(devices, spec.recipe.batch_size).device_label(device_name())
    return Run(model, history, wall, spec.recipe.seed, keras.backend.backend(), device)


def _search(
    spec: ModelSpec, user: Any, prepared: Any, verbose: int, say: Any, devices: int | str | None = None
) -> tuple[list, list, ModelSpec]:
    """Every cell x units x layers with the same recipe; the best validation loss wins."""
    rows, best = [], None
    grid = list(itertools.product(CELL_NAMES, SEARCH_UNITS, SEARCH_LAYERS))
    for i, (cell, units, layers) in enumerate(grid, 1):
        candidate = dataclasses.replace(
            spec, arch=dataclasses.replace(spec.arch, cell=cell, units=units, layers=layers)
        )
        run = _train(candidate, user, prepared, verbose, devices)
        val = min(run.history["val_loss"])
        rows.append({
            "cell": cell, "units": units, "layers": layers, "parameters": int(run.model.count_params()),
            "best_val_loss": round(float(val), 6), "best_epoch": run.history["best_epoch"],
            "epochs_run": len(run.history["loss"]), "wall_time_s": round(run.wall_time_s, 1),
        })  # fmt: skip
        say(f"  search {i}/{len(grid)}: {cell} {layers}x{units}: validation loss {val:.4f}")
        if best is None or val < best[0]:
            best = (val, run, candidate)
    for row in rows:
        row["chosen"] = (row["cell"], row["units"], row["layers"]) == (
            best[2].arch.cell, best[2].arch.units, best[2].arch.layers)  # fmt: skip
    return [best[1]], rows, best[2]


def _source_model(spec: str, n_features: int) -> tuple[Any, cards.Card]:
    """The model to fine-tune from (a zoo name or a fitted folder) and its card, once its input fits."""
    card = loaders.card(spec)
    expected = card.preprocessing.n_features
    if card.architecture.embedding or expected is None:
        raise DataError(f"--from {spec}: a token model cannot be fine-tuned on readings")
    if card.architecture.bidirectional:
        raise DataError(f"--from {spec}: a bidirectional model cannot be fine-tuned into a causal one")
    if expected != n_features:
        names = card.preprocessing.details.get("feature_names")
        which = f" ({', '.join(names)})" if names else ""
        raise DataError(
            f"--from {spec} expects {expected} feature(s) per reading{which}; the data has {n_features}: "
            "choose them with --features"
        )
    return loaders.load(spec), card


def _fine_tune(
    spec: ModelSpec, user: Any, prepared: Any, source: tuple, verbose: int, devices: int | str | None = None
) -> tuple[list, dict]:
    """Start from the source model's recurrent layers: train a new head with them frozen for a quarter of the
    epochs, then everything at a tenth of the learning rate for the rest (early stopping on each stage)."""
    from zoo.builder import build_model

    keras_source, card = source
    model = build_model(spec.arch, spec.head, prepared.x_train.shape[-1], prepared.n_outputs,
                        prepared.norm_mean, prepared.norm_var, name=spec.name.replace("-", "_"))  # fmt: skip
    recurrent = [layer for layer in model.layers if layer.name.startswith(f"{spec.arch.cell}_")]
    src_layers = {layer.name: layer for layer in keras_source.layers}
    copied = []
    for layer in recurrent:
        if layer.name in src_layers:
            layer.set_weights(src_layers[layer.name].get_weights())
            copied.append(layer.name)
    head_kept = (card.head == spec.head and (card.class_names or None) == (user.class_names or None)
                 and src_layers["head"].get_weights()[0].shape == model.get_layer("head").get_weights()[0].shape)  # fmt: skip
    if head_kept and user.task != "forecast" and user.task != "regress":
        model.get_layer("head").set_weights(src_layers["head"].get_weights())
    head_epochs = max(1, spec.recipe.epochs // 4)
    for layer in recurrent:
        layer.trainable = False
    user.initial_model = model
    stage1 = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, epochs=head_epochs))
    first = _train(stage1, user, prepared, verbose, devices)
    for layer in recurrent:
        layer.trainable = True
    user.initial_model = first.model
    rest = max(1, spec.recipe.epochs - head_epochs)
    stage2 = dataclasses.replace(spec, recipe=dataclasses.replace(
        spec.recipe, epochs=rest, learning_rate=spec.recipe.learning_rate / 10))  # fmt: skip
    second = _train(stage2, user, prepared, verbose, devices)
    user.initial_model = None
    history = second.history | {
        "head_stage": {k: first.history[k] for k in ("loss", "val_loss", "best_epoch")}
    }
    run = dataclasses.replace(second, history=history, wall_time_s=first.wall_time_s + second.wall_time_s)
    extra = {
        "fine_tuned_from": {
            "model": card.name, "sha256": card.sha256, "layers_copied": copied,
            "head": "kept" if head_kept else "new (the targets differ)",
            "normalisation": "re-adapted to this data (training split)",
            "stages": f"head only for {head_epochs} epoch(s) at {spec.recipe.learning_rate:g}, then every layer "
            f"for up to {rest} at {spec.recipe.learning_rate / 10:g} (early stopping on validation loss in each)",
        }
    }  # fmt: skip
    return [run], extra


def _export(spec: ModelSpec, runs: list, prepared: Any, user: Any, staging: Path, chosen: str,
            extra: dict, table: list | None, say: Any) -> cards.Card:  # fmt: skip
    from zoo.tasks.user_table import user_options
    from zoo.training import export_trained

    card = export_trained(spec, runs, prepared, task=user, folder=staging)
    details = (
        dict(card.recipe.details)
        | extra
        | {
            "chosen": chosen,
            "fit_options": user_options(user),
        }
    )
    if "interrupted_at_epoch" in runs[0].history:
        details["interrupted"] = (
            f"Ctrl-C in epoch {runs[0].history['interrupted_at_epoch']}: best weights so far kept"
        )
    card = dataclasses.replace(card, recipe=dataclasses.replace(card.recipe, details=details),
                               cell_comparison=table)  # fmt: skip
    card = cards.write_card(staging, card)
    m = card.test_metrics
    key = card.versus_baseline.details["metric"] if card.versus_baseline else None
    if key:
        say(f"rnnzoo fit: test {key.replace('_', ' ')} {m[key]:.4g}; {card.versus_baseline.verdict}")
    return card
