"""Detection metrics for reports: re-exported from :mod:`dfdetect.metrics`, their one home (train uses
them too, and ``train`` may not import ``eval``)."""

from dfdetect.metrics import (
    DEFAULT_THRESHOLDS,
    MetricError,
    accuracy_only,
    at_threshold,
    auc,
    binary_metrics,
    bootstrap_ci,
    check_inputs,
    compute_metrics,
    ece_mce,
    eer,
    fpr_at_tpr,
    reliability,
    tpr_at_fpr,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MetricError",
    "accuracy_only",
    "at_threshold",
    "auc",
    "binary_metrics",
    "bootstrap_ci",
    "check_inputs",
    "compute_metrics",
    "ece_mce",
    "eer",
    "fpr_at_tpr",
    "reliability",
    "tpr_at_fpr",
]
