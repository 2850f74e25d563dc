"""Is the uncertainty informative? Metrics and report section of ``dfdetect eval --uncertainty N``.

Read from ``predictions.jsonl`` records scored with stochastic passes (``record["uncertainty"]``, see
:class:`dfdetect.types.Uncertainty`). A video's decision is ``p_fake >= threshold`` (0.5, as in the
report's metrics table); it is *wrong* when it disagrees with the label. Uncertainty is informative
when the wrong decisions are the uncertain ones:

- ``auc_std`` / ``auc_width``: AUC of the spread (std, width of the 90 % interval) as a score for
  separating wrong from right decisions (0.5: no information; 1: every wrong decision is more
  uncertain than every right one).
- ``abstain``: accuracy on the videos kept after abstaining on the most uncertain 10 / 20 % (highest std),
  against the accuracy on all; ``curve``: the same at every abstention rate from 0 to 50 %, and
  ``baseline``: abstaining instead on the scores closest to the threshold (what p_fake alone offers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.eval import plots
from dfdetect.metrics import MetricError, auc

ABSTAIN_RATES = (0.1, 0.2)
CURVE_RATES = tuple(round(0.05 * i, 2) for i in range(11))  # 0 .. 50 %


def spread_table(records: list[dict]) -> dict[str, np.ndarray]:
    """Arrays over the labelled, scored records that carry an uncertainty: ``label``, ``p``, ``std``,
    ``width`` (high - low), ``crosses`` (interval across the verdict band)."""
    rows = [
        r
        for r in records
        if r.get("p_fake") is not None and r.get("uncertainty") and r["extras"].get("label") in (0, 1)
    ]
    return {
        "label": np.array([r["extras"]["label"] for r in rows], dtype=int),
        "p": np.array([r["p_fake"] for r in rows], dtype=np.float64),
        "std": np.array([r["uncertainty"]["std"] for r in rows], dtype=np.float64),
        "width": np.array(
            [r["uncertainty"]["high"] - r["uncertainty"]["low"] for r in rows], dtype=np.float64
        ),
        "crosses": np.array([bool(r["uncertainty"].get("crosses_band")) for r in rows], dtype=bool),
    }


def accuracy_after_abstaining(correct: np.ndarray, uncertainty: np.ndarray, rate: float) -> float:
    """Accuracy on what is left after abstaining on the ``floor(rate * n)`` most uncertain videos
    (ties in record order: results are reproducible)."""
    n = correct.size
    drop = int(np.floor(rate * n + 1e-9))
    if n == 0 or drop >= n:
        return float("nan")
    order = np.argsort(-uncertainty, kind="stable")  # most uncertain first
    kept = np.ones(n, dtype=bool)
    kept[order[:drop]] = False
    return float(correct[kept].mean())


def _auc_or_none(wrong: np.ndarray, score: np.ndarray) -> float | None:
    try:
        return auc(wrong, score)
    except MetricError:  # every decision right (or every one wrong): nothing to separate
        return None


def informativeness(records: list[dict], threshold: float = 0.5) -> dict[str, Any]:
    """The uncertainty metrics (see the module docstring) of ``records``; ``{"n": 0}`` without any."""
    t = spread_table(records)
    n = int(t["label"].size)
    if n == 0:
        return {"n": 0}
    correct = (t["p"] >= threshold).astype(int) == t["label"]
    wrong = (~correct).astype(int)
    closeness = -np.abs(t["p"] - threshold)  # the baseline: closest to the threshold = most uncertain
    return {
        "n": n,
        "threshold": threshold,
        "n_wrong": int(wrong.sum()),
        "n_crosses_band": int(t["crosses"].sum()),
        "mean_std_right": float(t["std"][correct].mean()) if correct.any() else None,
        "mean_std_wrong": float(t["std"][~correct].mean()) if wrong.any() else None,
        "auc_std": _auc_or_none(wrong, t["std"]),
        "auc_width": _auc_or_none(wrong, t["width"]),
        "auc_closeness": _auc_or_none(wrong, closeness),
        "accuracy": float(correct.mean()),
        "abstain": {f"{r:g}": accuracy_after_abstaining(correct, t["std"], r) for r in ABSTAIN_RATES},
        "curve": [[r, accuracy_after_abstaining(correct, t["std"], r)] for r in CURVE_RATES],
        "baseline": [[r, accuracy_after_abstaining(correct, closeness, r)] for r in CURVE_RATES],
    }


def _method(records: list[dict]) -> str:
    found = {
        (r["uncertainty"]["method"], r["uncertainty"]["passes"]) for r in records if r.get("uncertainty")
    }
    return ", ".join(f"{p} {m} passes" for m, p in sorted(found)) or "none"


def report_section(doc: Any, records: list[dict], figs: str | os.PathLike) -> dict[str, Any]:
    """The report's "Uncertainty" section (``doc``: the report's document) and its metrics."""
    doc.h2("Uncertainty")
    m = informativeness(records)
    if not m["n"]:
        doc.p("Not run: use `--uncertainty N` (N stochastic passes per video, e.g. 8).")
        return m
    doc.p(
        f"{m['n']} labelled videos with {_method(records)}. Decision: p_fake >= {m['threshold']:g}; "
        f"{m['n_wrong']} wrong. AUC of the spread for telling wrong from right decisions (0.5 = no "
        "information); accuracy after abstaining on the most uncertain videos (highest std). "
        f"{m['n_crosses_band']} video(s) had a 90 % interval across the verdict band (verdict uncertain)."
    )
    rows = [
        ["AUC of std (wrong vs right)", m["auc_std"]],
        ["AUC of 90 % interval width", m["auc_width"]],
        ["AUC of closeness to the threshold (p_fake alone)", m["auc_closeness"]],
        ["mean std, right / wrong", f"{_num(m['mean_std_right'])} / {_num(m['mean_std_wrong'])}"],
        ["accuracy, all videos", m["accuracy"]],
    ]
    rows += [
        [f"accuracy after abstaining on the most uncertain {float(r):.0%}", v]
        for r, v in m["abstain"].items()
    ]
    doc.table(["metric", "value"], rows)
    curves = {"by std (uncertainty)": m["curve"], "by closeness to the threshold": m["baseline"]}
    doc.img(plots.abstention_curve(curves, Path(figs) / "abstention.png"), "accuracy vs abstention")
    return m


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"
