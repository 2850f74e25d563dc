"""Evaluation report: ``report.md``, a self-contained ``report.html`` (PNGs inlined) and ``metrics.json``.

Built from the files :func:`dfdetect.eval.evaluate.evaluate` writes in ``out_dir`` (and the cache, for
thumbnails of the worst-predicted videos), so a report can be rebuilt without re-scoring anything.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.eval import localize, plots
from dfdetect.eval.attack import report_section as attack_section
from dfdetect.eval.uncertainty import report_section as uncertainty_section
from dfdetect.io.files import atomic_write_text, read_jsonl
from dfdetect.metrics import MetricError, accuracy_only, auc, compute_metrics

log = logging.getLogger(__name__)
SECTIONS = (
    "Protocol",
    "Coverage",
    "Metrics",
    "Breakdowns",
    "Cross-dataset generalization",
    "Modality ablation",
    "Temporal localization",
    "Robustness to perturbations",
    "Adversarial robustness",
    "Calibration",
    "Uncertainty",
    "Worst-predicted videos",
    "Training curves",
    "Figures",
)
BREAKDOWNS = (("dataset", "dataset"), ("method", "method"), ("compression", "compression"))
BREAKDOWNS += (("category", "FakeAVCeleb category"),)


class Doc:
    """A minimal document model rendered to Markdown and to self-contained HTML."""

    def __init__(self, title: str, root: Path) -> None:
        self.title, self.root, self.blocks = title, root, []

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def h3(self, text: str) -> None:
        self.blocks.append(("h3", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", headers, [[_fmt(v) for v in r] for r in rows]))

    def img(self, path: Path | None, alt: str) -> None:
        if path is not None and Path(path).is_file():
            self.blocks.append(("img", Path(path), alt))

    def markdown(self) -> str:
        out = [f"# {self.title}\n"]
        for kind, *args in self.blocks:
            if kind in ("h2", "h3"):
                out.append(f"{'#' * int(kind[1])} {args[0]}\n")
            elif kind == "p":
                out.append(f"{args[0]}\n")
            elif kind == "table":
                headers, rows = args
                out.append("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
                out.extend("| " + " | ".join(r) + " |" for r in rows)
                out.append("")
            else:
                out.append(f"![{args[1]}]({os.path.relpath(args[0], self.root)})\n")
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, *args in self.blocks:
            if kind in ("h2", "h3"):
                body.append(f"<{kind}>{html.escape(args[0])}</{kind}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(args[0])}</p>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in args[0])
                rows = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in args[1]
                )
                body.append(f"<table><tr>{head}</tr>{rows}</table>")
            else:
                mime = "image/jpeg" if args[0].suffix.lower() in (".jpg", ".jpeg") else "image/png"
                data = base64.b64encode(args[0].read_bytes()).decode("ascii")
                body.append(f'<img alt="{html.escape(args[1])}" src="data:{mime};base64,{data}">')
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
            "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
            "img{max-width:100%;margin:.5em 0;display:block}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
        )


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v).replace("|", "/")


def _scored(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("p_fake") is not None and r["extras"].get("label") in (0, 1)]


def _safe_metrics(labels, scores, **kw) -> dict[str, Any]:
    try:
        return compute_metrics(labels, scores, **kw)
    except MetricError as e:
        return {"error": str(e), **accuracy_only(labels, scores)}


def level_scores(records: list[dict], level: str) -> tuple[list[int], list[float]]:
    """(labels, calibrated p) at ``level`` (video, segment, frame) of the decisive track of each video.

    Segments and frames carry their video's label (the datasets label whole videos).
    """
    labels: list[int] = []
    scores: list[float] = []
    for r in _scored(records):
        y, ex = r["extras"]["label"], r["extras"]
        if level == "video":
            values = [r["p_fake"]]
        elif level == "segment":  # predictions carry calibrated segment and frame probabilities
            values = [s[2] for s in ex.get("segment_scores", {}).get(str(ex.get("decisive_track")), [])]
        else:
            fs = [f for f in ex.get("frame_scores", []) if f["track_id"] == ex.get("decisive_track")]
            values = list(fs[0]["p"]) if fs else []
        labels += [y] * len(values)
        scores += values
    return labels, scores


def breakdown(records: list[dict], key: str) -> list[list[Any]]:
    """Rows ``[value, n, n_real, n_fake, AUC, acc@0.5, mean p]`` per value of ``extras[key]``.

    For ``method``, a generator's AUC is its fakes against every real video of the same dataset(s).
    """
    scored = _scored(records)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in scored:
        groups[str(r["extras"].get(key) or "")].append(r)
    if set(groups) <= {""}:
        return []
    rows = []
    for value, recs in sorted(groups.items()):
        if key == "method" and value != "real":
            datasets = {r["extras"]["dataset"] for r in recs}
            recs_auc = recs + [
                r for r in scored if r["extras"]["label"] == 0 and r["extras"]["dataset"] in datasets
            ]
        else:
            recs_auc = recs
        y = [r["extras"]["label"] for r in recs]
        p = [r["p_fake"] for r in recs]
        try:
            a = auc([r["extras"]["label"] for r in recs_auc], [r["p_fake"] for r in recs_auc])
        except MetricError:
            a = None
        acc = accuracy_only(y, p)
        rows.append(
            [value or "(none)", acc["n"], acc["n_real"], acc["n_fake"], a, acc["accuracy"], acc["mean_p"]]
        )
    return rows


def _metric_rows(levels: dict[str, dict]) -> list[list[Any]]:
    keys = ("n", "auc", "auc_ci", "eer", "eer_ci", "ap", "fpr_at_95tpr", "tpr_at_1fpr")
    keys += ("log_loss", "brier", "ece", "mce")
    rows = []
    for k in keys:
        row: list[Any] = [k]
        for m in levels.values():
            v = m.get(k)
            row.append(f"[{v[0]:.4f}, {v[1]:.4f}]" if isinstance(v, list) else v)
        rows.append(row)
    return rows


def _threshold_rows(m: dict) -> list[list[Any]]:
    return [
        [t, v["accuracy"], v["precision"], v["recall"], v["f1"], v["tp"], v["fp"], v["tn"], v["fn"]]
        for t, v in m.get("at", {}).items()
    ]


def _auc_vs(records: list[dict], label_key: str) -> float | None:
    y, p = [], []
    for r in _scored(records):
        ex = r["extras"]
        lab = ex.get(label_key)
        lab = lab if lab is not None else (0 if ex["label"] == 0 else None)
        if lab is not None:
            y.append(lab)
            p.append(r["p_fake"])
    try:
        return auc(y, p)
    except MetricError:
        return None


def _thumbnail(record: dict, cache_dir: str | None, out: Path, n: int = 3) -> Path | None:
    """A strip of the ``n`` most suspicious face crops of a video (from the cache), or None."""
    import cv2

    from dfdetect.data.cache import CacheError, read_entry

    ex = record["extras"]
    fs = [f for f in ex.get("frame_scores", []) if f["track_id"] == ex.get("decisive_track")]
    if not cache_dir or not fs or not fs[0]["p"]:
        return None
    try:
        clip = read_entry(cache_dir, record["path"])
    except CacheError:
        return None
    face = next((f for f in clip.faces if f.track.track_id == ex["decisive_track"]), None)
    if face is None:
        return None
    order = np.argsort(fs[0]["p"])[::-1][:n]
    crops = [cv2.resize(np.asarray(face.crops[fs[0]["index"][i]]), (112, 112)) for i in order]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.hstack(crops)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    return out


def _load(out: Path, rel: str) -> Any:
    path = out / rel
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _sec_protocol(doc: Doc, card: dict) -> None:
    doc.h2("Protocol")
    keys = (
        "model",
        "checkpoint_hash",
        "temperature",
        "split",
        "detector",
        "cache_fps",
        "crop_size",
        "margin",
    )
    keys += ("max_duration", "model_fps", "model_size", "clip_frames", "window_seconds", "aggregation")
    keys += ("modality_mask", "frames_per_video", "dfdetect_version", "date")
    rows = [[k, card.get(k)] for k in keys]
    fakes = card.get("pseudofakes")
    if fakes:
        rows.append(["pseudofakes", f"{fakes.get('counts')} ({fakes.get('note', '')})"])
    rows += [[f"manifest {m['path']}", f"sha256 {m['hash']}"] for m in card.get("manifests", [])]
    doc.table(["field", "value"], rows)


def _sec_coverage(doc: Doc, records: list[dict]) -> dict[str, int]:
    doc.h2("Coverage")
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        counts[r["status"]] += 1
    doc.p(
        f"{len(records)} videos; {len(_scored(records))} scored (status ok or no_audio). "
        "Videos without a score are left out of every metric."
    )
    doc.table(["status", "videos"], [[k, v] for k, v in sorted(counts.items())])
    return dict(counts)


def _sec_metrics(doc: Doc, records: list[dict], n_boot: int, thresholds) -> dict:
    doc.h2("Metrics")
    levels = {}
    for level in ("video", "segment", "frame"):
        y, p = level_scores(records, level)
        levels[level] = _safe_metrics(
            y, p, n_boot=n_boot if level == "video" else min(n_boot, 200), thresholds=thresholds
        )
    doc.p("Video level is the verdict level; segments and frames carry their video's label.")
    doc.table(["metric", *levels], _metric_rows(levels))
    for level, m in levels.items():
        if "error" in m:
            doc.p(f"{level} level: {m['error']}")
    doc.h3("Video level at decision thresholds")
    doc.table(
        ["threshold", "accuracy", "precision", "recall", "F1", "TP", "FP", "TN", "FN"],
        _threshold_rows(levels["video"]),
    )
    return levels


def _sec_breakdowns(doc: Doc, records: list[dict], figs: Path) -> dict:
    doc.h2("Breakdowns")
    out = {}
    for key, title in BREAKDOWNS:
        doc.h3(f"By {title}")
        rows = breakdown(records, key)
        out[key] = rows
        if rows:
            doc.table([key, "n", "real", "fake", "AUC", "acc@0.5", "mean p"], rows)
        else:
            doc.p(f"No {title} information in the manifest.")
    methods = {r[0]: r[4] for r in out["method"] if r[0] != "real"}
    if methods:
        doc.img(
            plots.bars(methods, figs / "auc_per_method.png", "AUC per method (vs reals)", "AUC"),
            "AUC per method",
        )
    return out


def _sec_cross(doc: Doc, out: Path, card: dict, in_domain: dict) -> list[list[Any]]:
    doc.h2("Cross-dataset generalization")
    names = list((card.get("cross") or {}).keys())
    if not names:
        doc.p("Not run: give more manifests (`--manifest in_domain.csv --manifest other.csv`).")
        return []
    base = in_domain.get("auc")
    rows = [
        [
            card.get("in_domain", "in-domain") + " (in-domain)",
            in_domain.get("n"),
            base,
            in_domain.get("eer"),
            in_domain.get("ap"),
            0.0,
        ]
    ]
    for name in names:
        m = _safe_metrics(
            *level_scores(read_jsonl(out / "cross" / name / "predictions.jsonl"), "video"), n_boot=0
        )
        gap = base - m["auc"] if base is not None and m.get("auc") is not None else None
        rows.append([name, m.get("n"), m.get("auc"), m.get("eer"), m.get("ap"), gap])
    doc.p("Generalization gap = in-domain AUC - AUC on the other dataset.")
    doc.table(["dataset", "n", "AUC", "EER", "AP", "gap"], rows)
    return rows


def _sec_ablation(doc: Doc, out: Path, fused: list[dict]) -> list[list[Any]]:
    doc.h2("Modality ablation")
    files = {m: out / "ablation" / f"predictions-{m}.jsonl" for m in ("video", "audio")}
    if not all(f.is_file() for f in files.values()):
        doc.p("Not run: use `--ablation`.")
        return []
    runs = {
        "fused": fused,
        "video only": read_jsonl(files["video"]),
        "audio only": read_jsonl(files["audio"]),
    }
    rows = [
        [
            name,
            len(_scored(recs)),
            _auc_vs(recs, "label"),
            _auc_vs(recs, "video_label"),
            _auc_vs(recs, "audio_label"),
        ]
        for name, recs in runs.items()
    ]
    doc.p(
        "Video only: audio masked out. Audio only: frames zeroed. "
        "Per-modality labels where the manifest has them."
    )
    doc.table(["inputs", "scored", "AUC (label)", "AUC (video label)", "AUC (audio label)"], rows)
    return rows


def _sec_perturb(doc: Doc, out: Path, clean_auc: float | None, figs: Path) -> list[dict]:
    doc.h2("Robustness to perturbations")
    table = _load(out, "perturb.json")
    if not table:
        doc.p("Not run: use `--perturb`.")
        return []
    rows = [["clean", "", "", None, clean_auc, None, None]]
    rows += [
        [t["perturbation"], t["severity"], t["unit"], t["n"], t["auc"], t["mean_p_real"], t["mean_p_fake"]]
        for t in table
    ]
    doc.table(["perturbation", "severity", "unit", "n", "AUC", "mean p real", "mean p fake"], rows)
    doc.img(
        plots.perturbation_curves(table, clean_auc, figs / "perturbations.png"), "AUC under perturbations"
    )
    return table


def _sec_calibration(doc: Doc, out: Path, records: list[dict], video: dict) -> None:
    doc.h2("Calibration")
    cal = _load(out, "calibration.json")
    if cal:
        doc.table(["field", "value"], [[k, v] for k, v in cal.items()])
    else:
        doc.p("Temperature from the checkpoint (fit one with `--calibrate`).")
    doc.p(f"Test ECE {_fmt(video.get('ece'))}, MCE {_fmt(video.get('mce'))} (10 equal-width bins).")


def _sec_worst(doc: Doc, out: Path, records: list[dict], cache_dir: str | None, n: int = 10) -> list[dict]:
    doc.h2("Worst-predicted videos")
    scored = sorted(_scored(records), key=lambda r: -abs(r["extras"]["label"] - r["p_fake"]))[:n]
    rows = []
    for i, r in enumerate(scored):
        ex = r["extras"]
        rows.append([i + 1, r["path"], ex["label"], ex.get("method"), r["p_fake"], r["verdict"]])
    doc.table(["#", "path", "label", "method", "p_fake", "verdict"], rows)
    for i, r in enumerate(scored):
        thumb = _thumbnail(r, cache_dir, out / "thumbs" / f"worst_{i + 1:02d}.jpg")
        if thumb is not None:
            doc.p(
                f"#{i + 1} {Path(r['path']).name} (label {r['extras']['label']}, p_fake {r['p_fake']:.3f}): "
                "most suspicious frames"
            )
            doc.img(thumb, f"worst {i + 1}")
    return [{"path": r["path"], "label": r["extras"]["label"], "p_fake": r["p_fake"]} for r in scored]


def _sec_training(doc: Doc, run_dir: str | None, figs: Path) -> None:
    doc.h2("Training curves")
    records = plots.training_records(run_dir) if run_dir else []
    path = plots.training_curves(records, figs / "training.png") if records else None
    if path is None:
        doc.p("Not available: pass `--run-dir RUN` (a training run folder with metrics.jsonl or tb/).")
    doc.img(path, "training curves")


def _sec_figures(doc: Doc, records: list[dict], figs: Path) -> None:
    doc.h2("Figures")
    curves = {}
    for level in ("video", "segment", "frame"):
        y, p = level_scores(records, level)
        if len(set(y)) == 2:
            curves[level] = (y, p)
    if not curves:
        doc.p("No figures: the scored videos do not hold both classes.")
        return
    doc.img(plots.roc_curve(curves, figs / "roc.png"), "ROC")
    doc.img(plots.pr_curve(curves, figs / "pr.png"), "precision-recall")
    doc.img(plots.reliability_diagram(*curves["video"], figs / "reliability.png"), "reliability")
    doc.img(plots.score_histogram(*curves["video"], figs / "histogram.png"), "score histogram")


def build_report(
    out_dir: str | os.PathLike, run_dir: str | os.PathLike | None = None, n_boot: int = 1000
) -> Path:
    """(Re)build ``report.md``, ``report.html`` and ``metrics.json`` from the files in ``out_dir``."""
    out = Path(out_dir)
    records = read_jsonl(out / "predictions.jsonl")
    card = _load(out, "protocol.json") or {}
    thresholds = card.get("thresholds", (0.5, 0.6, 0.7))
    frames = [sum(len(f["t"]) for f in r["extras"].get("frame_scores", [])[:1]) for r in _scored(records)]
    card["frames_per_video"] = round(float(np.mean(frames)), 1) if frames else None
    figs = out / "figures"
    doc = Doc(
        f"dfdetect evaluation: {card.get('model', '')} on {card.get('in_domain', '')} "
        f"({card.get('split', '')})",
        out,
    )
    _sec_protocol(doc, card)
    result: dict[str, Any] = {"protocol": card, "coverage": _sec_coverage(doc, records)}
    result["levels"] = _sec_metrics(doc, records, n_boot, thresholds)
    video = result["levels"]["video"]
    result["breakdowns"] = _sec_breakdowns(doc, records, figs)
    result["cross"] = _sec_cross(doc, out, card, video)
    result["ablation"] = _sec_ablation(doc, out, records)
    result["localization"] = localize.report_section(doc, records, figs)
    result["perturb"] = _sec_perturb(doc, out, video.get("auc"), figs)
    result["attack"] = attack_section(doc, out, figs)
    _sec_calibration(doc, out, records, video)
    result["uncertainty"] = uncertainty_section(doc, records, figs)
    result["worst"] = _sec_worst(doc, out, records, card.get("cache_dir"))
    _sec_training(doc, str(run_dir or card.get("run_dir") or "") or None, figs)
    _sec_figures(doc, records, figs)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2, default=str))
    atomic_write_text(out / "report.html", doc.html())
    return atomic_write_text(out / "report.md", doc.markdown())
