"""Causal next-step forecasting of a sensor series, and anomaly detection from the forecast residual.

The model reads the series one value at a time and predicts the next value; it is trained on random crops of
the training part and evaluated by running it over the whole series from the start, exactly as the streaming
service would. The anomaly score is the moving average of the absolute forecast error; its threshold is the
largest score seen on the (anomaly-free) validation part times a margin, so validation raises no alarm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.backend import keras
from zoo.data import physio, series
from zoo.tasks.base import Prepared, Task, feature_stats, normalisation_card


@dataclass(frozen=True)
class Series:
    """A univariate series with its split points (train ends, validation ends) and optional anomaly labels."""

    values: np.ndarray
    train_end: int
    val_end: int
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class ForecastTask(Task):
    """Next-step forecasting with a residual anomaly detector.

    Args:
        loader: returns the ``Series``.
        dataset: card description of the dataset.
        crop: length of the training crops (truncated back-propagation through time).
        stride: step between training crops.
        season: seasonal period for the seasonal-naive baseline, if the series has one.
        difference: model the first difference (makes a trending series stationary); the forecast of the level
            is then the last level plus the predicted difference.
        score_window: moving-average width of the anomaly score.
        threshold_margin: the threshold is ``margin`` × the largest validation score.
    """

    loader: Callable[[], Series]
    dataset: dict
    crop: int = 256
    stride: int = 16
    season: int | None = None
    difference: bool = False
    score_window: int = 16
    threshold_margin: float = 1.0
    kind: str = "forecast"
    heads: tuple[str, ...] = ("step_regression",)

    def _inputs(self, s: Series) -> np.ndarray:
        """What the model reads: the series, or its first difference (one shorter, aligned to its end)."""
        return np.diff(s.values) if self.difference else s.values

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole input series as one sequence ``[1, T, 1]``, and the next-value targets ``[1, T]``."""
        z = self._inputs(self.loader())
        return z[None, :-1, None].astype("float32"), z[None, 1:].astype("float32")

    def prepare(self, seed: int, head: str, batch_size: int | None = None) -> Prepared:
        s = self.loader()
        z = self._inputs(s)
        offset = len(s.values) - len(z)
        train, val = z[: s.train_end - offset], z[s.train_end - offset : s.val_end - offset]

        def crops(part: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
            length = min(self.crop, len(part) - 1)
            starts = range(0, len(part) - length, stride)
            x = np.stack([part[i : i + length] for i in starts])[..., None]
            y = np.stack([part[i + 1 : i + length + 1] for i in starts])[..., None]
            return x.astype("float32"), y.astype("float32")

        x_tr, y_tr = crops(train, self.stride)
        x_va, y_va = crops(val, max(1, self.stride))
        mean, var = feature_stats(train[:, None])
        n = len(s.values)
        return Prepared(
            x_train=x_tr,
            y_train=y_tr,
            x_val=x_va,
            y_val=y_va,
            n_outputs=1,
            norm_mean=mean,
            norm_var=var,
            target_mean=float(mean[0]),
            target_std=float(np.sqrt(var[0])),
            dataset=self.dataset,
            split={
                "how": "chronological: train, then validation (threshold calibration), then test",
                "train_points": s.train_end,
                "validation_points": s.val_end - s.train_end,
                "test_points": n - s.val_end,
                "train_crops": len(x_tr),
                "crop_length": int(x_tr.shape[1]),
            },
            preprocessing={
                "n_features": 1,
                "input": "first difference of the series" if self.difference else "the raw series",
                "target": "the next input value",
                **normalisation_card(mean, var, self.dataset),
            },
        )

    def forecast(self, model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
        """Run the model over the whole series; return (level forecasts, the levels they forecast)."""
        s = self.loader()
        x, _ = self.test_data()
        pred = np.asarray(model.predict(x, verbose=0))[0, :, 0]
        if self.difference:
            # pred[i] forecasts diff[i+1] = v[i+2] - v[i+1]; the level forecast adds it to v[i+1].
            return s.values[1:-1] + pred, s.values[2:]
        return pred, s.values[1:]

    def anomaly_scores(self, errors: np.ndarray) -> np.ndarray:
        """Causal moving average of the absolute forecast error."""
        kernel = np.ones(self.score_window) / self.score_window
        return np.convolve(np.abs(errors), kernel)[: len(errors)]

    def evaluate(self, model: keras.Model, prepared: Prepared, head: str) -> dict:
        s = self.loader()
        fc, actual = self.forecast(model)
        lead = len(s.values) - len(actual)  # index in the series of actual[0]
        err = actual - fc
        val = slice(s.train_end - lead, s.val_end - lead)
        test = slice(s.val_end - lead, None)
        metrics = _forecast_errors(err[test], self._naive_scale(s))
        scores = self.anomaly_scores(err)
        threshold = float(scores[val].max() * self.threshold_margin)
        flagged = scores[test] > threshold
        metrics["anomaly"] = {
            "score": f"moving average of |forecast error| over {self.score_window} steps",
            "threshold": threshold,
            "threshold_rule": f"{self.threshold_margin} x the largest validation score",
            "flagged_test_points": int(flagged.sum()),
            # Scores within 1e-3 (relative) of the threshold: float round-off on another machine or backend
            # can move these across it, so a re-evaluation's flagged count may differ from the card's by this
            # many and no more.
            "test_points_near_threshold": int((np.abs(scores[test] - threshold) <= 1e-3 * threshold).sum()),
        }
        if s.labels is not None:
            truth = s.labels[lead:][test].astype(bool)
            metrics["anomaly"].update(_detection_metrics(scores[test], flagged, truth, offset=s.val_end))
        return metrics

    def plot(self, model: keras.Model, path: Path) -> Path:
        """The series with its forecast and the flagged test points (and the labelled anomaly, if any)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        s = self.loader()
        fc, actual = self.forecast(model)
        lead = len(s.values) - len(actual)
        scores = self.anomaly_scores(actual - fc)
        threshold = scores[s.train_end - lead : s.val_end - lead].max() * self.threshold_margin
        t = np.arange(lead, len(s.values))
        flagged = (scores > threshold) & (t >= s.val_end)
        fig, (ax, bx) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, height_ratios=[3, 1.4])
        ax.plot(np.arange(len(s.values)), s.values, lw=0.8, color="black", label="series")
        ax.plot(t, fc, lw=0.8, color="tab:blue", alpha=0.8, label="next-step forecast")
        ax.scatter(t[flagged], actual[flagged], s=10, color="tab:red", zorder=3, label="flagged anomaly")
        bx.plot(t, scores, lw=0.8, color="tab:purple", label="anomaly score")
        bx.axhline(threshold, color="tab:red", ls="--", lw=1, label="threshold (from validation)")
        for axis in (ax, bx):
            axis.axvspan(s.train_end, s.val_end, color="tab:green", alpha=0.08)
            axis.axvspan(s.val_end, len(s.values), color="tab:orange", alpha=0.06)
            if s.labels is not None:
                region = np.flatnonzero(s.labels)
                axis.axvspan(region[0], region[-1], color="tab:red", alpha=0.25)
        ax.set_title(
            f"{self.dataset['name']}: train | validation (green) | test (orange); labelled anomaly red"
        )
        ax.legend(loc="upper left", fontsize=8)
        bx.legend(loc="upper left", fontsize=8)
        bx.set_xlabel("time step")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def _naive_scale(self, s: Series) -> float:
        """MASE denominator: in-sample mean absolute error of the one-step naive forecast on the train part."""
        return float(np.abs(np.diff(s.values[: s.train_end])).mean())

    def baselines(self, prepared: Prepared) -> dict:
        s = self.loader()
        v, scale = s.values, self._naive_scale(s)
        test = np.arange(s.val_end, len(v))
        out = {"naive (last value)": _forecast_errors(v[test] - v[test - 1], scale)}
        if self.season:
            out[f"seasonal naive (value {self.season} steps ago)"] = _forecast_errors(
                v[test] - v[test - self.season], scale
            )
        return out


def _forecast_errors(err: np.ndarray, scale: float) -> dict:
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mase": float(np.abs(err).mean() / scale),
    }


def _detection_metrics(scores: np.ndarray, flagged: np.ndarray, truth: np.ndarray, offset: int) -> dict:
    """UCR anomaly-archive scoring (top-scored point within the labelled region ± 100) and point-wise
    precision/recall at the threshold; indices are reported in series coordinates (``offset`` = test start)."""
    region = np.flatnonzero(truth)
    top = int(scores.argmax())
    hit = bool(region[0] - 100 <= top <= region[-1] + 100)
    tp = int((flagged & truth).sum())
    return {
        "ucr_top_score_index": top + offset,
        "ucr_labelled_region": [int(region[0]) + offset, int(region[-1]) + offset],
        "ucr_hit": hit,
        "precision": tp / max(int(flagged.sum()), 1),
        "recall": tp / int(truth.sum()),
        "region_detected": bool(tp > 0),
    }


def _ecg() -> Series:
    values, labels = physio.mitdb_ecg()
    return Series(values, train_end=4500, val_end=5500, labels=labels)


def _abp() -> Series:
    values, labels, train_end = physio.abp_135()
    return Series(values, train_end=train_end - 300, val_end=train_end, labels=labels)


def _co2() -> Series:
    values = series.mauna_loa_co2()
    n = len(values)
    return Series(values, train_end=int(n * 0.7), val_end=int(n * 0.8))


ECG_ANOMALY = ForecastTask(loader=_ecg, dataset=physio.MITDB_ECG, crop=360, stride=20)
ABP_ANOMALY = ForecastTask(loader=_abp, dataset=physio.ABP_135, crop=200, stride=5)
CO2_FORECAST = ForecastTask(
    loader=_co2, dataset=series.MAUNA_LOA_CO2, crop=208, stride=4, season=52, difference=True, score_window=4
)
