"""Gradient flow through time, measured: SimpleRNN vs LSTM vs GRU, and what clipping does.

Three experiments, same sizes and budgets for every cell, all measured in this run:

1. **Recall the first symbol** (generated here): a sequence of T random symbols (one-hot, 8 of them); after the
   last step the model must name the *first* one, so the answer depends only on step 1. For each cell and
   T in --lengths: ‖∂L/∂h_t‖ per step at initialisation (`zoo.diagnostics.gradient_flow`), then test accuracy
   after the same training budget (chance 1/8): 64 units, 3,000 sequences, 20 epochs, Adam 3e-3, clipnorm 1.0.
2. **A real zoo task**: the shipped activity models (one recipe, three cells, BasicMotions test data):
   ‖∂L/∂h_t‖ of the last step's loss back to every step, trained weights and a fresh initialisation.
3. **Clipping**: a SimpleRNN with ReLU and an orthogonal recurrent matrix of gain 1.4 (an exploding
   initialisation), trained on the recall task at T=50 with clipnorm off / 1.0
   / 0.1 (32 units, Adam 1e-2): loss per epoch, gradient norm before clipping, and how often clipping fired (the
   training loop's own record, `zoo.diagnostics.tracked_optimizer`).

Writes benchmarks/results/gradient_flow.json and three PNGs beside it. Takes ~10 min on 2 CPU cores:

    KERAS_BACKEND=jax python benchmarks/gradient_flow.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from zoo.backend import keras
from zoo.diagnostics import GradientNormLog, gradient_flow, plot_flows, tracked_optimizer

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
SYMBOLS = 8


def recall_data(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of ``length`` random one-hot symbols; the label is the first symbol."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, SYMBOLS, size=(n, length))
    return np.eye(SYMBOLS, dtype="float32")[ids], ids[:, 0]


def recall_model(cell: str, units: int, **layer_kwargs: object) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((None, SYMBOLS)),
            CELLS[cell](units, **layer_kwargs),
            keras.layers.Dense(SYMBOLS, activation="softmax"),
        ]
    )


def train(model: keras.Model, data: tuple, epochs: int, clipnorm: float | None, lr: float = 3e-3) -> dict:
    (x, y), (xt, yt) = data
    model.compile(
        optimizer=tracked_optimizer("adam", lr, clipnorm),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    hist = model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=[GradientNormLog()]).history
    _, acc = model.evaluate(xt, yt, verbose=0, batch_size=256)
    history = {k: [float(v) for v in vals] for k, vals in hist.items()}
    return {
        "test_accuracy": float(acc),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "history": history,
    }


def experiment_recall(lengths: list[int], units: int, epochs: int, n_train: int) -> dict:
    out: dict = {
        "units": units,
        "epochs": epochs,
        "train_sequences": n_train,
        "chance": 1 / SYMBOLS,
        "runs": [],
    }
    curves_at_init = {}
    for length in lengths:
        data = (recall_data(n_train, length, seed=1), recall_data(500, length, seed=2))
        for cell in CELLS:
            keras.utils.set_random_seed(0)
            model = recall_model(cell, units)
            flow = gradient_flow(model, data[1][0][:64], data[1][1][:64], "sequence_classification")
            if length == max(lengths):
                curves_at_init[cell] = flow.norms[0]
            result = train(model, data, epochs, clipnorm=1.0)
            run = {"cell": cell, "length": length, "decay_decades_at_init": flow.decay_decades()[0]}
            run |= {k: v for k, v in result.items() if k != "history"}
            print(
                f"recall T={length:4d} {cell:6s} acc {run['test_accuracy']:.3f}  "
                f"init decay {run['decay_decades_at_init']:+.1f} decades  {run['wall_time_s']} s",
                flush=True,
            )
            out["runs"].append(run)
    plot_flows(
        curves_at_init,
        RESULTS / "gradient_flow_recall_init.png",
        f"recall task, T={max(lengths)}, fresh {units}-unit cells: ‖∂L/∂h_t‖",
    )
    return out


def experiment_zoo() -> dict:
    import zoo

    out = {}
    curves = {}
    for cell in CELLS:
        name = f"activity-{cell}-causal"
        x, y = zoo.test_data(name)
        model = zoo.load(name)
        trained = gradient_flow(model, x, y, "step_classification")
        keras.utils.set_random_seed(0)
        fresh = gradient_flow(keras.models.clone_model(model), x, y, "step_classification")
        out[name] = {
            "trained_decay_decades": trained.decay_decades(),
            "fresh_decay_decades": fresh.decay_decades(),
            "layers": trained.layers,
        }
        curves[f"{cell} trained"] = trained.norms[0]
        curves[f"{cell} fresh"] = fresh.norms[0]
        print(
            f"zoo {name}: layer-1 decay trained {trained.decay_decades()[0]:+.1f}, "
            f"fresh {fresh.decay_decades()[0]:+.1f} decades",
            flush=True,
        )
    plot_flows(
        curves,
        RESULTS / "gradient_flow_activity.png",
        "BasicMotions test data, first recurrent layer: ‖∂L/∂h_t‖ of the last step's loss",
    )
    return out


def experiment_clipping(epochs: int, n_train: int) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = (recall_data(n_train, 50, seed=1), recall_data(500, 50, seed=2))
    out = {}
    fig, (loss_ax, norm_ax) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    for clipnorm in (None, 1.0, 0.1):
        keras.utils.set_random_seed(0)
        model = recall_model(
            "simple", 32, activation="relu", recurrent_initializer=keras.initializers.Orthogonal(gain=1.4)
        )
        result = train(model, data, epochs, clipnorm, lr=1e-2)
        h = result["history"]
        label = f"clipnorm {clipnorm}" if clipnorm else "no clipping"
        out[label] = {
            "test_accuracy": result["test_accuracy"],
            "loss_per_epoch": h["loss"],
            "grad_norm_mean_per_epoch": h["grad_norm_mean"],
            "grad_norm_max_per_epoch": h["grad_norm_max"],
            "clip_fraction_per_epoch": h["clip_fraction"],
            "non_finite_loss_epochs": int(sum(not np.isfinite(v) for v in h["loss"])),
        }
        print(
            f"clipping {label:14s} acc {result['test_accuracy']:.3f}  final loss {h['loss'][-1]:.3g}  "
            f"max grad norm {max(h['grad_norm_max']):.3g}  clipped {np.mean(h['clip_fraction']):.0%}",
            flush=True,
        )
        epochs_axis = np.arange(1, len(h["loss"]) + 1)
        loss_ax.plot(epochs_axis, h["loss"], label=label)
        norm_ax.plot(epochs_axis, h["grad_norm_max"], label=f"{label} (max)")
    loss_ax.set(
        ylabel="training loss",
        yscale="log",
        title="SimpleRNN(ReLU), orthogonal recurrent init gain 1.4, recall T=50",
    )
    norm_ax.set(xlabel="epoch", ylabel="gradient norm before clipping", yscale="log")
    loss_ax.legend(fontsize=8)
    norm_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "gradient_flow_clipping.png", dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    global RESULTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[20, 50, 100, 200], help="recall task lengths")
    ap.add_argument("--units", type=int, default=64, help="recall task: units of every cell")
    ap.add_argument("--epochs", type=int, default=20, help="training epochs per run")
    ap.add_argument("--train", type=int, default=3000, help="training sequences per recall run")
    ap.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for the JSON and PNGs (default results/)"
    )
    args = ap.parse_args(argv)
    RESULTS = args.out
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = {
        "backend": keras.backend.backend(),
        "recall": experiment_recall(args.lengths, args.units, args.epochs, args.train),
        "activity": experiment_zoo(),
        "clipping": experiment_clipping(args.epochs, args.train),
    }
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    (RESULTS / "gradient_flow.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS / 'gradient_flow.json'} in {result['wall_time_s']} s")


if __name__ == "__main__":
    main()
