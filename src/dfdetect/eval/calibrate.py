"""Temperature scaling (Guo et al. 2017): one scalar ``T`` so that ``sigmoid(logit / T)`` is calibrated.

``T`` is fitted on the validation split's *video* logits (``Prediction.extras["logit"]``: the raw logit of
the aggregated video score), by a bounded scalar minimisation of the negative log-likelihood over log T.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from dfdetect.infer.aggregate import sigmoid
from dfdetect.metrics import MetricError, check_inputs, ece_mce

T_BOUNDS = (0.05, 20.0)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits, labels, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """Temperature minimising the NLL of ``sigmoid(logits / T)`` on ``labels`` (0 real / 1 fake).

    Raises:
        MetricError: one class only, NaN logits, or mismatched lengths (fit on a split with both classes).
    """
    y, z = check_inputs(labels, logits)
    res = minimize_scalar(
        lambda log_t: nll(z, y, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(res.x))


def calibration_report(logits, labels, temperature: float, n_bins: int = 10) -> dict[str, float]:
    """ECE/MCE/NLL before (T = 1) and after temperature scaling."""
    y, z = check_inputs(labels, logits)
    before, after = sigmoid(z), sigmoid(z / temperature)
    ece_b, mce_b = ece_mce(y, before, n_bins)
    ece_a, mce_a = ece_mce(y, after, n_bins)
    return {
        "temperature": float(temperature),
        "n": int(y.size),
        "ece_before": ece_b,
        "ece_after": ece_a,
        "mce_before": mce_b,
        "mce_after": mce_a,
        "nll_before": nll(z, y, 1.0),
        "nll_after": nll(z, y, temperature),
    }


def store_temperature(
    checkpoint: str | os.PathLike, temperature: float, info: dict[str, Any] | None = None
) -> Path:
    """Write ``calibration.temperature`` (and ``info``, e.g. the ECE report) into a checkpoint atomically."""
    from dfdetect.checkpoint import Checkpoint

    if not np.isfinite(temperature) or temperature <= 0:
        raise MetricError(f"temperature must be a positive number, got {temperature}")
    return Checkpoint.load(checkpoint).with_temperature(float(temperature), info).save(checkpoint)
