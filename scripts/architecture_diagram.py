"""Draw docs/images/architecture.svg: the layers of rnn-zoo and the three data paths through them.

    .venv/bin/python scripts/architecture_diagram.py            # writes docs/images/architecture.svg
    .venv/bin/python scripts/architecture_diagram.py out.png    # any format matplotlib writes

Layers: the `rnnzoo` command line above both packages; `streaming/` built on `zoo/` (its step engine and
cards), never the reverse; `streaming/core.py` shared by the MQTT service and the JetStream worker. Paths:
(1) a reading through MQTT, (2) a reading through JetStream, (3) a training run. docs/architecture.md
explains each numbered arrow; change the two together.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "architecture.svg"
W, H = 20.9, 10.6  # drawing units; the figure is W x H * SCALE inches
SCALE = 0.62

INK = "#222222"
LAYER = "#555555"
MQTT = "#1f6fb4"  # path 1
JETSTREAM = "#2e8b3a"  # path 2
TRAINING = "#d9771e"  # path 3
FILL = {"cli": "#eeeeee", "zoo": "#fbf3e6", "streaming": "#e9f1fa", "box": "#ffffff", "ext": "#f4f4f4"}


def box(ax, x0, y0, x1, y1, title, body="", fill=FILL["box"], edge=INK, size=8.5, lw=1.0, dashed=False):
    ax.add_patch(
        FancyBboxPatch(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            fc=fill,
            ec=edge,
            lw=lw,
            ls="--" if dashed else "-",
        )
    )
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if body:
        ax.text(cx, cy + 0.17, title, ha="center", va="bottom", fontsize=size, weight="bold", color=INK)
        ax.text(cx, cy + 0.1, body, ha="center", va="top", fontsize=size - 1.5, color=INK, linespacing=1.25)
    else:
        ax.text(cx, cy, title, ha="center", va="center", fontsize=size, weight="bold", color=INK)


def frame(ax, x0, y0, x1, y1, label, fill):
    ax.add_patch(
        FancyBboxPatch(
            (x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0.02,rounding_size=0.2", fc=fill, ec=LAYER, lw=1.4
        )
    )
    ax.text(
        x0 + 0.2,
        y1 - 0.18,
        label,
        ha="left",
        va="top",
        fontsize=11,
        weight="bold",
        color=LAYER,
        family="monospace",
    )


def arrow(ax, a, b, color, lw=1.6, rad=0.0, style="-|>", ls="-"):
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            arrowstyle=style,
            mutation_scale=11,
            color=color,
            lw=lw,
            ls=ls,
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=2,
            shrinkB=2,
        )
    )


def tag(ax, x, y, n, color):
    """A numbered path marker."""
    ax.text(
        x,
        y,
        str(n),
        ha="center",
        va="center",
        fontsize=7.5,
        weight="bold",
        color="white",
        bbox={"boxstyle": "circle,pad=0.22", "fc": color, "ec": color},
    )


def note(ax, x, y, text, color, ha="center", size=6.8):
    ax.text(x, y, text, ha=ha, va="center", fontsize=size, color=color, family="monospace")


def draw() -> plt.Figure:
    fig = plt.figure(figsize=(W * SCALE, H * SCALE))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)
    ax.axis("off")

    # Layer 1: the command line, above both packages.
    box(
        ax,
        0.3,
        9.0,
        15.6,
        10.3,
        "rnnzoo — the command line (rnnzoo/cli.py)",
        "list · info · train · fit · evaluate · export · serve · worker · demo",
        fill=FILL["cli"],
        size=10,
    )

    # Layer 2a: zoo/, the models.
    frame(ax, 0.3, 1.9, 7.7, 8.5, "zoo/", FILL["zoo"])
    box(
        ax,
        0.6,
        6.8,
        7.4,
        7.7,
        "facade: zoo/__init__.py",
        "load · card · predictor · fit · train · export · …",
    )
    box(ax, 0.6, 4.9, 2.2, 6.2, "registry.py", "names,\nrecipes", size=7.5)
    box(ax, 2.3, 4.9, 3.9, 6.2, "data/ tasks/", "datasets,\nsplits, metrics", size=7.5)
    box(ax, 4.0, 4.9, 5.6, 6.2, "builder.py", "the Keras\nmodel", size=7.5)
    box(ax, 5.7, 4.9, 7.4, 6.2, "training.py\nfit.py", "Keras fit,\nbaselines", size=7.5)
    box(ax, 0.6, 2.2, 3.8, 4.2, "cards.py", "card.json: metrics, baselines,\nlicence, state spec, sha256")
    box(ax, 4.1, 2.2, 7.4, 4.2, "step.py", "StepModel: (y, s') = step(x, s)\nnumpy, float64, equal to Keras")

    # Layer 2b: streaming/, built on zoo/.
    frame(ax, 8.4, 1.9, 15.6, 8.5, "streaming/", FILL["streaming"])
    box(
        ax,
        8.7,
        3.4,
        11.4,
        7.7,
        "core.py",
        "shared by both\ntransports:\n\nDevicePolicy\nstep_readings\n(waves, finite guard)\nPredictionEncoder\nStats",
    )
    box(ax, 11.9, 5.9, 15.3, 7.7, "service.py", "Service: MQTT, one thread,\nmicro-batches per device wave")
    box(ax, 11.9, 3.4, 15.3, 5.2, "worker.py", "Worker: JetStream partitions,\nleases, checkpoint then ack")
    box(ax, 8.7, 2.2, 15.3, 3.0, "state.py StateTable  ·  models.py served model  ·  checkpoint.py", size=7.5)

    # Outside the repository's code.
    box(ax, 17.2, 9.0, 20.6, 10.3, "devices", "sensors, phones, replays", fill=FILL["ext"])
    box(ax, 17.2, 5.9, 20.0, 7.7, "MQTT broker", "Mosquitto, amqtt,\nHome Assistant's", fill=FILL["ext"])
    box(
        ax,
        17.2,
        3.4,
        20.0,
        5.2,
        "NATS JetStream",
        "a stream per\npartition, KV\nleases, checkpoints",
        fill=FILL["ext"],
    )
    box(
        ax,
        0.3,
        0.3,
        7.7,
        1.3,
        "saved_models/<name>/",
        "model.keras · card.json · assets (verified by sha256)",
        fill=FILL["ext"],
    )

    # Dependencies: one way, downwards and leftwards.
    arrow(ax, (4.0, 9.0), (4.0, 8.5), LAYER, lw=2.2)
    arrow(ax, (12.0, 9.0), (12.0, 8.5), LAYER, lw=2.2)
    arrow(ax, (8.7, 2.6), (7.4, 2.6), LAYER, lw=2.2)
    note(ax, 8.05, 2.1, "imports", LAYER, size=7)

    # (1) A reading through MQTT.
    arrow(ax, (18.6, 9.0), (18.6, 7.7), MQTT)
    tag(ax, 18.25, 8.35, 1, MQTT)
    note(ax, 16.4, 7.2, "sensors/<d>/imu", MQTT)
    arrow(ax, (17.2, 6.95), (15.3, 6.95), MQTT)
    arrow(ax, (11.9, 6.95), (11.4, 6.95), MQTT)
    arrow(ax, (15.3, 6.35), (17.2, 6.35), MQTT)
    note(ax, 16.25, 6.1, "predictions/<d>/<m>", MQTT, size=6)

    # (2) A reading through JetStream.
    ax.plot([20.3, 20.3], [9.0, 4.3], color=JETSTREAM, lw=1.6)  # down past the MQTT broker, then into NATS
    arrow(ax, (20.32, 4.3), (20.0, 4.3), JETSTREAM)
    tag(ax, 20.3, 8.35, 2, JETSTREAM)
    note(ax, 16.25, 4.75, "part.<p>.sensors.<d>.imu", JETSTREAM, size=6)
    arrow(ax, (17.2, 4.5), (15.3, 4.5), JETSTREAM)
    arrow(ax, (11.9, 4.5), (11.4, 4.5), JETSTREAM)
    arrow(ax, (15.3, 3.85), (17.2, 3.85), JETSTREAM)
    note(ax, 16.25, 3.6, "predictions.<d>.<m>", JETSTREAM, size=6)

    # Both transports step through core.py into the zoo's step engine.
    arrow(ax, (8.7, 3.8), (7.4, 3.8), INK, lw=1.6, style="<|-|>")
    note(ax, 8.05, 4.05, "step", INK, size=7)

    # (3) A training run: the CLI's train/fit → facade → registry → data → builder → training → card → folder.
    arrow(ax, (2.0, 9.0), (2.0, 7.7), TRAINING)
    tag(ax, 1.6, 8.35, 3, TRAINING)
    arrow(ax, (1.4, 6.8), (1.4, 6.2), TRAINING)
    for x0, x1 in ((2.2, 2.3), (3.9, 4.0), (5.6, 5.7)):
        arrow(ax, (x0 - 0.05, 5.55), (x1 + 0.05, 5.55), TRAINING, lw=1.3)
    arrow(ax, (6.5, 4.9), (3.2, 4.2), TRAINING, rad=-0.15)
    arrow(ax, (0.95, 2.2), (0.95, 1.3), TRAINING)
    note(ax, 1.25, 1.65, "writes", TRAINING, ha="left", size=7)
    # …and the folder is what both transports serve (models.py reads the card, step.py the weights).
    arrow(ax, (7.7, 0.8), (12.0, 2.2), TRAINING, rad=0.2, ls="--", lw=1.2)
    note(ax, 10.6, 1.05, "served from", TRAINING, size=7)

    # Legend.
    for i, (color, text) in enumerate(
        (
            (MQTT, "1  a reading through MQTT"),
            (JETSTREAM, "2  a reading through JetStream"),
            (TRAINING, "3  a training run"),
            (LAYER, "grey: imports (one way)"),
        )
    ):
        ax.text(13.6 + (i % 2) * 3.6, 1.15 - (i // 2) * 0.55, text, fontsize=7.5, color=color, weight="bold")
    return fig


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else OUT
    plt.rcParams["svg.hashsalt"] = "rnnzoo"  # the same ids every run: a redraw changes the file only if the
    plt.rcParams["svg.fonttype"] = "path"  # picture changes, and the text looks alike in every browser
    fig = draw()
    meta = {"Date": None} if out.suffix == ".svg" else {}
    fig.savefig(out, metadata=meta, dpi=150)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
