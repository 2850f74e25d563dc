"""Temporal localization: how well the predicted fake segments match the known manipulated spans.

Where a manifest knows where each fake is (the ``segments`` column: LAV-DF, AV-Deepfake1M), eval scores
each prediction's per-second timeline as segment proposals with the metrics LAV-DF and AV-Deepfake1M
report (their ``metrics.py`` / ``loc_1d.rs``, BA-TFD's evaluation):

* **Proposals** of a video: every run of consecutive timeline seconds whose calibrated p is at or above a
  threshold, for thresholds 0.05, 0.10, ..., 0.95 (the multi-threshold grouping of temporal action
  proposals; the ``suspicious`` segments of a prediction are the runs at the verdict threshold), scored
  by their mean p, ranked by score, at most 100 per video.
* **AP@IoU** (0.5, 0.75, 0.95): every proposal of every video (real videos included: all their proposals
  are false positives) ranked by score; for each true span, in order, the best-ranked unmatched
  proposal with IoU > threshold is a true positive; AP is the area under the interpolated
  precision-recall curve (precision at recall r = the best precision at recall >= r). The reference
  code leaves out the first recall step (1 / number of spans, negligible on the full benchmarks, but it
  makes a perfect single detection score 0); it is included here.
* **AR@N** (N = 100, 50, 20, 10): the share of true spans whose best IoU among a video's top-N proposals
  is > t, averaged over t = 0.5, 0.55, ..., 0.95.
* **Second-level AUC**: every timeline second labelled fake when it overlaps a manipulated span, scored
  by its p: whether the timeline ranks manipulated seconds above the others, with no thresholds or
  matching involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.metrics import MetricError, auc

AP_IOUS = (0.5, 0.75, 0.95)
AR_NS = (100, 50, 20, 10)
AR_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5 .. 0.95
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
MAX_PROPOSALS = 100
Curve = Sequence[Sequence[float]]  # [(t0, t1, p), ...]
Proposals = np.ndarray  # [P, 3] (score, t0, t1), ranked by score


def iou_1d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[P, G]`` IoU of the ``[P, 2]`` intervals ``a`` with the ``[G, 2]`` intervals ``b`` (seconds)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 2), np.asarray(b, np.float64).reshape(-1, 2)
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0])
    union = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    return np.clip(inter, 0, None) / np.maximum(union, 1e-9)


def proposals(curve: Curve, thresholds: Sequence[float] = THRESHOLDS, most: int = MAX_PROPOSALS) -> Proposals:
    """Segment proposals of a score curve: runs of consecutive steps with p >= each threshold.

    Args:
        curve: ``(t0, t1, p)`` per step (a prediction's per-second timeline), in time order.
        thresholds: the grouping thresholds.
        most: proposals kept (the best-scored).

    Returns:
        ``[P, 3]`` rows ``(score = mean p of the run, t0, t1)``, highest score first (ties: earlier, then
        shorter first); one row per distinct span.
    """
    steps = np.asarray(curve, np.float64).reshape(-1, 3)
    found: dict[tuple[float, float], float] = {}
    for thr in thresholds:
        start = None
        for i in range(len(steps) + 1):
            inside = i < len(steps) and steps[i, 2] >= thr
            joined = inside and start is not None and abs(steps[i, 0] - steps[i - 1, 1]) < 1e-6
            if start is not None and not joined:  # the run start..i-1 ends here
                span = (round(steps[start, 0], 4), round(steps[i - 1, 1], 4))
                found[span] = max(found.get(span, 0.0), float(steps[start:i, 2].mean()))
                start = None
            if inside and start is None:
                start = i
    ranked = sorted(found.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] - kv[0][0]))[:most]
    return np.array([(s, a, b) for (a, b), s in ranked], np.float64).reshape(-1, 3)


def match(props: Proposals, truth: np.ndarray, iou: float) -> np.ndarray:
    """``[P]`` bool: true positives of one video at ``iou`` (the reference matching: for each true span in
    turn, the best-ranked proposal not taken yet whose IoU is above ``iou``)."""
    hit = iou_1d(props[:, 1:], truth) > iou  # [P, G]
    tp = np.zeros(len(props), bool)
    for g in range(hit.shape[1]):
        free = np.flatnonzero(hit[:, g] & ~tp)
        if free.size:
            tp[free[0]] = True
    return tp


def average_precision(videos: Sequence[tuple[Proposals, np.ndarray]], iou: float) -> float | None:
    """AP at ``iou`` over ``(proposals, true spans [G, 2])`` of every video (None: no true spans)."""
    n_true = sum(len(t) for _, t in videos)
    if n_true == 0:
        return None
    conf = np.concatenate([p[:, 0] for p, _ in videos] + [np.zeros(0)])
    tp = np.concatenate([match(p, t, iou) for p, t in videos] + [np.zeros(0, bool)])
    order = np.argsort(-conf, kind="stable")
    hits = np.cumsum(tp[order])  # [P]
    precision, recall = hits / np.arange(1, len(hits) + 1), hits / n_true
    best = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at recall >= this one
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * best).sum())


def average_recall(
    videos: Sequence[tuple[Proposals, np.ndarray]], ns: Sequence[int] = AR_NS, ious: Sequence[float] = AR_IOUS
) -> dict[int, float | None]:
    """AR@N for each N of ``ns``: recall of the true spans by each video's top-N proposals, averaged over
    the IoU thresholds ``ious`` (None: no true spans)."""
    n_true = sum(len(t) for _, t in videos)
    found = np.zeros((len(ious), len(ns)))
    for props, truth in videos:
        if not len(truth) or not len(props):
            continue
        best = np.maximum.accumulate(iou_1d(props[:, 1:], truth), axis=0)  # [P, G] best IoU in the top-n
        for j, n in enumerate(ns):
            top = best[min(n, len(props)) - 1]  # [G]
            found[:, j] += (top[None, :] > np.asarray(ious)[:, None]).sum(1)
    return {n: (float(found[:, j].mean() / n_true) if n_true else None) for j, n in enumerate(ns)}


def second_labels(curve: Curve, truth: np.ndarray) -> tuple[list[int], list[float]]:
    """(labels, p) of each step of ``curve``: fake (1) when it overlaps a true span."""
    steps = np.asarray(curve, np.float64).reshape(-1, 3)
    if not len(steps):
        return [], []
    overlap = iou_1d(steps[:, :2], truth) > 0 if len(truth) else np.zeros((len(steps), 1), bool)
    return overlap.any(1).astype(int).tolist(), steps[:, 2].tolist()


def frame_curve(record: dict[str, Any]) -> list[tuple[float, float, float]]:
    """The decisive track's per-frame calibrated p of a prediction record as ``(t, t + period, p)``."""
    ex = record.get("extras", {})
    fs = next((f for f in ex.get("frame_scores", []) if f["track_id"] == ex.get("decisive_track")), None)
    if not fs or len(fs["t"]) < 2:
        return []
    t = np.asarray(fs["t"], np.float64)
    ends = np.append(t[1:], t[-1] + float(np.median(np.diff(t))))
    return [(float(a), float(b), float(p)) for a, b, p in zip(t, ends, fs["p"], strict=True)]


def curve_of(record: dict[str, Any], level: str) -> Curve:
    """A record's score curve: ``timeline`` (per second, the prediction's) or ``frames`` (decisive track)."""
    return frame_curve(record) if level == "frames" else (record.get("timeline") or [])


def truth(record: dict[str, Any]) -> np.ndarray | None:
    """``[G, 2]`` manipulated spans of a record: its ``extras.segments``; none (``[0, 2]``) for a real
    video; None when unknown (a fake of a dataset that labels whole videos)."""
    ex = record.get("extras", {})
    if ex.get("segments") is not None:
        return np.asarray(ex["segments"], np.float64).reshape(-1, 2)
    return np.zeros((0, 2)) if ex.get("label") == 0 else None


def localized(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with known manipulated spans, when some record has ``segments`` (LAV-DF, AV-Deepfake1M,
    ``sbi_partial`` pseudo-fakes): those, and the real videos (no spans); else none."""
    if not any(r.get("extras", {}).get("segments") is not None for r in records):
        return []
    return [r for r in records if truth(r) is not None]


def localization_scores(records: Sequence[dict[str, Any]], level: str = "timeline") -> dict[str, Any]:
    """AP@IoU, AR@N and second-level AUC of ``records`` (prediction dicts; unscored ones propose nothing)."""
    videos, labels, scores = [], [], []
    for r in localized(records):
        spans, curve = truth(r), curve_of(r, level)
        videos.append((proposals(curve), spans))
        y, p = second_labels(curve, spans)
        labels += y
        scores += p
    try:
        step_auc = auc(labels, scores)
    except MetricError:
        step_auc = None
    return {
        "level": level,
        "n_videos": len(videos),
        "n_segments": int(sum(len(t) for _, t in videos)),
        "ap": {str(t): average_precision(videos, t) for t in AP_IOUS},
        "ar": {str(n): v for n, v in average_recall(videos).items()},
        "step_auc": step_auc,
    }


def _examples(records: Sequence[dict[str, Any]], n: int = 4) -> list[dict[str, Any]]:
    """A few localized, scored videos to plot: the first fakes (by path), then one real video."""
    scored = [r for r in localized(records) if r.get("timeline")]
    fakes = sorted((r for r in scored if len(truth(r))), key=lambda r: r["path"])
    reals = sorted((r for r in scored if not len(truth(r))), key=lambda r: r["path"])
    return fakes[: n - 1] + reals[:1] if reals else fakes[:n]


def report_section(doc: Any, records: Sequence[dict[str, Any]], figs: Path) -> list[dict[str, Any]]:
    """The report's "Temporal localization" section (``doc``: eval.report.Doc); returns its scores."""
    from dfdetect.eval import plots

    doc.h2("Temporal localization")
    if not localized(records):
        doc.p(
            "Not available: the manifest has no segment labels (LAV-DF, AV-Deepfake1M: `segments`); on any "
            "real videos, `--pseudofakes sbi_partial` adds fakes whose manipulated span is known."
        )
        return []
    levels = ["timeline"] + (["frames"] if any(frame_curve(r) for r in localized(records)) else [])
    results = [localization_scores(records, level) for level in levels]
    doc.p(
        "Proposals: runs of timeline steps at or above thresholds 0.05..0.95, scored by their mean p (top 100"
        " per video). AP@IoU as LAV-DF and AV-Deepfake1M report it (all videos, real ones included); AR@N"
        " averaged over IoU 0.5..0.95; step AUC: manipulated steps against the others. timeline = the"
        " per-second timeline; frames = the decisive face track's frame scores."
    )
    head = ["level", "videos", "fake segments", *(f"AP@{t}" for t in AP_IOUS), *(f"AR@{n}" for n in AR_NS)]
    rows = [
        [r["level"], r["n_videos"], r["n_segments"], *r["ap"].values(), *r["ar"].values(), r["step_auc"]]
        for r in results
    ]
    doc.table([*head, "step AUC"], rows)
    examples = _examples(records)
    if examples:
        doc.img(plots.localization_timelines(examples, figs / "localization.png"), "truth vs prediction")
    return results
