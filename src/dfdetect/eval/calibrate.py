"""Temperature scaling (Guo et al. 2017): one scalar ``T`` so that ``sigmoid(logit / T)`` is calibrated.

``T`` is fitted on the validation split's *video* logits (``Prediction.extras["logit"]``: the raw logit of
the aggregated video score), by a bounded scalar minimisation of the negative log-likelihood over log T
(:func:`dfdetect.metrics.fit_temperature`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.infer.aggregate import sigmoid
from dfdetect.metrics import T_BOUNDS, MetricError, check_inputs, ece_mce, fit_temperature, nll

# the fit itself lives in metrics (layer 0): train's probe recipe calibrates with the same code
__all__ = ["T_BOUNDS", "calibration_report", "fit_temperature", "nll", "store_temperature"]


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
