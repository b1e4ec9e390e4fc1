"""The task of a user's own table (`zoo.fit`): split by sequence or by time, targets, metrics and baselines.

Four kinds, each causal so that a fitted model streams reading by reading with its state carried forward:

- ``classify``: one label per sequence, a prediction after every reading (scored at each sequence's last one);
- ``tag``: a label per reading (an event, a fault, a state);
- ``forecast``: the next ``horizon`` values of the target columns after every reading;
- ``regress``: a number per sequence (scored at its last reading) or per reading.

Sequences are never shared between splits. With fewer than three sequences (one long recording) each is cut
by time instead: early readings train, the next validate, the last test, with a gap of one training window
between the parts. Long sequences of the per-reading kinds are cut into training windows; the test parts are
run whole, from a zero state, exactly as ``rnnzoo serve`` would meet them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.backend import keras
from zoo.data.split import KINDS, Split, split_sequences, window_starts
from zoo.data.table import DataError, Sequences, label_texts
from zoo.tasks import user_baselines
from zoo.tasks.base import Prepared, Task, normalisation_card
from zoo.tasks.user_baselines import class_metrics, regression_metrics

HEADLINE = {"classify": "balanced_accuracy", "tag": "balanced_accuracy", "forecast": "mae", "regress": "mae"}
# Classes whose counts differ by more than this factor get balanced class weights.
SKEW = 1.5
PLOT_READINGS = 2000  # the test plot shows the first readings of the first test part


def _pad(arrays: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded stack ``[N, T, ...]`` and the mask ``[N, T]`` of real steps."""
    length = length or max(len(a) for a in arrays)
    out = np.zeros((len(arrays), length) + arrays[0].shape[1:], dtype=arrays[0].dtype)
    mask = np.zeros((len(arrays), length), dtype=bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return out, mask


def _windows(parts: list[np.ndarray], window: int) -> list[np.ndarray]:
    """The training windows of each part (`window_starts`)."""
    return [p[s : s + window] for p in parts for s in window_starts(len(p), window)]


@dataclass
class UserTask(Task):
    """A user's table as a zoo task: built by `zoo.fit`, handed to the one training loop (`zoo.training`).

    Args:
        seqs: the table cut into sequences (`zoo.data.table.read_sequences`).
        task: one of ``KINDS``.
        seed: the split's seed (and the baselines').
        horizon: forecast: steps ahead predicted after every reading.
        window: training window of the per-reading kinds (None: 256, or shorter parts whole).
        season: forecast: the seasonal-naive baseline's period in readings (None: the training data's
            strongest autocorrelation lag, `zoo.tasks.user_baselines.season_of`).
        balance: balanced class weights: "auto" (when class counts differ by more than 1.5x), "on", "off".
    """

    seqs: Sequences
    task: str
    seed: int = 0
    horizon: int = 1
    window: int | None = None
    season: int | None = None
    balance: str = "auto"
    heads: tuple[str, ...] = ("step_classification", "step_regression", "sequence_classification")
    class_names: list[str] = field(default_factory=list)
    # Given instead of computed: the split (a table larger than memory is split while it is scanned), the
    # training batches (`zoo.data.chunked.TableStream`), the training inputs' statistics and label counts.
    split: Split | None = None
    stream: Any = None
    train_stats: tuple[np.ndarray, np.ndarray] | None = None
    train_label_counts: np.ndarray | None = None
    # A model to train instead of a fresh one (fine-tuning, `zoo.fit`'s --from): handed to the training loop.
    initial_model: keras.Model | None = None
    # Figures of other models on the same split to set beside the baselines (fine-tuning: from scratch).
    extra_baselines: dict = field(default_factory=dict)

    def build_model(self, spec: object, prepared: Prepared) -> keras.Model | None:
        return self.initial_model

    def __post_init__(self) -> None:
        if self.task not in KINDS:
            raise DataError(f"--task must be one of {', '.join(KINDS)} (got {self.task!r})")
        self.kind = "forecast" if self.task == "forecast" else (
            "classification" if self.task in ("classify", "tag") else "regression"
        )  # fmt: skip
        s = self.seqs
        self.per_sequence = self.task == "classify" or (self.task == "regress" and _constant_per_sequence(s))
        if self.task in ("classify", "tag"):
            if not self.class_names:  # given when the table was scanned whole (all its labels)
                every = label_texts(np.unique(np.concatenate(s.target)), s.numeric_target)
                self.class_names = sorted(set(every.tolist()), key=natural_order)
            labels = [self.label_index(t) for t in s.target]
            if len(self.class_names) < 2:
                raise DataError(
                    f"--target {s.target_names[0]!r} has a single class ({self.class_names[0]!r}): "
                    "nothing to tell apart"
                )
            if self.task == "classify":
                for i, lab in enumerate(labels):
                    if (lab != lab[0]).any():
                        raise DataError(
                            f"--task classify needs one label per sequence, but sequence {s.ids[i]!r} has "
                            f"{len(np.unique(lab))} (use --task tag for a label per reading)"
                        )
            self.labels = labels
        else:
            if not s.numeric_target:
                raise DataError(f"--task {self.task} needs a numeric target ({s.target_names[0]!r} is not)")
            self.labels = [np.asarray(t, "float64").reshape(len(t), -1) for t in s.target]
        if self.task == "forecast" and not 1 <= self.horizon <= 1000:
            raise DataError(f"--horizon must be between 1 and 1000 (got {self.horizon})")
        self.window_len = int(self.window or default_window(len(s.ids), int(s.lengths.min())))
        if self.window_len < 2:
            raise DataError(f"--window must be at least 2 (got {self.window_len})")
        seq_labels = np.array([lab[0] for lab in self.labels]) if self.task == "classify" else None
        if self.split is None:
            self.split = split_sequences(
                s.ids, s.lengths, self.seed, self.per_sequence, seq_labels, self.window_len
            )
        if self.task == "forecast":
            for part in self.split.test + self.split.train:
                if part[2] - part[1] <= self.horizon:
                    raise DataError(
                        f"a {'test' if part in self.split.test else 'training'} part of sequence "
                        f"{s.ids[part[0]]!r} has {part[2] - part[1]} readings, not more than --horizon "
                        f"{self.horizon}"
                    )

    # -- arrays -------------------------------------------------------------------------------------------

    @property
    def n_outputs(self) -> int:
        if self.task in ("classify", "tag"):
            return len(self.class_names)
        width = self.labels[0].shape[1]
        return width * (self.horizon if self.task == "forecast" else 1)

    def _targets(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-step targets of sequence ``i`` and which steps have one (a forecast's last readings do not)."""
        return self.targets_of(self.labels[i])

    def targets_of(self, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-step targets of the labels or values ``lab`` of consecutive readings, and which steps have one."""
        if self.task != "forecast":
            return lab, np.ones(len(lab), bool)
        t, k = lab.shape
        y = np.zeros((t, self.horizon * k))
        for h in range(1, self.horizon + 1):  # the change from the current reading: small, trend-free numbers
            y[: t - h, (h - 1) * k : h * k] = lab[h:] - lab[:-h]
        valid = np.arange(t) < t - self.horizon
        return y, valid

    def _parts(self, parts: list[tuple[int, int, int]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for i, a, b in parts:
            y, valid = self._targets(i)
            out.append((self.seqs.x[i][a:b], y[a:b], valid[a:b]))
        return out

    def _arrays(self, parts: list[tuple[int, int, int]], windowed: bool) -> tuple[np.ndarray, ...]:
        """Inputs, targets and step weights (0 at padding and where a step has no target)."""
        items = self._parts(parts)
        if windowed and not self.per_sequence:
            # windows cut jointly from inputs, targets and the validity of each part
            joined = [np.concatenate([x, _flat(y), v[:, None]], axis=1) for x, y, v in items]
            wins = _windows(joined, self.window_len)
            f = items[0][0].shape[1]
            width = _flat(items[0][1]).shape[1]
            items = [(w[:, :f], w[:, f : f + width], w[:, -1] > 0.5) for w in wins]
            items = [(x.astype("float32"), _unflat(y, self.task), v) for x, y, v in items]
        return self.stack_items(items)

    def stack_items(self, items: list[tuple], length: int | None = None) -> tuple[np.ndarray, ...]:
        """(inputs, targets, validity) of several examples as padded batches with step weights: 0 at padding
        and where a step has no target, the class weight elsewhere."""
        x, mask = _pad([it[0] for it in items], length)
        y, _ = _pad([np.asarray(it[1]) for it in items], length)
        valid, _ = _pad([it[2] for it in items], length)
        w = (mask & valid).astype("float32")
        if self.task in ("classify", "tag"):
            y = y.astype("int64")
            w *= self.class_weight_of(y)
        return x.astype("float32"), y, w

    def label_index(self, values: np.ndarray) -> np.ndarray:
        """Class indices of labels as read from the table (strings, or whole numbers)."""
        index = {c: i for i, c in enumerate(self.class_names)}
        values = np.asarray(values)
        keys = label_texts(values, self.seqs.numeric_target).tolist()
        try:
            return np.array([index[k] for k in keys], dtype="int64")
        except KeyError as e:
            raise DataError(
                f"label {e.args[0]!r} was not among the labels the table was scanned for"
            ) from None

    def class_weight_of(self, y: np.ndarray) -> np.ndarray:
        weights = self.class_weights()
        return weights[y] if weights is not None else np.ones(y.shape, "float32")

    def class_weights(self) -> np.ndarray | None:
        """Balanced weights ``n / (classes * count)`` over the training readings, when they are used."""
        if self.task not in ("classify", "tag") or self.balance == "off":
            return None
        counts = np.zeros(len(self.class_names))
        for i, a, b in self.split.train:
            counts += np.bincount(self.labels[i][a:b], minlength=len(self.class_names))
        if self.task == "classify":  # per sequence, as the split counts them
            counts = np.bincount([self.labels[i][0] for i, _, _ in self.split.train], minlength=len(counts))
        if self.train_label_counts is not None:  # counted over the whole training split of a large table
            counts = np.asarray(self.train_label_counts, "float64")
        counts = np.maximum(counts, 1)
        if self.balance == "auto" and counts.max() / counts.min() <= SKEW:
            return None
        return (counts.sum() / (len(counts) * counts)).astype("float32")

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        # With a stream, split.train holds a sample of the training sequences (for the baselines and the
        # target scale) and the batches come from the file.
        x_tr, y_tr, w_tr = self._arrays(self.split.train, windowed=True)
        x_va, y_va, w_va = self._arrays(self.split.validation, windowed=True)
        if self.train_stats is not None:
            mean, var = self.train_stats
        else:
            rows = np.concatenate([self.seqs.x[i][a:b] for i, a, b in self.split.train]).astype("float64")
            mean, var = rows.mean(0), rows.var(0)
        mean = np.asarray(mean).astype("float32")
        var = np.maximum(np.asarray(var), 1e-12).astype("float32")
        t_mean, t_std = 0.0, 1.0
        if self.task in ("forecast", "regress"):
            flat = y_tr.reshape(-1, y_tr.shape[-1])[w_tr.reshape(-1) > 0]
            t_mean = flat.mean(0).astype("float32")
            t_std = np.maximum(flat.std(0), 1e-6).astype("float32")
        if head == "sequence_classification":
            y_tr, y_va = y_tr[:, 0], y_va[:, 0]
            w_tr = w_va = None
        n_windows, length = len(x_tr), int(x_tr.shape[1])
        if self.stream is not None:
            from zoo.data.chunked import ArrayBatches

            scale = (t_mean, t_std) if self.task in ("forecast", "regress") else None
            self.stream.configure(self, scale)
            n_windows = self.stream.examples
            x_tr, y_tr, w_tr = self.stream, None, None
            x_va, y_va, w_va = ArrayBatches(x_va, y_va, w_va, self.stream.batch_size, scale), None, None
        s = self.seqs
        weights = self.class_weights()
        dataset = {
            **{k: v for k, v in s.source.items() if k not in ("name", "origin")},
            "name": s.source["name"],
            "origin": s.source["origin"],
            "licence": "the user's own data (its terms are the user's)",
        }
        if s.sample_rate_hz:
            dataset["sample_rate_hz"] = round(float(s.sample_rate_hz), 6)
        n_parts = {k: len(getattr(self.split, k)) for k in ("train", "validation", "test")}
        readings = {k: int(sum(b - a for _, a, b in getattr(self.split, k))) for k in n_parts}
        return Prepared(
            x_train=x_tr,
            y_train=y_tr,
            x_val=x_va,
            y_val=y_va,
            n_outputs=self.n_outputs,
            norm_mean=mean,
            norm_var=var,
            dataset=dataset,
            split={
                "how": self.split.how,
                "by": self.split.by,
                "seed": self.seed,
                **n_parts,
                "training_windows": n_windows,
                "readings": readings,
                # A table read block by block: the whole file's counts, the rows held for scoring apart.
                **(
                    {"held_in_memory": {**n_parts, "readings": readings}} | self.stream.card()
                    if self.stream is not None
                    else {}
                ),
                **(
                    {"test_ids": [s.ids[i] for i, _, _ in self.split.test]}
                    if self.split.by == "sequence" and len(self.split.test) <= 200
                    else {}
                ),
            },
            preprocessing={
                "n_features": len(s.features),
                "sequence_length": length,
                **({"class_names": self.class_names} if self.class_names else {}),
                **normalisation_card(mean, var, dataset),
                "feature_names": s.features,
                "senml_names": s.features,
                "target": s.target_names,
                "fit_task": self.task,
                "per": "sequence" if self.per_sequence else "reading",
                **(
                    {
                        "horizon": self.horizon,
                        "output": "after every reading, the change of each target over the next 1..horizon "
                        "readings (horizon-major: [h1 targets, h2 targets, ...]); add the current reading for the "
                        "level",
                    }
                    if self.task == "forecast"
                    else {}
                ),
                **({"window": self.window_len} if not self.per_sequence else {}),
                **(
                    {
                        "class_weights": "balanced (n / (classes x count)) over the training split: "
                        + ", ".join(f"{n} {w:.3f}" for n, w in zip(self.class_names, weights, strict=True))
                    }
                    if weights is not None
                    else {}
                ),  # fmt: skip
            },
            target_mean=t_mean,
            target_std=t_std,
            w_train=w_tr,
            w_val=w_va,
        )

    # -- evaluation -------------------------------------------------------------------------------------

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, _ = self._arrays(self.split.test, windowed=False)
        return x, y

    def valid_steps(self) -> np.ndarray | None:
        _, mask = _pad([self.seqs.x[i][a:b] for i, a, b in self.split.test])
        return mask

    def _test_outputs(self, model: keras.Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model outputs on the test parts run whole, their targets and the weights-free validity mask
        (kept for the last model asked: evaluate and plot ask for the same)."""
        cached = getattr(self, "_outputs_of", None)
        if cached is not None and cached[0] is model:
            return cached[1]
        x, y, _ = self._arrays(self.split.test, windowed=False)
        items = self._parts(self.split.test)
        valid, _ = _pad([v for _, _, v in items])
        mask = self.valid_steps() & valid
        out = np.asarray(model.predict(x, verbose=0, batch_size=16))
        self._outputs_of = (model, (out, y, mask))
        return out, y, mask

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        out, y, mask = self._test_outputs(model)
        last = mask.sum(1) - 1
        rows = np.arange(len(out))
        if self.task == "classify":
            probs = out if out.ndim == 2 else out[rows, last]
            metrics = class_metrics(y[:, 0], probs.argmax(-1), self.class_names)
            if out.ndim == 3:
                metrics["per_step_accuracy_mean"] = float((out.argmax(-1) == y)[mask].mean())
            return metrics
        if self.task == "tag":
            return class_metrics(y[mask], out.argmax(-1)[mask], self.class_names) | {
                "readings": int(mask.sum())
            }
        if self.task == "regress" and self.per_sequence:
            return regression_metrics(y[rows, last], out[rows, last]) | {
                "scored": "at each sequence's last reading"
            }
        metrics = regression_metrics(
            y[mask], out[mask], user_baselines.naive_scale(self) if self.task == "forecast" else None
        )
        if self.task == "forecast":
            k = self.labels[0].shape[1]
            err = np.abs(out[mask] - y[mask]).reshape(-1, self.horizon, k)
            metrics["mae_by_horizon"] = [float(v) for v in err.mean((0, 2))]
        return metrics | {"readings": int(mask.sum())}

    def baselines(self, prepared: Prepared) -> dict:
        return user_baselines.baselines(self) | self.extra_baselines

    def compare(self, metrics: dict, baselines: dict) -> dict | None:
        key = HEADLINE[self.task]
        higher = key == "balanced_accuracy"
        scored = {n: b[key] for n, b in baselines.items() if key in b}
        best = (max if higher else min)(scored, key=scored.get)
        gap = (metrics[key] - scored[best]) if higher else (scored[best] - metrics[key])
        wins = gap > 0
        name = key.replace("_", " ")
        verdict = (
            f"beats the best baseline ({best}) by {abs(gap):.4g} {name} ({metrics[key]:.4g} against {scored[best]:.4g})"
            if wins
            else f"ties with the best baseline ({best}): {name} {metrics[key]:.4g}, the same on this test split"
            if gap == 0
            else f"LOSES to the baseline {best}: {name} {metrics[key]:.4g} against {scored[best]:.4g}; the baseline "
            "is the better model for this data as it stands (more data, epochs or a --search may change that)"
        )
        return {"reference": best, "verdict": verdict, "metric": key, "model": metrics[key],
                "baseline": scored[best], "beats": bool(wins), "ties": bool(gap == 0)}  # fmt: skip

    def plot(self, model: keras.Model, path: Path) -> Path | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out, y, mask = self._test_outputs(model)
        fig, ax = plt.subplots(figsize=(8, 3.2))
        if self.task == "classify":
            acc = [
                (out[:, t].argmax(-1) == y[:, t])[mask[:, t]].mean()
                for t in range(out.shape[1])
                if mask[:, t].any()
            ]
            ax.plot(np.arange(1, len(acc) + 1), acc)
            ax.set(
                xlabel="readings seen",
                ylabel="test accuracy",
                title="accuracy after each reading",
                ylim=(0, 1.02),
            )
        else:
            n = min(int(mask[0].sum()), PLOT_READINGS)
            t = np.arange(n)
            if self.task == "tag":
                ax.step(t, y[0, :n], where="post", label="label")
                ax.step(t, out[0, :n].argmax(-1), where="post", ls="--", label="prediction")
                ax.set_yticks(range(len(self.class_names)), self.class_names)
            else:
                label = "change over the next reading" if self.task == "forecast" else "target"
                ax.plot(t, y[0, :n, 0], label=f"truth: {label}")
                ax.plot(t, out[0, :n, 0], ls="--", label="model")
            ax.set(xlabel="test reading", title=f"{self.task}: the first test part, run from a zero state")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def step_input(self, preprocessing: dict) -> str:
        names = preprocessing.get("feature_names") or []
        rate = preprocessing.get("sample_rate_hz")
        return f"one reading of {len(names)} value(s): {', '.join(names)}" + (
            f" ({rate:g} readings/s)" if rate else ""
        )


def _flat(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, "float64")
    return y.reshape(len(y), -1)


def _unflat(y: np.ndarray, task: str) -> np.ndarray:
    return y[:, 0].astype("int64") if task in ("classify", "tag") else y


def natural_order(s: str) -> tuple:
    """Sort key of class labels: numbers by value first, then the other labels by name."""
    return (0, float(s), "") if _is_number(s) else (1, 0.0, s)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _constant_per_sequence(s: Sequences) -> bool:
    return len(s.ids) >= 3 and all(np.all(np.asarray(t) == np.asarray(t)[0]) for t in s.target)


def default_window(sequences: int, shortest: int) -> int:
    """The training window of the per-reading kinds: a time split (fewer than 3 sequences) trains on the first
    60% of a recording, so a quarter of that; otherwise the shortest sequence; at most 256 readings."""
    if sequences < 3:
        return min(256, max(8, int(0.6 * shortest) // 4))
    return min(256, max(16, shortest))
