"""Survival analysis for the patient task (`zoo.tasks.patients`): Kaplan-Meier, the time-dependent concordance
C^td, the IPCW Brier score and the Cox proportional hazards fit behind its baselines. Plain numpy on arrays of
event times and event flags.
"""

from __future__ import annotations

import numpy as np

COX_RIDGE = 0.01  # on standardised covariates: numerical stability only, far below what would shrink the fit


def kaplan_meier(times: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct event times and the survival just after each."""
    at = np.unique(times[events])
    surv = np.cumprod([1 - (events & (times == s)).sum() / (times >= s).sum() for s in at])
    return at, surv


def survival_at(at: np.ndarray, surv: np.ndarray, t: np.ndarray | float, before: bool = False) -> np.ndarray:
    """S(t) (or S(t-) with ``before``) of a Kaplan-Meier step function."""
    k = np.searchsorted(at, t, side="left" if before else "right")
    return np.concatenate([[1.0], surv])[k]


def concordance_td(
    risk: np.ndarray, t_event: np.ndarray, dead: np.ndarray, t: float, horizon: float
) -> float:
    """C^td(t, Δt) of Lee et al. (Dynamic-DeepHit): over pairs (i, j) with i dying in (t, t + Δt] and j alive
    longer, the share where i's risk is higher (ties count 1/2); NaN without such a pair."""
    cases = np.flatnonzero(dead & (t_event <= t + horizon))
    hits = pairs = 0.0
    for i in cases:
        later = t_event > t_event[i]
        pairs += later.sum()
        hits += (risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum()
    return hits / pairs if pairs else float("nan")


def brier_ipcw(
    risk: np.ndarray,
    t_event: np.ndarray,
    dead: np.ndarray,
    t: float,
    horizon: float,
    censor_t: np.ndarray,
    censor_s: np.ndarray,
) -> float:
    """The Brier score at (t, t + Δt] with inverse probability of censoring weights (Graf et al. 1999); the
    censoring distribution is the Kaplan-Meier step function ``censor_t``, ``censor_s``."""
    g_t = survival_at(censor_t, censor_s, t)
    case = dead & (t_event <= t + horizon)
    control = t_event > t + horizon
    w = np.zeros(len(risk))
    w[case] = g_t / survival_at(censor_t, censor_s, t_event[case], before=True)
    w[control] = g_t / survival_at(censor_t, censor_s, t + horizon)
    return float((w * (case - risk) ** 2).sum() / len(risk))


def fit_cox(z: np.ndarray, time: np.ndarray, event: np.ndarray, ridge: float = COX_RIDGE) -> np.ndarray:
    """Coefficients of a Cox proportional hazards model: Newton-Raphson on the Breslow partial likelihood of
    standardised covariates ``z [n, p]``, with a small ridge penalty ``ridge / 2 * |beta|^2`` that keeps the
    step finite where a covariate nearly separates (as lifelines' ``penalizer`` does)."""
    at = np.unique(time[event])
    in_risk = (time[None, :] >= at[:, None]).astype("float64")  # [K, n] risk sets
    deaths = np.array([(event & (time == s)).sum() for s in at], "float64")

    def loglik(b: np.ndarray) -> float:
        eta = z @ b
        return float(eta[event].sum() - deaths @ np.log(in_risk @ np.exp(eta)) - ridge / 2 * b @ b)

    outer = (z[:, :, None] * z[:, None, :]).reshape(len(z), -1)  # z z^T per row, flattened
    info_shape = (z.shape[1], z.shape[1])
    beta = np.zeros(z.shape[1])
    for _ in range(100):
        w = np.exp(z @ beta)
        s0 = in_risk @ w
        mean = (in_risk * w) @ z / s0[:, None]  # [K, p] risk-set weighted covariate means
        grad = z[event].sum(0) - deaths @ mean - ridge * beta
        second = ((in_risk * w) @ outer).reshape(-1, *info_shape) / s0[:, None, None]
        info = np.einsum("k,kij->ij", deaths, second - mean[:, :, None] * mean[:, None, :])
        step = np.linalg.solve(info + ridge * np.eye(len(beta)), grad)
        now = loglik(beta)
        while not loglik(beta + step) >= now and np.abs(step).max() > 1e-12:  # halve an overshooting step
            step = step / 2
        beta = beta + step
        if np.abs(step).max() < 1e-8:
            break
    return beta
