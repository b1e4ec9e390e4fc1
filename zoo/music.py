"""Generate music with a shipped chorale model: step by step, explicit state, seeded per-key sampling.

The model is advanced one frame at a time by `zoo.step.StepModel` (numpy, the same outputs as Keras on the
whole sequence), so generating ``n`` frames costs ``n`` steps, not ``n`` passes over a growing sequence. Each
frame is drawn key by key from Bernoulli distributions whose log-odds are divided by the temperature; an optional
cap keeps only the most probable of the drawn keys. Output: a piano roll, a MIDI file and a PNG picture of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from zoo import loaders
from zoo.data import music

if TYPE_CHECKING:
    from zoo.cards import Card
    from zoo.step import StepModel


def _prime_roll(card: Card, prime: str, frames: int) -> np.ndarray:
    """The opening ``frames`` of the named test chorale, or a ValueError listing the valid names."""
    names = card.split["test_chorale_names"]
    key = prime.strip().lower().replace(" ", "")
    key = key if key.startswith("bwv") else f"bwv{key}"
    if key not in names:
        shown = ", ".join(names[:6])
        raise ValueError(
            f"unknown prime {prime!r}: not a test chorale of {card.name}; choose one of {shown}, … "
            f"({len(names)} in all: card split.test_chorale_names)"
        )
    test = music.load_split("test", card.preprocessing.details["grid_quarter_notes"])
    return test.rolls[test.names.index(key)][:frames]


def sample_frame(
    probs: np.ndarray, rng: np.random.Generator, temperature: float, max_notes: int | None
) -> np.ndarray:
    """Draw one frame ``[88]`` uint8 from per-key probabilities, log-odds divided by ``temperature``."""
    p = np.clip(np.asarray(probs, "float64"), 1e-7, 1 - 1e-7)
    logits = (np.log(p) - np.log1p(-p)) / temperature
    p = 0.5 * (np.tanh(0.5 * logits) + 1.0)
    on = rng.random(p.shape) < p
    if max_notes is not None and on.sum() > max_notes:
        # Keep the most probable of the drawn keys; ties broken by key order (stable sort) for reproducibility.
        drawn = np.flatnonzero(on)
        keep = drawn[np.argsort(-p[drawn], kind="stable")[:max_notes]]
        on = np.zeros_like(on)
        on[keep] = True
    return on.astype(np.uint8)


def compose(
    name: str,
    steps: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
    prime: str | None = None,
    prime_bars: int = 2,
    max_notes: int | None = None,
) -> np.ndarray:
    """Generate ``steps`` piano-roll frames with a shipped chorale model; returns ``[P + steps, 88]`` uint8.

    Args:
        name: a shipped generation model (``chorales-gru``…).
        steps: frames to generate (8 frames = one 4/4 bar on the eighth-note grid).
        temperature: > 0; 1 samples the model's own probabilities, lower is more conservative.
        seed: the same seed (and model) gives the same frames.
        prime: a test chorale (``"bwv437"``) whose opening ``prime_bars`` bars are fed first and returned as
            the first ``P`` frames; None starts from silence (``P = 0``).
        prime_bars: bars of the prime to use.
        max_notes: at most this many keys per generated frame (None: no cap).
    """
    from zoo.registry import Capability, require
    from zoo.step import StepModel

    require(name, Capability.COMPOSE)
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be a positive whole number of frames (got {steps!r})")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number above 0 (got {temperature!r})")
    if max_notes is not None and max_notes < 1:
        raise ValueError(f"max_notes must be at least 1 (got {max_notes!r})")
    if prime_bars < 1:
        raise ValueError(f"prime_bars must be at least 1 (got {prime_bars!r})")
    card = loaders.card(name)
    per_bar = card.preprocessing.details["steps_per_bar"]
    primer = (
        _prime_roll(card, prime, prime_bars * per_bar) if prime else np.zeros((0, music.N_KEYS), np.uint8)
    )
    roll, _ = generate(StepModel.from_keras(loaders.load(name)), primer, steps, temperature, seed, max_notes)
    return roll


def generate(
    stepper: StepModel,
    primer: np.ndarray,
    steps: int,
    temperature: float = 1.0,
    seed: int = 0,
    max_notes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``primer`` ``[P, 88]`` after the silent start frame, then sample ``steps`` frames one at a time.

    Returns the roll ``[P + steps, 88]`` uint8 and the probabilities ``[steps, 88]`` each generated frame was
    drawn from (before the temperature) — the rows Keras would output at steps ``P..P+steps-1`` of the roll.
    """
    rng = np.random.default_rng(seed)
    state = stepper.initial_state(1)
    x = np.zeros((1, music.N_KEYS))  # the silent start frame every chorale was trained with
    for frame in primer:  # teacher-forced: the model's state absorbs the prime
        _, state = stepper.step(x, state)
        x = frame[None].astype("float64")
    frames, probs = [], []
    for _ in range(steps):
        p, state = stepper.step(x, state)
        frame = sample_frame(p[0], rng, temperature, max_notes)
        frames.append(frame)
        probs.append(p[0])
        x = frame[None].astype("float64")
    roll = np.vstack([np.asarray(primer, np.uint8).reshape(-1, music.N_KEYS), np.stack(frames)])
    return roll.astype(np.uint8), np.stack(probs)


def count_notes(roll: np.ndarray) -> int:
    """Notes in a piano roll as MIDI writes them: one per run of consecutive frames of a key."""
    roll = np.asarray(roll) > 0
    starts = roll[:1].sum() + (roll[1:] & ~roll[:-1]).sum()
    return int(starts)


def write_midi(roll: np.ndarray, path: str | Path, grid: float = music.GRID) -> Path:
    """Write a piano roll as a MIDI file (one note per run of frames of a key; organ, 80 quarter notes/min)."""
    return music.roll_to_midi(roll, path, grid=grid)


def plot_roll(
    roll: np.ndarray, path: str | Path, title: str = "", prime_frames: int = 0, steps_per_bar: int = 8
) -> Path:
    """Save a PNG piano roll: time across, pitch up, the prime (if any) shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roll = np.asarray(roll)
    fig, ax = plt.subplots(figsize=(max(6.0, min(18.0, len(roll) / 12)), 4))
    ax.imshow(roll.T, aspect="auto", origin="lower", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    used = np.flatnonzero(roll.any(0))
    low, high = (used[0], used[-1]) if len(used) else (30, 60)
    ax.set_ylim(low - 4, high + 4)
    ticks = [k for k in range(low - 4, high + 5) if (k + music.LOWEST_MIDI) % 12 == 0]  # the Cs
    ax.set_yticks(ticks, [f"C{(k + music.LOWEST_MIDI) // 12 - 1}" for k in ticks])
    for bar in range(0, len(roll) + 1, steps_per_bar):
        ax.axvline(bar - 0.5, color="tab:blue", lw=0.4, alpha=0.4)
    if prime_frames:
        ax.axvspan(-0.5, prime_frames - 0.5, color="tab:orange", alpha=0.15, label="prime")
        ax.legend(loc="upper right", fontsize=8)
    ax.set(xlabel="eighth notes (bars of 4/4 marked)", ylabel="pitch", title=title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
