"""The one training loop: every model of the zoo is fitted, evaluated and exported here.

Keras ``fit`` with gradient clipping, early stopping on the validation split with the best weights restored,
fixed seeds and a progress bar; then the test metrics and baselines, the learning curve, and the card.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from zoo import cards
from zoo.backend import keras
from zoo.builder import build_model, is_causal
from zoo.diagnostics import GradientNormLog, tracked_optimizer
from zoo.distributed import Devices, Placement, data_parallel, float32_policy, process_folder
from zoo.ensemble import stack_members
from zoo.losses import LOSSES
from zoo.registry import ModelSpec
from zoo.step import StepModel, state_spec
from zoo.step.shipped import ENGINE_FILE, ENGINE_META, write_engine
from zoo.tasks import TASKS, Prepared, Task


class EpochBar(keras.callbacks.Callback):
    """One progress bar over epochs (not one per epoch), with the latest losses; closes on early stop."""

    def __init__(self, epochs: int, label: str) -> None:
        super().__init__()
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epochs, desc=label, unit="epoch", dynamic_ncols=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "val_loss")})
        self.bar.update(1)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()


class StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) during ``fit`` ends training after the current batch instead of killing it, so early
    stopping restores the best weights so far and the run is written whole; a second Ctrl-C raises as usual.
    Only in the main thread (signals cannot be caught elsewhere)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: int | None = None
        self._epoch = 0
        self._previous = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._interrupted)

    def _interrupted(self, signum: int, frame: object) -> None:
        import signal

        self.stopped_at = self._epoch + 1
        self.model.stop_training = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        print(f"\ninterrupted in epoch {self.stopped_at}: stopping with the best weights so far "
              "(Ctrl-C again to abort)", flush=True)  # fmt: skip

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_end(self, logs: dict | None = None) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def fit(
    spec: ModelSpec, prepared: Prepared, verbose: int = 1, task: Task | None = None, devices: Devices = None
) -> tuple[keras.Model, dict]:
    """Build and train ``spec``'s model on ``prepared``; return the model (best weights) and its history.

    ``task``: the task object when it is not the registry's ``TASKS[spec.task]`` (a user's table, `zoo.fit`).
    Ctrl-C stops training at the end of the current batch with the best weights so far restored (history key
    ``interrupted_at_epoch``); a second Ctrl-C aborts.

    With ``spec.recipe.refit`` the returned model is a fresh one trained on training + validation data for the
    best epoch count of the validation run (history key ``refit_loss``).
    ``verbose``: 0 silent, 1 one progress bar over epochs, 2 Keras' line per epoch (logs).
    ``devices`` (an int >= 2 or ``"all"``): data-parallel over that many JAX devices (`zoo.distributed`); the
    history then records the placement under ``data_parallel``, and the model returned is a one-device copy."""
    regression = spec.head == "step_regression"
    y_train, y_val = prepared.y_train, prepared.y_val
    # Fit standardised targets; the scale is folded back into the head below. A task's own batches come
    # standardised already (y_train None).
    if regression and y_train is not None:
        y_train = (y_train - prepared.target_mean) / prepared.target_std
        y_val = (y_val - prepared.target_mean) / prepared.target_std
    # A task may hand over batches itself (a keras.utils.PyDataset of (inputs, targets), y_* None), e.g.
    # sequences bucketed by length so little of each batch is padding.
    batched = y_train is None
    if spec.recipe.refit and (batched or prepared.w_train is not None):
        raise ValueError(f"{spec.task}: refit needs arrays without sample weights, not a task's own batches")
    placement = data_parallel(devices, spec.recipe.batch_size)
    interrupt = StopOnInterrupt()
    stop = keras.callbacks.EarlyStopping(
        monitor=spec.recipe.monitor, patience=spec.recipe.patience, restore_best_weights=True, verbose=0
    )
    with placement.scope():  # a no-op on one device
        model = _compiled_model(spec, prepared, task)
        inputs, dropped = placement.fit_inputs(
            prepared.x_train,
            y_train,
            validation_data=prepared.x_val
            if batched
            else (prepared.x_val, y_val) + (() if prepared.w_val is None else (prepared.w_val,)),
            sample_weight=prepared.w_train,  # per-step weights where a task masks steps out of the loss
            batch_size=None if batched else spec.recipe.batch_size,
            shuffle=True,
            class_weight=class_weights(y_train, prepared.n_outputs) if spec.recipe.class_weight else None,
            seed=spec.recipe.seed,
        )
        history = model.fit(
            **inputs,
            epochs=spec.recipe.epochs,
            callbacks=[GradientNormLog(), stop, interrupt]
            + _schedule(spec)
            + ([EpochBar(spec.recipe.epochs, spec.name)] if verbose == 1 else []),
            verbose=0 if verbose == 1 else verbose,
        )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if interrupt.stopped_at is not None:
        hist["interrupted_at_epoch"] = interrupt.stopped_at
    watched = np.asarray(hist[spec.recipe.monitor])
    # The epoch whose weights were restored (EarlyStopping maximises accuracies and minimises losses).
    hist["best_epoch"] = int(np.argmax(watched) if "acc" in spec.recipe.monitor else np.argmin(watched)) + 1
    if spec.recipe.refit:
        model, hist["refit_loss"] = _refit(spec, prepared, hist["best_epoch"], verbose, placement)
    model = placement.local_model(model, lambda: _compiled_model(spec, prepared, task))
    hist.update(placement.details(dropped))
    if regression:
        _fold_target_scale(model.get_layer("head"), prepared.target_mean, prepared.target_std)
    return model, hist


def _schedule(spec: ModelSpec) -> list[keras.callbacks.Callback]:
    """The recipe's learning-rate decay as a callback (none for a fixed rate)."""
    if spec.recipe.lr_decay is None:
        return []
    return [keras.callbacks.LearningRateScheduler(lambda epoch, _: spec.recipe.learning_rate_at(epoch))]


def _compiled_model(spec: ModelSpec, prepared: Prepared, task: Task | None = None) -> keras.Model:
    """A freshly initialised (seeded) model for ``spec``, compiled with the recipe's optimizer and the head's
    loss — per-step heads average the loss over every time step of every sequence."""
    keras.utils.set_random_seed(spec.recipe.seed)
    task = task or TASKS[spec.task]
    model = task.build_model(spec, prepared)  # a task whose model is not one recurrent chain builds its own
    if model is None:
        model = build_model(
            spec.arch,
            spec.head,
            # (a task's own batches carry no shape: its card's preprocessing says the width)
            n_features=prepared.vocab_size
            if spec.arch.embedding
            else getattr(prepared.x_train, "shape", (prepared.preprocessing.get("n_features"),))[-1],
            n_outputs=prepared.n_outputs,
            norm_mean=prepared.norm_mean,
            norm_var=prepared.norm_var,
            name=spec.name.replace("-", "_"),
        )
    # It also records each update's gradient norm before clipping (GradientNormLog puts it in the history).
    optimizer = tracked_optimizer(spec.recipe.optimizer, spec.recipe.learning_rate, spec.recipe.clipnorm)
    loss, metric = LOSSES[spec.head]
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric] if metric else [])
    return model


def _refit(
    spec: ModelSpec, prepared: Prepared, epochs: int, verbose: int, placement: Placement | None = None
) -> tuple[keras.Model, list[float]]:
    """Train a fresh model on training + validation data for ``epochs`` epochs (no early stopping: nothing is
    held out any more); return it and its training loss per epoch."""
    if prepared.x_refit is not None:
        x, y = prepared.x_refit, prepared.y_refit
    else:
        x = np.concatenate([prepared.x_train, prepared.x_val])
        y = np.concatenate([prepared.y_train, prepared.y_val])
    if spec.head == "step_regression":
        y = (y - prepared.target_mean) / prepared.target_std
    placement = placement or Placement()
    with placement.scope():
        model = _compiled_model(spec, prepared)
        inputs, _ = placement.fit_inputs(
            x,
            y,
            batch_size=spec.recipe.batch_size,
            shuffle=True,
            class_weight=class_weights(y, prepared.n_outputs) if spec.recipe.class_weight else None,
            seed=spec.recipe.seed,
        )
        history = model.fit(
            **inputs,
            epochs=epochs,
            callbacks=_schedule(spec) + ([EpochBar(epochs, f"{spec.name} refit")] if verbose == 1 else []),
            verbose=0 if verbose == 1 else verbose,
        )
    return model, [float(v) for v in history.history["loss"]]


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced class weights ``n / (classes * count)`` from integer labels (classes absent get weight 1)."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError("class_weight needs one integer label per sequence (a sequence_classification head)")
    counts = np.bincount(y, minlength=n_classes)
    return {c: float(len(y) / (n_classes * k)) if k else 1.0 for c, k in enumerate(counts)}


def _fold_target_scale(head: keras.layers.Dense, mean: float, std: float) -> None:
    """Make a head fitted on standardised targets emit raw units: y = (xW + b) * std + mean, exactly linear,
    so the exported model stays a plain chain of standard layers (no extra de-normalisation layer)."""
    kernel, bias = head.get_weights()
    head.set_weights([kernel * std, bias * std + mean])


def streaming_parity(model: keras.Model, x: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Largest |difference| between the step engine (`zoo.step`), fed one reading at a time, and Keras run on
    the whole sequences ``x`` — the contract a causal model's card records (must stay ≤ 1e-5). ``valid``
    ``[N, T]`` restricts it to real steps where a task pads sequences of different lengths."""
    diff = np.abs(StepModel.from_keras(model).run(x) - np.asarray(model.predict(x, verbose=0)))
    return float((diff if valid is None else diff[valid]).max())


def save_for_inference(model: keras.Model, path: Path) -> None:
    """Save ``model`` without its optimizer state (Adam's two moments would triple the file; the zoo loads
    models uncompiled). Round-tripping through an uncompiled ``safe_mode`` load also proves the file loads."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / path.name
        model.save(staged)
        keras.models.load_model(staged, safe_mode=True, compile=False).save(path)


def plot_history(history: dict, path: Path, title: str) -> None:
    """Learning curve: training and validation loss per epoch, best epoch marked; below it, where the history
    has them, the gradient norm before clipping per epoch (mean and max) and the share of clipped updates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "members" in history:
        _plot_members(history["members"], path, title)
        return
    grads = "grad_norm_mean" in history
    fig, axes = plt.subplots(
        2 if grads else 1, 1, figsize=(6, 6 if grads else 3.5), sharex=True, squeeze=False
    )
    ax = axes[0, 0]
    ax.plot(history["loss"], label="train")
    ax.plot(history["val_loss"], label="validation")
    if "refit_loss" in history:
        ax.plot(history["refit_loss"], ls=":", label="refit on train + validation")
    ax.axvline(
        history["best_epoch"] - 1, color="grey", ls="--", lw=1, label=f"best epoch {history['best_epoch']}"
    )
    ax.set(xlabel="" if grads else "epoch", ylabel="loss", title=title)
    ax.set_yscale("log")
    ax.legend()
    if grads:
        g = axes[1, 0]
        g.plot(history["grad_norm_mean"], label="gradient norm, mean")
        g.plot(history["grad_norm_max"], ls="--", label="gradient norm, max")
        g.set(xlabel="epoch", ylabel="global norm before clipping", yscale="log")
        clipped = g.twinx()
        clipped.plot(history["clip_fraction"], color="grey", lw=1, label="clipped updates")
        clipped.set(ylabel="share of updates clipped", ylim=(0, 1.05))
        g.legend(loc="upper left", fontsize=8)
        clipped.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_members(members: list[dict], path: Path, title: str) -> None:
    """An ensemble's learning curves: each member's training (solid) and validation (dashed) loss."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, h in enumerate(members):
        colour = f"C{i}"
        ax.plot(h["loss"], color=colour, label=f"seed {h['seed']}: train")
        ax.plot(h["val_loss"], color=colour, ls="--", label=f"validation (best epoch {h['best_epoch']})")
    ax.set(xlabel="epoch", ylabel="loss", title=f"{title}: {len(members)} members", yscale="log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def device_name() -> str:
    """Where training ran, for the card: the accelerator if the backend used one, else the CPU."""
    if keras.backend.backend() == "jax":
        import jax

        dev = jax.devices()[0]
        if dev.platform != "cpu":
            return f"{dev.platform.upper()}: {dev.device_kind}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores; no GPU)"


@dataclass(frozen=True)
class Run:
    """One fitted model with its history, its seed, and where and in how many seconds ``fit`` ran."""

    model: keras.Model
    history: dict
    wall_time_s: float
    seed: int
    backend: str
    device: str


def member_specs(spec: ModelSpec) -> list[ModelSpec]:
    """The single-model specs an ensemble recipe (``members`` > 1) trains: seeds ``seed``, ``seed + 1``, ...;
    ``[spec]`` for one model."""
    if spec.recipe.members == 1:
        return [spec]
    return [
        replace(spec, recipe=replace(spec.recipe, seed=spec.recipe.seed + i, members=1))
        for i in range(spec.recipe.members)
    ]


def train_and_export(
    spec: ModelSpec, out_root: Path | None = None, verbose: int = 1, devices: Devices = None
) -> cards.Card:
    """Train ``spec`` end to end and write ``<out_root>/<name>/`` (model, card, history, plots). An ensemble
    recipe trains its members one after another, each on its own seed's data preparation (augmentation).
    ``devices``: data-parallel training (`fit`); in a several-process run, process K > 0 writes its copy to
    ``<out_root>/process-K/<name>/``."""
    task = TASKS[spec.task]
    placement = data_parallel(devices, spec.recipe.batch_size)  # refuse (or join the hosts) before the data
    if placement.process_id:
        out_root = process_folder(out_root or cards.SAVED_MODELS)
    runs = []
    for member in member_specs(spec):
        prepared = task.prepare(member.recipe.seed, member.head, member.recipe.batch_size)
        start = time.perf_counter()
        model, history = fit(member, prepared, verbose=verbose, devices=devices)
        wall = time.perf_counter() - start
        device = placement.device_label(device_name())
        runs.append(Run(model, history, wall, member.recipe.seed, keras.backend.backend(), device))
        if len(runs) == 1:
            first = prepared  # the card describes the first member's preparation (the others differ by seed)
    with float32_policy():  # what is shipped, stacked and measured is float32, however it was trained
        return export_trained(spec, runs, first, out_root)


def export_trained(
    spec: ModelSpec,
    runs: list[Run],
    prepared: Prepared,
    out_root: Path | None = None,
    task: Task | None = None,
    folder: Path | None = None,
) -> cards.Card:
    """Evaluate the fitted model — or, with several runs, the ensemble stacking them (`zoo.ensemble`) — and
    write its folder (``folder``, default ``<out_root>/<name>``): model, history, learning curve, test plot,
    assets and card. ``task``: as in `fit`."""
    task = task or TASKS[spec.task]
    folder = folder or cards.model_dir(spec.name, out_root)
    folder.mkdir(parents=True, exist_ok=True)
    if len(runs) == 1:
        model, history = runs[0].model, runs[0].history
    else:
        model = stack_members([r.model for r in runs], spec.name.replace("-", "_"))
        history = {"members": [r.history | {"seed": r.seed} for r in runs]}
    wall = sum(r.wall_time_s for r in runs)
    save_for_inference(model, folder / cards.MODEL_FILE)
    (folder / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_history(history, folder / "learning_curve.png", spec.name)
    extra = task.plot(model, folder / "test_plot.png")
    assets = cards.write_assets(folder, prepared.assets)
    dataset = dict(prepared.dataset)
    data_licence = dataset.pop(
        "licence"
    )  # every dataset states its terms; the card keeps them beside the weights'
    metrics, baselines = task.evaluate(model, prepared, spec.head), task.baselines(prepared)
    # The step engine runs one chain of layers; an ensemble (several chains side by side) answers per window.
    streamable = is_causal(model) and task.streamable and len(runs) == 1
    versus = task.compare(metrics, baselines)  # in words, whether and by how much the model beats them
    card = cards.Card(
        name=spec.name,
        summary=spec.summary,
        task=spec.task,
        kind=task.kind,
        head=spec.head,
        architecture=spec.arch,
        streaming=cards.Streaming(
            "step", max_abs_diff_vs_keras=streaming_parity(model, task.test_data()[0], task.valid_steps())
        )
        if streamable
        else cards.Streaming("window", window=prepared.preprocessing.get("sequence_length")),
        state_spec=state_spec(model, task.step_input(prepared.preprocessing)),
        dataset=cards.Dataset(dataset.pop("name"), dataset.pop("origin"), details=dataset),
        split=prepared.split,
        preprocessing=cards.typed(cards.Preprocessing, prepared.preprocessing),
        test_metrics=metrics,
        baselines=baselines,
        recipe=cards.typed(
            cards.Training,
            {
                **spec.recipe.to_dict(),
                "epochs_run": len(runs[0].history["loss"]),
                "best_epoch": runs[0].history["best_epoch"],
                "early_stopping": f"{spec.recipe.monitor}, patience {spec.recipe.patience}, best weights restored",
                **(
                    {
                        "refit_on": f"training + validation data ({len(runs[0].history['refit_loss'])} epochs, the "
                        "validation run's best): the shipped model never saw the test split, and no data was "
                        "held out from it"
                    }
                    if spec.recipe.refit
                    else {}
                ),
                **(
                    {
                        "members_trained": [
                            {
                                "seed": r.seed,
                                "epochs_run": len(r.history["loss"]),
                                "best_epoch": r.history["best_epoch"],
                                "wall_time_s": round(r.wall_time_s, 1),
                                "device": r.device,
                            }
                            for r in runs
                        ],
                        "ensemble": f"{len(runs)} models trained alike (seeds {runs[0].seed}-{runs[-1].seed}, "
                        "each as `rnnzoo train NAME --seed N --members 1` trains it) stacked by "
                        "zoo.ensemble.stack_members; epochs_run and best_epoch are the first member's",
                    }
                    if len(runs) > 1
                    else {}
                ),
                **{k: runs[0].history[k] for k in ("data_parallel", "precision") if k in runs[0].history},
                "backend": runs[0].backend,  # where the (first) model was trained, not where it was stacked
                "device": runs[0].device,
                "wall_time_s": round(wall, 1),
            },
        ),
        licence=cards.Licence(data=data_licence, weights=cards.WEIGHTS_LICENCE),
        keras_version=keras.__version__,
        parameters=int(model.count_params()),
        file_size_bytes=0,  # stamped by write_card, with the sha256
        files={"learning_curve": "learning_curve.png", "history": "history.json"}
        | ({"test_plot": "test_plot.png"} if extra is not None else {}),
        sha256="",
        assets=assets,  # e.g. a tokenizer's vocabulary: verified by sha256 whenever the model is loaded
        versus_baseline=None if versus is None else cards.typed(cards.Versus, versus),
    )
    card = cards.write_card(folder, card)
    # A model served step by step ships its engine, read from these very weights (`zoo.step.shipped`): serving
    # then needs numpy alone. An engine left from an earlier model in this folder goes.
    if streamable:
        write_engine(folder, StepModel.from_keras(model), card.sha256)
    else:
        for stale in (ENGINE_FILE, ENGINE_META):
            (folder / stale).unlink(missing_ok=True)
    return card
