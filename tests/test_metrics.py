"""Metrics against scikit-learn and hand-computed cases; calibration and aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from dfdetect.eval.calibrate import calibration_report, fit_temperature, nll
from dfdetect.infer.aggregate import aggregate, logit, sigmoid
from dfdetect.metrics import (
    MetricError,
    at_threshold,
    auc,
    compute_metrics,
    ece_mce,
    eer,
    fpr_at_tpr,
    tpr_at_fpr,
)


def _random(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    return y, p


def test_metrics_match_sklearn_on_random_data():
    y, p = _random()
    m = compute_metrics(y, p, thresholds=(0.6, 0.7), n_boot=200)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["ap"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)))
    assert set(m["at"]) == {"0.5", "0.6", "0.7"}
    pred = (p >= 0.6).astype(int)
    assert m["at"]["0.6"]["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["at"]["0.6"]["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["at"]["0.6"]["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
    assert m["eer_ci"][0] <= m["eer"] <= m["eer_ci"][1]
    # seeded bootstrap: same seed, same interval
    assert compute_metrics(y, p, n_boot=200)["auc_ci"] == m["auc_ci"]
    # EER sits where FPR and FNR cross on sklearn's ROC curve
    fpr, tpr, _ = skm.roc_curve(y, p)
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(m["eer"] - (fpr[i] + 1 - tpr[i]) / 2) < 0.02


def test_perfect_and_inverted():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    m = compute_metrics(y, p, n_boot=50)
    assert m["auc"] == 1.0 and m["eer"] == 0.0 and m["ap"] == 1.0
    assert m["fpr_at_95tpr"] == 0.0 and m["tpr_at_1fpr"] == 1.0
    assert m["at"]["0.5"]["accuracy"] == 1.0
    inv = compute_metrics(y, 1 - p, n_boot=50)
    assert inv["auc"] == 0.0 and inv["eer"] == 1.0
    assert inv["at"]["0.5"]["accuracy"] == 0.0


def test_ties_and_known_eer():
    y = np.array([0, 1, 0, 1])
    assert auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: chance, as sklearn
    assert eer(y, [0.5] * 4)[0] == pytest.approx(0.5)
    # 4 reals, 4 fakes; one real above every fake threshold crossing -> EER 0.25 exactly
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.75, 0.4, 0.8, 0.85, 0.9])
    assert eer(y, p)[0] == pytest.approx(0.25)
    assert auc(y, p) == pytest.approx(15 / 16)
    assert fpr_at_tpr(y, p, 0.95) == pytest.approx(0.25)
    assert tpr_at_fpr(y, p, 0.01) == pytest.approx(0.75)


def test_ece_on_known_binning():
    # bin [0.2,0.3): p 0.25 x2, one fake -> |0.5-0.25| ; bin [0.9,1]: p 0.95 x2, both fake -> 0.05
    y = np.array([0, 1, 1, 1])
    p = np.array([0.25, 0.25, 0.95, 0.95])
    ece, mce = ece_mce(y, p)
    assert ece == pytest.approx(0.5 * 0.25 + 0.5 * 0.05)
    assert mce == pytest.approx(0.25)


def test_threshold_counts():
    r = at_threshold([0, 0, 1, 1], [0.2, 0.6, 0.4, 0.9], 0.5)
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (1, 1, 1, 1)
    assert r["accuracy"] == 0.5


def test_metric_errors_say_what_to_do():
    with pytest.raises(MetricError, match="both real and fake"):
        compute_metrics([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(MetricError, match="NaN"):
        compute_metrics([0, 1, 1], [0.2, float("nan"), 0.9])
    with pytest.raises(MetricError, match="labels"):
        auc([0, 1], [0.1])
    with pytest.raises(MetricError, match="both real and fake"):
        fit_temperature([1.0, 2.0], [0, 0])


def test_temperature_fit_recovers_known_temperature():
    rng = np.random.default_rng(1)
    true_z = rng.normal(0, 2.0, 20000)  # calibrated logits
    y = (rng.random(true_z.size) < sigmoid(true_z)).astype(int)
    logits = true_z * 3.0  # an over-confident model: T = 3 undoes it
    t = fit_temperature(logits, y)
    assert t == pytest.approx(3.0, rel=0.08)
    rep = calibration_report(logits, y, t)
    assert rep["ece_after"] < rep["ece_before"]
    assert rep["nll_after"] < rep["nll_before"] == pytest.approx(nll(logits, y))


def test_platt_fit_recovers_known_temperature_and_shift():
    from dfdetect.metrics import fit_platt

    rng = np.random.default_rng(2)
    true_z = rng.normal(0, 2.0, 20000)
    y = (rng.random(true_z.size) < sigmoid(true_z)).astype(int)
    logits = true_z * 3.0 + 1.5  # over-confident and scoring every clip too high
    t, shift = fit_platt(logits, y)
    assert t == pytest.approx(3.0, rel=0.08) and shift == pytest.approx(-1.5, abs=0.15)
    assert nll(logits + shift, y, t) < nll(logits, y, fit_temperature(logits, y))  # the shift is worth it
    with pytest.raises(MetricError, match="both real and fake"):
        fit_platt([1.0, 2.0], [1, 1])


def test_aggregate_strategies():
    p = [0.1, 0.2, 0.9, 0.6]
    assert aggregate(p, "mean") == pytest.approx(0.45)
    assert aggregate(p, "max") == pytest.approx(0.9)
    assert aggregate(p, "topk", k=2) == pytest.approx(0.75)
    assert aggregate(p, "topk", k=0.25) == pytest.approx(0.9)
    assert aggregate(p, "topk", k=10) == pytest.approx(0.45)
    assert aggregate(p, "attention", weights=[0, 0, 1, 1]) == pytest.approx(0.75)
    assert aggregate(p, "mean", weights=[1, 0, 0, 0]) == pytest.approx(0.1)
    soft = aggregate(p, "attention")  # soft maximum: between mean and max
    assert aggregate(p, "mean") < soft < 0.9
    z = logit(np.array(p))
    assert aggregate(z, "max", space="logit") == pytest.approx(float(logit(0.9)))
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(p, "median")
    with pytest.raises(ValueError, match="probabilities"):
        aggregate([2.0, -1.0])
    with pytest.raises(ValueError, match="no scores"):
        aggregate([])
    with pytest.raises(ValueError, match="weights"):
        aggregate(p, "attention", weights=[1, 2])


def test_fast_bootstrap_curve_matches_sklearn():
    from dfdetect.metrics import _auc

    for seed in range(5):
        y, p = _random(200, seed)
        p = np.round(p, 1)  # many ties
        assert _auc(y, p) == pytest.approx(skm.roc_auc_score(y, p))


def test_binary_metrics_of_training_match_sklearn():
    """train's validation metrics come from the same module as eval's."""
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from dfdetect.metrics import binary_metrics
    from dfdetect.train.logging import binary_metrics as train_metrics

    assert train_metrics is binary_metrics
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    m = binary_metrics(s, y)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s)) and m["ap"] == pytest.approx(
        average_precision_score(y, s)
    )
    assert m["f1"] == pytest.approx(f1_score(y, s >= 0.5)) and m["n"] == 6 and m["n_fake"] == 3
    assert np.isnan(binary_metrics(s[:2], y[:2])["auc"])


def test_false_alarm_anchor_moves_the_fake_edge_onto_the_sources_quantile_and_keeps_the_real_edge() -> None:
    from dfdetect.metrics import false_alarm_anchor, source_quantile

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, 90), rng.normal(2, 1, 10)])  # a small source that scores high
    sources = ["big"] * 90 + ["small"] * 10
    out = false_alarm_anchor(z, sources, 0.95, (0.35, 0.65))
    mapped = (z - out["shift"]) / out["scale"]
    high = np.log(0.65 / 0.35)
    assert out["scale"] > 1 and source_quantile(mapped, sources, 0.95) == pytest.approx(high)
    assert np.mean(sigmoid(mapped) >= 0.65) <= 0.05 + 1 / z.size  # 5 % called fake, and the quantile
    assert np.array_equal(sigmoid(mapped) <= 0.35 + 1e-12, sigmoid(z) <= 0.35 + 1e-12)  # `real` as before
    assert out["n_real"] == 100 and out["sources"] == 2 and out["p_before"] > 0.65
    assert set(out["new_source_above"]) == {"per_source", "per_file"}
    low = false_alarm_anchor(z - 10, sources, 0.95, (0.35, 0.65))  # already below the edge: nothing moves
    assert (low["shift"], low["scale"]) == (0.0, 1.0) and low["p_before"] < 0.65
