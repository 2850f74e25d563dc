"""Figures of evaluation reports (matplotlib, headless: ``Figure`` objects, no pyplot state, no display).

Every function writes one PNG to ``path`` and returns it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as skm

from dfdetect.metrics import reliability

_DPI = 100


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def roc_curve(curves: dict[str, tuple[Sequence[int], Sequence[float]]], path: str | os.PathLike) -> Path:
    """ROC curves, one per name -> (labels, scores), with AUC in the legend."""
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot()
    for name, (y, s) in curves.items():
        fpr, tpr, _ = skm.roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {skm.roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01)
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def pr_curve(curves: dict[str, tuple[Sequence[int], Sequence[float]]], path: str | os.PathLike) -> Path:
    """Precision-recall curves (fake = positive), average precision in the legend."""
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot()
    for name, (y, s) in curves.items():
        prec, rec, _ = skm.precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{name} (AP {skm.average_precision_score(y, s):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def reliability_diagram(labels, probs, path: str | os.PathLike, n_bins: int = 10) -> Path:
    """Observed fake rate against mean p_fake per bin, with the bin counts below."""
    r = reliability(labels, probs, n_bins)
    centers = (r["edges"][:-1] + r["edges"][1:]) / 2
    used = r["count"] > 0
    fig = Figure(figsize=(4.5, 5))
    ax, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.bar(centers[used], r["observed"][used], width=1 / n_bins, edgecolor="k", alpha=0.7, label="observed")
    ax.plot(r["confidence"][used], r["observed"][used], "o", color="C3", label="mean p per bin")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(ylabel="fraction fake", title="Reliability", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    ax2.bar(centers, r["count"], width=1 / n_bins, edgecolor="k", color="gray")
    ax2.set(xlabel="p_fake", ylabel="videos")
    return _save(fig, path)


def score_histogram(labels, probs, path: str | os.PathLike) -> Path:
    """Histograms of p_fake for real and fake videos."""
    y, p = np.asarray(labels), np.asarray(probs, dtype=float)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 21)
    ax.hist(p[y == 0], bins=bins, alpha=0.6, label=f"real (n={int((y == 0).sum())})", color="C0")
    ax.hist(p[y == 1], bins=bins, alpha=0.6, label=f"fake (n={int((y == 1).sum())})", color="C3")
    ax.set(xlabel="p_fake", ylabel="videos", title="Scores by class")
    ax.legend(fontsize=8)
    return _save(fig, path)


def bars(values: dict[str, float | None], path: str | os.PathLike, title: str, ylabel: str) -> Path:
    """One bar per name (e.g. AUC or detection rate per method); missing values are left empty."""
    names = list(values)
    fig = Figure(figsize=(max(4.0, 0.6 * len(names) + 2), 3.5))
    ax = fig.add_subplot()
    ax.bar(names, [v if v is not None else 0 for v in values.values()], color="C2", edgecolor="k")
    ax.set(ylabel=ylabel, title=title, ylim=(0, 1.05))
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    return _save(fig, path)


def perturbation_curves(
    table: list[dict[str, Any]], clean_auc: float | None, path: str | os.PathLike
) -> Path:
    """AUC against severity, one panel per perturbation (clean AUC dashed)."""
    names = list(dict.fromkeys(r["perturbation"] for r in table))
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig = Figure(figsize=(3.2 * cols, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        pts = [r for r in table if r["perturbation"] == name]
        x = np.arange(len(pts))
        ax.plot(x, [r["auc"] if r["auc"] is not None else np.nan for r in pts], "o-")
        if clean_auc is not None:
            ax.axhline(clean_auc, ls="--", color="k", lw=0.8)
        ax.set_xticks(x, [f"{r['severity']:g}" for r in pts])
        ax.set(title=name, xlabel=pts[0].get("unit", "severity"), ylabel="AUC", ylim=(0, 1.02))
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return _save(fig, path)


def abstention_curve(curves: dict[str, list[list[float]]], path: str | os.PathLike) -> Path:
    """Accuracy of the kept videos against the share abstained on, one line per name -> [[rate, acc]]."""
    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.add_subplot()
    for i, (name, pts) in enumerate(curves.items()):
        x = [100 * r for r, _ in pts]
        ax.plot(x, [np.nan if a is None else a for _, a in pts], "o-" if i == 0 else "s--", ms=3, label=name)
    ax.set(xlabel="abstained on (% of videos, most uncertain first)", ylabel="accuracy of the rest")
    ax.set_title("Accuracy vs abstention", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


_CURVES = {
    "loss": lambda k: "loss" in k,
    "AUC / F1": lambda k: k in ("auc", "f1", "ap"),
    "precision / recall": lambda k: k in ("precision", "recall"),
    "learning rate": lambda k: k in ("lr",) or k.startswith("lr"),
}


def training_records(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a run: ``metrics.jsonl``, else the TensorBoard scalars of ``tb/`` (``split/key`` tags)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not (run_dir / "tb").is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    out = []
    for tag in acc.Tags().get("scalars", []):
        split, _, key = tag.rpartition("/")
        out += [{"split": split or "train", "step": e.step, key: e.value} for e in acc.Scalars(tag)]
    return out


def training_curves(records: list[dict[str, Any]], path: str | os.PathLike) -> Path | None:
    """Loss, AUC/F1, precision/recall and learning rate against step, per split. None when no records."""
    panels: dict[str, dict[str, tuple[list, list]]] = {title: {} for title in _CURVES}
    for rec in records:
        split = rec.get("split", "train")
        for key, value in rec.items():
            if key in ("split", "step", "epoch") or not isinstance(value, int | float) or value is None:
                continue
            for title, match in _CURVES.items():
                if match(key) and np.isfinite(value):
                    xs, ys = panels[title].setdefault(f"{split}/{key}", ([], []))
                    xs.append(rec.get("step", len(xs)))
                    ys.append(value)
    panels = {t: c for t, c in panels.items() if c}
    if not panels:
        return None
    fig = Figure(figsize=(4 * len(panels), 3.2))
    for ax, (title, curves) in zip(
        np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel(), panels.items(), strict=True
    ):
        for name, (xs, ys) in curves.items():
            ax.plot(xs, ys, "-" if len(xs) > 1 else "o", label=name)
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=7)
    return _save(fig, path)


def attack_curve(table: dict[str, Any], path: str | os.PathLike) -> Path:
    """AUC and attack success rate against eps (8-bit levels; eps 0 = the clean scores)."""
    rows = table["results"]
    x = [0.0] + [r["eps"] * 255 for r in rows]
    nan = lambda v: np.nan if v is None else v  # noqa: E731
    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.add_subplot()
    ax.plot(x, [nan(table["clean"]["auc"])] + [nan(r["auc"]) for r in rows], "o-", label="AUC")
    ax.plot(x, [0.0] + [nan(r["success_rate"]) for r in rows], "s--", color="C3", label="attack success rate")
    ax.axhline(0.5, ls=":", color="k", lw=0.8)
    source = f", crafted on {Path(table['source']).name}" if table.get("source") else ""
    ax.set(xlabel="eps (8-bit levels)", ylim=(0, 1.02), title=f"{table['kind'].upper()}{source}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def attack_examples(examples: list[dict[str, Any]], eps: float, path: str | os.PathLike) -> Path:
    """One row per example (``clean``/``adv`` HWC pixels in [0, 1], ``title``): clean, adversarial and
    the perturbation amplified to the full range (grey = unchanged)."""
    gain = 1.0 / (2 * eps) if eps > 0 else 1.0
    fig = Figure(figsize=(7.5, 2.6 * len(examples)))
    axes = np.atleast_2d(fig.subplots(len(examples), 3, squeeze=False))
    for row, ex in zip(axes, examples, strict=True):
        delta = np.clip(0.5 + (ex["adv"] - ex["clean"]) * gain, 0, 1)
        panels = (ex["clean"], ex["adv"], delta)
        names = ("clean", f"adversarial (eps {eps * 255:.3g}/255)", f"perturbation x{gain:.0f}")
        for ax, img, name in zip(row, panels, names, strict=True):
            ax.imshow(np.clip(img, 0, 1))
            ax.set_title(name, fontsize=8)
            ax.axis("off")
        row[0].text(0, -0.12, ex.get("title", ""), transform=row[0].transAxes, fontsize=7, va="top")
    return _save(fig, path)


def localization_timelines(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Truth vs prediction, one row per video: manipulated spans (shaded), the per-second timeline p
    (steps) and the suspicious segments (bars at the top)."""
    fig = Figure(figsize=(7.0, 1.5 * len(records) + 0.4))
    for i, r in enumerate(records):
        ax = fig.add_subplot(len(records), 1, i + 1)
        for j, (a, b) in enumerate(r["extras"].get("segments") or []):
            ax.axvspan(a, b, color="C3", alpha=0.25, lw=0, label="manipulated" if j == 0 else None)
        steps = np.asarray(r.get("timeline") or [], np.float64).reshape(-1, 3)
        xs, ys = [], []
        for a, b, p in steps:  # flat steps, broken where seconds are missing (no face)
            if xs and abs(xs[-1] - a) > 1e-6:
                xs, ys = [*xs, np.nan], [*ys, np.nan]
            xs, ys = [*xs, a, b], [*ys, p, p]
        ax.plot(xs, ys, color="C0", lw=1.2, label="p_fake per second")
        for j, (a, b, _) in enumerate(r.get("suspicious") or []):
            ax.hlines(1.04, a, b, color="k", lw=4, label="suspicious" if j == 0 else None)
        end = max(float(r["extras"].get("duration") or 0), float(steps[-1, 1]) if len(steps) else 1.0)
        ax.set(ylim=(0, 1.1), xlim=(0, end))
        ax.set_title(f"{Path(r['path']).name} (label {r['extras'].get('label')})", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, frameon=False)
    fig.axes[-1].set_xlabel("seconds")
    return _save(fig, path)
