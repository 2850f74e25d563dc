"""Detection metrics on binary labels (1 = fake) and scores (p_fake), scikit-learn where it has them.

The one home of metric code: ``eval`` (reports) and ``train`` (validation) both use it, so it lives at
package level, below both (scikit-learn is imported on first use, not at import time).

Ties are handled as scikit-learn does (``roc_curve`` merges tied scores into one operating point).
ECE/MCE/Brier/log loss need probabilities; AUC/EER/AP only need an ordering.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _skm() -> Any:
    from sklearn import metrics

    return metrics


DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7)


class MetricError(ValueError):
    """Metrics cannot be computed on these labels/scores; the message says why and what to do."""


def check_inputs(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, probs: bool = False
):
    """Validate and convert ``labels``/``scores``; raises :class:`MetricError` with what to do."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise MetricError(f"{y.size} labels but {s.size} scores: give one score per labelled video")
    if y.size == 0:
        raise MetricError("no scored videos: check the split name and that prepare produced cache entries")
    if not np.all(np.isfinite(s)):
        bad = int((~np.isfinite(s)).sum())
        raise MetricError(
            f"{bad} of {s.size} scores are NaN/inf: drop unscored videos or fix the model outputs"
        )
    if not np.isin(y, (0, 1)).all():
        raise MetricError(
            "labels must be 0 (real) or 1 (fake); drop unlabelled (-1) videos before computing metrics"
        )
    y = y.astype(int)
    if np.unique(y).size < 2:
        only = "real" if y[0] == 0 else "fake"
        raise MetricError(
            f"all {y.size} videos are {only}: AUC/EER need both real and fake videos; "
            "evaluate a split that holds both classes (or report accuracy only)"
        )
    if probs and (s.min() < 0 or s.max() > 1):
        raise MetricError(
            "scores must be probabilities in [0, 1] for calibration metrics (apply sigmoid first)"
        )
    return y, s


def auc(labels, scores) -> float:
    """Area under the ROC curve."""
    y, s = check_inputs(labels, scores)
    return float(_skm().roc_auc_score(y, s))


T_BOUNDS = (0.05, 20.0)  # temperatures a fit may reach


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits, labels, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """Temperature scaling (Guo et al. 2017): the ``T`` minimising the NLL of ``sigmoid(logits / T)`` on
    ``labels`` (0 real / 1 fake), by a bounded scalar minimisation over log T.

    Raises:
        MetricError: one class only, NaN logits, or mismatched lengths (fit on a split with both classes).
    """
    from scipy.optimize import minimize_scalar

    y, z = check_inputs(labels, logits)
    res = minimize_scalar(
        lambda log_t: nll(z, y, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(res.x))


def fit_platt(logits, labels, bounds: tuple[float, float] = T_BOUNDS) -> tuple[float, float]:
    """Platt scaling written as a temperature and a shift: the ``(T, shift)`` minimising the NLL of
    ``sigmoid((logits + shift) / T)`` on ``labels``, ``T`` kept within ``bounds``. Unlike the temperature
    alone it also corrects a model that scores every held-out clip too high (or too low).

    Raises:
        MetricError: one class only, NaN logits, or mismatched lengths (fit on a split with both classes).
    """
    from scipy.optimize import minimize

    y, z = check_inputs(labels, logits)
    t0 = fit_temperature(z, y, bounds)
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize(lambda v: nll(z + v[1], y, float(np.exp(v[0]))), x0=[np.log(t0), 0.0],
                   bounds=[(lo, hi), (None, None)], method="L-BFGS-B")  # fmt: skip
    return float(np.exp(res.x[0])), float(res.x[1])


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points at every distinct score (scikit-learn's ``_binary_clf_curve``, no point dropping)."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each run of tied scores
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]], np.r_[np.inf, s[last]]


def _eer(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    fpr, tpr, thr = _roc(y, s)
    diff = fpr - (1.0 - tpr)  # rises from -1 (nothing flagged) to +1 (everything flagged)
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0:
        return float(fpr[i]), float(min(thr[i], s.max()))
    a = diff[i - 1] / (diff[i - 1] - diff[i])  # fraction of the way from point i-1 to point i
    t0 = min(thr[i - 1], s.max())
    return float(fpr[i - 1] + a * (fpr[i] - fpr[i - 1])), float(t0 + a * (thr[i] - t0))


def eer(labels, scores) -> tuple[float, float]:
    """Equal error rate and its threshold, linearly interpolated where FPR and FNR cross on the ROC curve."""
    y, s = check_inputs(labels, scores)
    return _eer(y, s)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    fpr, tpr, _ = _roc(y, s)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids, as sklearn's auc()


def fpr_at_tpr(labels, scores, target: float = 0.95) -> float:
    """False-positive rate of the first operating point reaching a true-positive rate >= ``target``."""
    y, s = check_inputs(labels, scores)
    fpr, tpr, _ = _skm().roc_curve(y, s)
    return float(fpr[min(int(np.searchsorted(tpr, target - 1e-12, side="left")), len(fpr) - 1)])


def tpr_at_fpr(labels, scores, target: float = 0.01) -> float:
    """Highest true-positive rate among operating points with a false-positive rate <= ``target``."""
    y, s = check_inputs(labels, scores)
    fpr, tpr, _ = _skm().roc_curve(y, s)
    return float(tpr[fpr <= target + 1e-12].max())


def at_threshold(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (fake = positive; predicted fake when score >= threshold)."""
    y = np.asarray(labels).astype(int).reshape(-1)
    pred = (np.asarray(scores, dtype=np.float64).reshape(-1) >= threshold).astype(int)
    tn, fp, fn, tp = _skm().confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "accuracy": float(_skm().accuracy_score(y, pred)),
        "precision": float(_skm().precision_score(y, pred, zero_division=0)),
        "recall": float(_skm().recall_score(y, pred, zero_division=0)),
        "f1": float(_skm().f1_score(y, pred, zero_division=0)),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
    }


def reliability(labels, probs, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Equal-width bins of p_fake: count, mean predicted p and observed fake rate per bin."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)  # last bin includes 1.0
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=p, minlength=n_bins) / count
        rate = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"edges": np.linspace(0, 1, n_bins + 1), "count": count, "confidence": conf, "observed": rate}


def ece_mce(labels, probs, n_bins: int = 10) -> tuple[float, float]:
    """Expected and maximum calibration error of p_fake over ``n_bins`` equal-width bins."""
    r = reliability(labels, probs, n_bins)
    used = r["count"] > 0
    gap = np.abs(r["observed"][used] - r["confidence"][used])
    return float((gap * r["count"][used]).sum() / r["count"].sum()), float(gap.max())


def bootstrap_ci(
    labels,
    scores,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric`` (resamples with one class only are skipped)."""
    y, s = check_inputs(labels, scores)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        i = rng.integers(0, y.size, y.size)
        if y[i].min() == y[i].max():
            continue
        values.append(metric(y[i], s[i]))
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def compute_metrics(
    labels,
    scores,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    n_boot: int = 1000,
    seed: int = 0,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Every metric of a report for probabilities ``scores`` (p_fake) against ``labels``.

    Returns a JSON-ready dict: ``n, n_real, n_fake, auc, auc_ci, eer, eer_threshold, eer_ci, ap,
    log_loss, brier, ece, mce, fpr_at_95tpr, tpr_at_1fpr`` and ``at`` = metrics at each threshold
    (0.5 always included). Raises :class:`MetricError` for one class, NaN scores or non-probabilities.
    """
    y, s = check_inputs(labels, scores, probs=True)
    e, e_thr = eer(y, s)
    ece, mce = ece_mce(y, s, n_bins)
    out: dict[str, Any] = {
        "n": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "auc": auc(y, s),
        "auc_ci": list(bootstrap_ci(y, s, _auc, n_boot, seed)),
        "eer": e,
        "eer_threshold": e_thr,
        "eer_ci": list(bootstrap_ci(y, s, lambda a, b: _eer(a, b)[0], n_boot, seed)),
        "ap": float(_skm().average_precision_score(y, s)),
        "log_loss": float(_skm().log_loss(y, np.clip(s, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(_skm().brier_score_loss(y, s)),
        "ece": ece,
        "mce": mce,
        "fpr_at_95tpr": fpr_at_tpr(y, s, 0.95),
        "tpr_at_1fpr": tpr_at_fpr(y, s, 0.01),
    }
    out["at"] = {f"{t:g}": at_threshold(y, s, t) for t in sorted({0.5, *thresholds})}
    return out


def accuracy_only(labels, scores, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics that still make sense on one class only (per-method or all-real subsets)."""
    y = np.asarray(labels).astype(int).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.size == 0:
        return {"n": 0}
    return {
        "n": int(y.size),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "accuracy": float(((s >= threshold).astype(int) == y).mean()),
        "mean_p": float(s.mean()),
    }


def binary_metrics(scores, labels, threshold: float = 0.5) -> dict[str, float]:
    """Validation metrics of probabilities ``scores`` [N] (training logs): AUC, AP, F1, precision,
    recall, accuracy at ``threshold``, counts. AUC/AP are NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(int).reshape(-1)
    two_classes = np.unique(y).size == 2
    at = at_threshold(y, s, threshold)
    return {
        "auc": float(_skm().roc_auc_score(y, s)) if two_classes else float("nan"),
        "ap": float(_skm().average_precision_score(y, s)) if two_classes else float("nan"),
        **{k: at[k] for k in ("f1", "precision", "recall", "accuracy")},
        "n": float(y.size),
        "n_fake": float(y.sum()),
    }


def source_quantile(values: np.ndarray, sources: Sequence[str], quantile: float) -> float:
    """The ``quantile`` of ``values`` with each file weighted ``1 / (files of its source)``: every source
    counts the same (the lowest value whose cumulative weight reaches ``quantile``; 1.0 gives the max)."""
    values = np.asarray(values, dtype=float)
    if not values.size:
        raise ValueError("no scores to take a quantile of")
    counts = Counter(sources)
    weights = np.array([1.0 / counts[s] for s in sources])
    return float(np.quantile(values, quantile, method="inverted_cdf", weights=weights))


def held_out_exceedance(values: np.ndarray, sources: Sequence[str], quantile: float) -> dict[str, float]:
    """What the ceiling promises for a real source it never saw: leave each source out in turn, fit the
    :func:`source_quantile` on the others, count the held-out source's values above it. Returns the share
    above averaged over sources (``per_source``) and over all files (``per_file``); empty with one source."""
    values, sources = np.asarray(values, dtype=float), np.asarray(sources)
    names = sorted(set(sources.tolist()))
    if len(names) < 2:
        return {}
    shares, above = [], 0
    for name in names:
        held = sources == name
        p0 = source_quantile(values[~held], sources[~held].tolist(), quantile)
        shares.append(float(np.mean(values[held] > p0)))
        above += int(np.sum(values[held] > p0))
    return {"per_source": float(np.mean(shares)), "per_file": above / values.size}


def anchoring_temperature(raw_logit: float, at: float) -> float:
    """The temperature ``T`` with ``sigmoid(raw_logit / T) == at``: it moves one raw score onto a chosen
    probability (both above 0.5) and keeps every ranking."""
    return float(raw_logit / np.log(at / (1.0 - at)))


def false_alarm_anchor(
    real_logits: np.ndarray, sources: Sequence[str], quantile: float, band: tuple[float, float]
) -> dict:
    """The affine map ``z -> (z - shift) / scale`` of calibrated logits (``p = sigmoid(z)``) after which at
    most ``1 - quantile`` of the real clips, every source weighing the same, reach the ``band``'s upper edge:
    their :func:`source_quantile` goes onto that edge while the lower edge stays where it was (a clip called
    ``real`` before still is, one called ``fake`` below the quantile becomes ``uncertain``). The identity
    (shift 0, scale 1) when the quantile is already below the edge. Also returns the quantile's p before, the
    reals and sources it read and :func:`held_out_exceedance` after the map (what a new source can expect
    above the edge)."""
    z = np.asarray(real_logits, dtype=float)
    low, high = (float(np.log(b / (1.0 - b))) for b in band)
    q = source_quantile(z, sources, quantile)
    scale = max(1.0, (q - low) / (high - low))
    shift = low * (1.0 - scale)
    mapped = (z - shift) / scale
    return {"quantile": quantile, "band": list(band), "shift": shift, "scale": scale,
            "p_before": float(1 / (1 + np.exp(-q))), "n_real": int(z.size), "sources": len(set(sources)),
            "new_source_above": held_out_exceedance(mapped, sources, quantile)}  # fmt: skip
