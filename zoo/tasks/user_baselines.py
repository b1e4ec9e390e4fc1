"""The baselines of a user's task (`zoo.tasks.user.UserTask`), measured on the model's own split, and the
metrics the model and the baselines are scored with.

- ``classify``: the majority class and MiniRocket (aeon) on the whole sequences;
- ``tag`` and per-reading ``regress``: the majority class or the training mean, and a logistic or ridge
  regression on causal window features of every reading (`lookback_features`);
- per-sequence ``regress``: the training mean and a ridge regression on each sequence's summary;
- ``forecast``: naive (the last value) and seasonal naive (`season_of`), with MASE's scale (`naive_scale`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from zoo.tasks.user import UserTask

# Causal window features of the per-reading baselines: the last, mean, std, min and max of the last K readings.
BASELINE_LOOKBACK = 16
MAX_BASELINE_ROWS = 200_000


def lookback_features(x: np.ndarray, k: int = BASELINE_LOOKBACK) -> np.ndarray:
    """Causal features of every reading of ``x [T, F]``: last value, mean, std, min, max of the last k."""
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.concatenate([np.repeat(x[:1], k - 1, axis=0), x]).astype("float64")
    win = sliding_window_view(padded, k, axis=0)  # [T, F, k]
    return np.concatenate([x, win.mean(-1), win.std(-1), win.min(-1), win.max(-1)], axis=1)


def class_metrics(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class figures and the confusion matrix of class ids."""
    from sklearn.metrics import (
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    labels = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "accuracy": float((y == pred).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, n in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray, scale: float | None = None) -> dict:
    """MAE, RMSE and R^2 of ``pred`` against ``y``; MASE too when the naive ``scale`` is given."""
    err = pred - y
    out = {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}
    var = float(((y - y.mean(0)) ** 2).mean())
    out["r2"] = float(1 - (err**2).mean() / var) if var > 0 else float("nan")
    if scale:
        out["mase"] = out["mae"] / scale
    return out


def compact(metrics: dict) -> dict:
    """A baseline's figures without its confusion matrix (the card keeps that for the model)."""
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def baselines(task: UserTask) -> dict:
    """Every baseline of ``task``'s kind on its test split (figures without confusion matrices)."""
    if task.task == "classify":
        return _classify(task)
    if task.task == "forecast":
        return _forecast(task)
    return _per_reading(task)


def naive_scale(task: UserTask) -> float:
    """Mean |z_t - z_(t-1)| over the training parts: MASE's scale (Hyndman & Koehler, 2006)."""
    diffs = [np.abs(np.diff(task.labels[i][a:b], axis=0)) for i, a, b in task.split.train]
    return float(np.concatenate(diffs).mean()) or 1.0


def _classify(task: UserTask) -> dict:
    from aeon.classification.convolution_based import MiniRocketClassifier

    y_tr = np.array([task.labels[i][0] for i, _, _ in task.split.train])
    y_te = np.array([task.labels[i][0] for i, _, _ in task.split.test])
    majority = int(np.bincount(y_tr).argmax())
    out = {"majority_class": class_metrics(y_te, np.full_like(y_te, majority), task.class_names)}
    length = max(9, int(task.seqs.lengths.max()))

    def edge_padded(
        parts: list,
    ) -> np.ndarray:  # aeon's [N, channels, T], each padded with its last value
        return np.stack(
            [
                np.pad(task.seqs.x[i], ((0, length - len(task.seqs.x[i])), (0, 0)), mode="edge").T
                for i, _, _ in parts
            ]
        ).astype("float64")

    rocket = MiniRocketClassifier(random_state=task.seed, n_jobs=1)
    rocket.fit(edge_padded(task.split.train + task.split.validation),
               np.concatenate([y_tr, [task.labels[i][0] for i, _, _ in task.split.validation]]))  # fmt: skip
    pred = np.asarray(rocket.predict(edge_padded(task.split.test))).astype(int)
    out["minirocket"] = class_metrics(y_te, pred, task.class_names) | {
        "how": "aeon MiniRocketClassifier on the whole sequences (training + validation split; shorter "
        "sequences padded with their last reading)"
    }
    return {k: compact(v) for k, v in out.items()}


def _reading_rows(task: UserTask, parts: list) -> tuple[np.ndarray, np.ndarray]:
    feats, ys = [], []
    for (i, a, b), (_, y, valid) in zip(parts, task._parts(parts), strict=True):
        feats.append(lookback_features(task.seqs.x[i][a:b])[valid])
        ys.append(np.asarray(y)[valid])
    return np.concatenate(feats), np.concatenate(ys)


def _per_reading(task: UserTask) -> dict:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task.task == "regress" and task.per_sequence:
        return _per_sequence_regression(task)
    x_tr, y_tr = _reading_rows(task, task.split.train + task.split.validation)
    x_te, y_te = _reading_rows(task, task.split.test)
    rng = np.random.default_rng(task.seed)
    if len(x_tr) > MAX_BASELINE_ROWS:
        keep = rng.choice(len(x_tr), MAX_BASELINE_ROWS, replace=False)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    how = (f"on causal window features of every reading (last value, mean, std, min and max of the last "
           f"{BASELINE_LOOKBACK} readings per column), fitted on the training + validation readings")  # fmt: skip
    if task.task == "tag":
        majority = int(np.bincount(y_tr).argmax())
        weights = "balanced" if task.class_weights() is not None else None
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, class_weight=weights))
        lr.fit(x_tr, y_tr)
        return {
            "majority_class": compact(class_metrics(y_te, np.full_like(y_te, majority), task.class_names)),
            "logistic_regression": compact(class_metrics(y_te, lr.predict(x_te), task.class_names))
            | {"how": "logistic regression " + how},
        }
    ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_tr, y_tr)
    return {
        "training_mean": regression_metrics(y_te, np.broadcast_to(y_tr.mean(0), y_te.shape)),
        "ridge": regression_metrics(y_te, ridge.predict(x_te).reshape(y_te.shape))
        | {"how": "ridge regression " + how},
    }


def _per_sequence_regression(task: UserTask) -> dict:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def summary(parts: list) -> tuple[np.ndarray, np.ndarray]:
        xs = [task.seqs.x[i] for i, _, _ in parts]
        f = np.stack([np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0), x[-1]]) for x in xs])
        return f, np.stack([task.labels[i][0] for i, _, _ in parts])

    x_tr, y_tr = summary(task.split.train + task.split.validation)
    x_te, y_te = summary(task.split.test)
    ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_tr, y_tr)
    return {
        "training_mean": regression_metrics(y_te, np.broadcast_to(y_tr.mean(0), y_te.shape)),
        "ridge": regression_metrics(y_te, ridge.predict(x_te).reshape(y_te.shape))
        | {"how": "ridge regression on each sequence's mean, std, min, max and last reading per column"},
    }


def season_of(task: UserTask) -> int:
    """The seasonal-naive period: ``season`` if given, else the lag in [2, 400] (and under half the
    shortest training part) with the largest autocorrelation of the first target's changes on the training
    parts."""
    if task.season:
        return int(task.season)
    # on the first difference: a trend would otherwise make the shortest lag look the most alike
    z = [np.diff(task.labels[i][a:b, 0]) for i, a, b in task.split.train]
    top = min(400, min(len(p) for p in z) // 2)
    if top < 2:
        return 1
    best, lag = -np.inf, 1
    for m in range(2, top + 1):
        num = sum(float(((p[m:] - p.mean()) * (p[:-m] - p.mean())).sum()) for p in z)
        den = sum(float(((p - p.mean()) ** 2).sum()) for p in z) or 1.0
        if num / den > best:
            best, lag = num / den, m
    return lag


def _forecast(task: UserTask) -> dict:
    k = task.labels[0].shape[1]
    m = season_of(task)
    preds = {"naive": [], "seasonal_naive": []}
    truth = []
    for i, a, b in task.split.test:
        z = task.labels[i]  # the whole sequence: the season looks back before the test part's start
        y, valid = task._targets(i)
        for t in np.flatnonzero(valid[a:b]) + a:
            truth.append(y[t] + np.tile(z[t], task.horizon))  # levels
            preds["naive"].append(np.tile(z[t], task.horizon))
            preds["seasonal_naive"].append(
                np.concatenate(
                    [z[max(0, t + h - m * int(np.ceil(h / m)))] for h in range(1, task.horizon + 1)]
                )
            )
    truth = np.asarray(truth).reshape(-1, task.horizon * k)
    scale = naive_scale(task)
    out = {
        name: regression_metrics(truth, np.asarray(p).reshape(truth.shape), scale)
        for name, p in preds.items()
    }
    out["seasonal_naive"]["season"] = m
    out["seasonal_naive"]["season_chosen_by"] = (
        "--season"
        if task.season
        else "largest autocorrelation of the training parts' first difference (lags 2-400)"
    )
    return out
