"""Polyphonic music generation: predict the next 88-key piano-roll frame of a Bach chorale.

Each chorale is read with one silent frame in front, so the model predicts every frame of the chorale, the first
one from silence: inputs are frames ``0..t`` (with the silent start), the target is frame ``t + 1``. Training uses
fixed-length crops of the training chorales (optionally transposed); the test metric is the benchmark's negative
log-likelihood per frame — binary cross-entropy summed over the 88 keys, averaged over every frame of every whole
test chorale (nats, probabilities clipped to [1e-7, 1 - 1e-7] exactly as in the training loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.backend import keras
from zoo.data import music
from zoo.tasks.base import Prepared, Task

# Bai, Kolter & Koltun (2018), "An Empirical Evaluation of Generic Convolutional and Recurrent Networks for
# Sequence Modeling", Table 1, JSB Chorales, NLL per frame (lower is better).
PUBLISHED_JSB = {"TCN": 8.10, "GRU": 8.43, "LSTM": 8.45, "RNN": 8.91}
PUBLISHED_NOTE = (
    "Bai et al. 2018 on the JSB Chorales benchmark files (Boulanger-Lewandowski et al. 2012), which have their "
    "own train/validation/test split and frame grid. Our split (by chorale, seed {seed}), eighth-note grid and "
    "de-duplication differ, so these numbers are a reference point, not a like-for-like comparison."
)
_CLIP = 1e-7  # the training loss's clip: evaluation must measure the same quantity


def nll_per_frame(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Binary cross-entropy summed over keys for every frame: ``[..., 88]`` -> ``[...]`` (nats)."""
    p = np.clip(np.asarray(probs, "float64"), _CLIP, 1 - _CLIP)
    t = np.asarray(target, "float64")
    return -(t * np.log(p) + (1 - t) * np.log1p(-p)).sum(-1)


def with_start(roll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A chorale as (inputs, targets), each ``[T, 88]`` float32: inputs are the silent start + frames 0..T-2."""
    seq = np.vstack([np.zeros((1, roll.shape[1]), roll.dtype), roll]).astype("float32")
    return seq[:-1], seq[1:]


@dataclass(frozen=True)
class ChoraleTask(Task):
    """Next-frame prediction on Bach chorales, trained on crops, evaluated on whole test chorales.

    Args:
        grid: quarter notes per frame (0.5: an eighth note).
        crop: frames per training / validation crop (truncated back-propagation through time).
        stride: frames between the starts of consecutive training crops.
        transpositions: semitone shifts added to the *training* chorales only (0 is the original); a shift that
            would push a note off the 88 keys is skipped for that chorale.
    """

    grid: float = music.GRID
    crop: int = 64
    stride: int = 8
    transpositions: tuple[int, ...] = (0,)
    kind: str = "generation"
    heads: tuple[str, ...] = ("step_multilabel",)

    def chorales(self, split: str) -> music.Chorales:
        """The encoded chorales of one split (cached after the first parse)."""
        return music.load_split(split, self.grid)

    def _crops(self, rolls: list[np.ndarray], stride: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for roll in rolls:
            x, y = with_start(roll)
            if len(x) < self.crop:  # too short for one crop: none in this corpus (shortest is 64 frames)
                continue
            starts = list(range(0, len(x) - self.crop + 1, stride))
            if starts[-1] != len(x) - self.crop:
                starts.append(len(x) - self.crop)  # the chorale's ending is in a crop too
            xs += [x[s : s + self.crop] for s in starts]
            ys += [y[s : s + self.crop] for s in starts]
        return np.stack(xs), np.stack(ys)

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Whole test chorales ``[N, T_max, 88]`` zero-padded at the end, and their next-frame targets, which
        are -1 past each chorale's end (no target there; a causal model's earlier outputs are unaffected)."""
        pairs = [with_start(r) for r in self.chorales("test").rolls]
        t_max = max(len(x) for x, _ in pairs)
        x = np.zeros((len(pairs), t_max, music.N_KEYS), "float32")
        y = np.full((len(pairs), t_max, music.N_KEYS), -1.0, "float32")
        for i, (xi, yi) in enumerate(pairs):
            x[i, : len(xi)], y[i, : len(yi)] = xi, yi
        return x, y

    def valid_steps(self) -> np.ndarray:
        """``[N, T]``: True where ``test_data`` holds a real frame rather than end padding."""
        return self.test_data()[1][..., 0] >= 0

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        train, val, test = self.chorales("train"), self.chorales("validation"), self.chorales("test")
        augmented = [
            t for r in train.rolls for s in self.transpositions if (t := music.transpose(r, s)) is not None
        ]
        x_tr, y_tr = self._crops(augmented, self.stride)
        x_va, y_va = self._crops(val.rolls, self.crop // 2)
        n_keys = music.N_KEYS
        return Prepared(
            x_train=x_tr,
            y_train=y_tr,
            x_val=x_va,
            y_val=y_va,
            n_outputs=n_keys,
            # Identity normalisation: inputs are 0/1 already, and per-key statistics would divide by ~0 for
            # keys the training chorales never use (a transposed prime or a sampled note would then explode).
            norm_mean=np.zeros(n_keys, "float32"),
            norm_var=np.ones(n_keys, "float32"),
            dataset=music.CHORALES,
            split={
                "how": f"by chorale: the distinct 4-part chorales (corpus order) shuffled with seed {music.SPLIT_SEED} "
                f"(numpy default_rng) and cut {'/'.join(f'{f:.0%}' for f in music.SPLIT_FRACTIONS)} into "
                "train/validation/test; the split does not depend on the training seed",
                "seed": music.SPLIT_SEED,
                "corpus_entries": len(music.chorale_files()),
                "left_out": music.load_corpus(self.grid)["dropped"],
                "train_chorales": len(train.names),
                "validation_chorales": len(val.names),
                "test_chorales": len(test.names),
                "train_frames": int(sum(len(r) for r in train.rolls)),
                "validation_frames": int(sum(len(r) for r in val.rolls)),
                "test_frames": int(sum(len(r) for r in test.rolls)),
                "train_crops": len(x_tr),
                "validation_crops": len(x_va),
                "test_chorale_names": test.names,
            },
            preprocessing={
                "n_features": n_keys,
                "encoding": "88-key piano roll, key k = MIDI pitch 21 + k; 1 where the pitch sounds at the grid "
                "point; a silent frame is prepended so the first frame is predicted from silence",
                "grid_quarter_notes": self.grid,
                "steps_per_bar": round(4 / self.grid),  # 4/4 bars, for `compose --bars`
                "lowest_midi": music.LOWEST_MIDI,
                "input": "frames 0..t (after the silent start)",
                "target": "frame t+1",
                "crop_length": self.crop,
                "train_crop_stride": self.stride,
                "validation_crop_stride": self.crop // 2,
                "augmentation": f"training chorales only: transposed by {list(self.transpositions)} semitones",
                "normalization": {"mean": 0.0, "variance": 1.0, "where": "inside the model (identity)"},
                "cache": "encoded splits cached in ~/.cache/rnn-zoo/music/, keyed by music21 version and encoding settings",
            },
        )

    def probabilities(self, model: keras.Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model probabilities on the whole test chorales, their targets, and the mask of real frames."""
        x, y = self.test_data()
        probs = np.asarray(model.predict(x, batch_size=64, verbose=0))
        return probs, y, y[..., 0] >= 0

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        probs, y, mask = self.probabilities(model)
        nll = nll_per_frame(probs, np.maximum(y, 0))
        per_chorale = (nll * mask).sum(1) / mask.sum(1)
        on = y[mask] > 0.5
        pred = probs[mask] > 0.5
        return {
            "nll_per_frame": float(nll[mask].mean()),
            "nll_per_frame_chorale_mean": float(per_chorale.mean()),
            "key_accuracy": float((on == pred).mean()),
            "frame_exact_match": float((on == pred).all(-1).mean()),
            "test_frames": int(mask.sum()),
            "test_chorales": len(y),
            "published_nll_per_frame": PUBLISHED_JSB,
            "published_note": PUBLISHED_NOTE.format(seed=music.SPLIT_SEED),
        }

    def step_input(self, preprocessing: dict) -> str:
        return f"one piano-roll frame: which of the 88 keys sound, {preprocessing['grid_quarter_notes']:g} quarter note"

    def baselines(self, prepared: Prepared) -> dict:
        train = self.chorales("train").rolls
        pairs = [with_start(r) for r in self.chorales("test").rolls]
        x = np.concatenate([p[0] for p in pairs])
        y = np.concatenate([p[1] for p in pairs])
        # Repeat-last-frame: each key keeps its state with probability 1 - eps. eps is fitted on the training
        # chorales by maximum likelihood (the share of key-frames that change state), so log(0) never occurs.
        tr_x = np.concatenate([with_start(r)[0] for r in train])
        tr_y = np.concatenate([with_start(r)[1] for r in train])
        eps = float((tr_x != tr_y).mean())
        repeat = np.where(x > 0.5, 1 - eps, eps)
        # Per-key marginal: how often each key sounds in the training frames, add-one smoothed (unused keys
        # keep a small non-zero probability).
        frames = np.concatenate(train)
        marginal = (frames.sum(0) + 1.0) / (len(frames) + 2.0)
        return {
            "repeat_last_frame": {
                "nll_per_frame": float(nll_per_frame(repeat, y).mean()),
                "epsilon": eps,
                "how": "p(key on) = 1 - eps if it sounds in the last frame, else eps; eps = share of training "
                "key-frames that change state",
            },
            "per_key_marginal": {
                "nll_per_frame": float(nll_per_frame(np.broadcast_to(marginal, y.shape), y).mean()),
                "how": "p(key on) = (training frames where it sounds + 1) / (training frames + 2), every frame",
            },
        }

    def plot(self, model: keras.Model, path: Path) -> Path:
        """The first test chorale's piano roll above the model's next-frame probabilities for it."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        probs, y, mask = self.probabilities(model)
        n = int(mask[0].sum())
        name = self.chorales("test").names[0]
        fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
        for ax, img, title in (
            (axes[0], y[0, :n], f"test chorale {name}: frames"),
            (axes[1], probs[0, :n], "model: p(key sounds | earlier frames)"),
        ):
            ax.imshow(
                img.T, aspect="auto", origin="lower", cmap="Greys", vmin=0, vmax=1, interpolation="nearest"
            )
            used = np.flatnonzero(y[0, :n].max(0) > 0)
            ax.set_ylim(used[0] - 6, used[-1] + 6)
            ax.set(title=title, ylabel=f"key (MIDI - {music.LOWEST_MIDI})")
        axes[1].set_xlabel(f"frame ({self.grid} quarter notes)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


CHORALES = ChoraleTask(stride=16, transpositions=(-1, 0, 1))
