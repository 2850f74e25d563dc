"""Aggregation of many scores into one: the single place used by scoring, evaluation and reports.

Scores are windows of one face track (-> track score), frames of one track (attention pooling),
or seconds of a timeline. :func:`aggregate` works on **probabilities** by default (``space="prob"``):
averaging probabilities is robust to one over-confident window, and the result stays a probability.
With ``space="logit"`` the same strategies run on logits and a logit comes back.

Strategies:

- ``mean``: arithmetic mean (weighted mean when ``weights`` are given).
- ``max``: the most suspicious score.
- ``topk``: mean of the ``k`` highest scores (``k`` an int, or a fraction in (0, 1) of the scores,
  at least one).
- ``attention``: weighted mean with ``weights`` (e.g. a model's ``frame_attention``); without
  weights, a soft maximum: weights = softmax of the logits, so confident fake scores dominate
  without a single outlier deciding alone as with ``max``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STRATEGIES = ("mean", "max", "topk", "attention")
_EPS = 1e-6


def logit(p: np.ndarray | float) -> np.ndarray:
    """Inverse sigmoid, with probabilities clipped to [1e-6, 1 - 1e-6] so the result is finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def _check(scores: np.ndarray, space: str) -> None:
    if scores.size == 0:
        raise ValueError("aggregate() got no scores: there is nothing to aggregate")
    if not np.all(np.isfinite(scores)):
        raise ValueError("aggregate() got NaN or infinite scores: check the model outputs")
    if space == "prob" and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(
            "aggregate(space='prob') needs probabilities in [0, 1]; pass space='logit' for logits"
        )


def _topk_count(n: int, k: int | float) -> int:
    if isinstance(k, float) and 0 < k < 1:
        return max(1, int(np.ceil(k * n)))
    if int(k) < 1:
        raise ValueError(f"topk needs k >= 1 (or a fraction in (0, 1)), got {k}")
    return min(n, int(k))


def aggregate(
    scores: Sequence[float] | np.ndarray,
    strategy: str = "mean",
    k: int | float = 3,
    weights: Sequence[float] | np.ndarray | None = None,
    space: str = "prob",
) -> float:
    """Aggregate 1-D ``scores`` into one value with ``strategy``.

    Args:
        scores: probabilities (``space="prob"``) or logits (``space="logit"``), any length >= 1.
        strategy: one of :data:`STRATEGIES` (see the module docstring).
        k: for ``topk``: how many of the highest scores to average (int), or a fraction (0 < k < 1).
        weights: non-negative weights aligned with ``scores`` (``mean``/``attention``); need not sum to 1.
        space: ``"prob"`` or ``"logit"``: the space the scores are in and the result is returned in.

    Returns:
        The aggregated score, in the same space as ``scores``.

    Raises:
        ValueError: unknown strategy/space, empty or non-finite scores, bad weights.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown aggregation {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if space not in ("prob", "logit"):
        raise ValueError(f"space must be 'prob' or 'logit', got {space!r}")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)  # [N]
    _check(s, space)
    if strategy == "max":
        return float(s.max())
    if strategy == "topk":
        n = _topk_count(s.size, k)
        return float(np.sort(s)[-n:].mean())
    if weights is None and strategy == "attention":
        z = s if space == "logit" else logit(s)
        w = np.exp(z - z.max())  # softmax over the logits
    elif weights is None:
        return float(s.mean())
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != s.shape or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise ValueError(
                f"weights must be {s.size} finite non-negative numbers with a positive sum "
                f"(got shape {w.shape})"
            )
    return float((w * s).sum() / w.sum())
