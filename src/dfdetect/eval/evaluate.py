"""Manifest + cache + checkpoint -> ``predictions.jsonl`` (one Prediction per video), then the report.

Scoring is the scan core's: :class:`~dfdetect.infer.pipeline.Detector` scores each cached clip
(:meth:`~dfdetect.infer.pipeline.Detector.score`), exactly as ``dfdetect scan`` scores a file.

Output folder (``out_dir``)::

    predictions.jsonl              in-domain manifest: one ``Prediction.to_dict()`` per video (key: full path)
    cross/<name>/predictions.jsonl every further manifest (cross-dataset generalisation)
    ablation/predictions-{video,audio}.jsonl   modality ablation (fused = predictions.jsonl)
    perturb.json                   AUC per perturbation and severity
    calibration.json               temperature fit (``calibrate=True``)

With ``pseudofakes``, every file above also holds one held-back pseudo-fake per real video and kind (rows
keyed ``"<path>#<kind>"``, method = the kind; see :mod:`dfdetect.eval.pseudofakes`).
    protocol.json                  the protocol card
    report.md, report.html, metrics.json, figures/, thumbs/

The report (:func:`dfdetect.eval.report.build_report`) reads only these files (and the cache, for the
thumbnails of the worst-predicted videos).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from dfdetect._version import __version__
from dfdetect.config import PreparedDir
from dfdetect.data.cache import CacheError, entry_path, read_entry, read_meta
from dfdetect.data.manifest import ManifestRow, file_hash, read_manifest, select
from dfdetect.io.files import atomic_write_text, read_jsonl, write_jsonl
from dfdetect.types import Clip, Prediction, Status

if TYPE_CHECKING:
    from dfdetect.infer.pipeline import Detector

log = logging.getLogger(__name__)
__all__ = ["EvalOptions", "evaluate", "predict_rows", "read_jsonl", "write_jsonl"]
SCORED = (Status.OK, Status.NO_AUDIO)


def load_for_eval(checkpoint: str | os.PathLike, device: str = "cpu", aggregation: str = "mean") -> Detector:
    """The :class:`~dfdetect.infer.pipeline.Detector` that eval drives over cached clips."""
    from dfdetect.infer.pipeline import Detector

    return Detector.from_checkpoint(checkpoint, device=device, aggregation=aggregation)


def _identity(detector: Detector) -> tuple[str, str]:
    """(checkpoint path, its hash) of a detector ('' and 'none' for a model built in memory)."""
    path = detector.checkpoint.path if detector.checkpoint is not None else None
    return (str(path), file_hash(path)) if path is not None else ("", "none")


def row_meta(row: ManifestRow) -> dict[str, Any]:
    """Manifest facts copied into each prediction's ``extras``."""
    return {
        "label": row.label,
        "method": row.method,
        "dataset": row.dataset,
        "compression": row.compression,
        "category": row.category,
        "video_label": row.video_label,
        "audio_label": row.audio_label,
        "split": row.split,
        "group": row.group,
        "segments": None if row.segments is None else [list(s) for s in row.segments],  # localization truth
    }


def _prepare_statuses(cache_dir: Path) -> dict[str, dict]:
    """``prepare_report.jsonl`` beside the cache (path -> record), to explain videos without an entry."""
    report = PreparedDir.of_cache(cache_dir).report
    out: dict[str, dict] = {}
    if report.is_file():
        for line in report.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                out[str(rec.get("path"))] = rec
            except (json.JSONDecodeError, AttributeError):
                continue
    return out


def _missing(row: ManifestRow, err: Exception, statuses: dict[str, dict]) -> Prediction:
    rec = statuses.get(row.path, {})
    try:
        status = Status(rec.get("status", "error"))
    except ValueError:
        status = Status.ERROR
    status = Status.ERROR if status in SCORED else status
    message = rec.get("message") or str(err)
    return Prediction(path=row.path, status=status, message=f"not scored: {message}")


def predict_rows(
    detector: Detector,
    rows: Sequence[ManifestRow],
    cache_dir: str | os.PathLike,
    modality_mask: str | None = None,
    transform: Callable[[Clip], Clip] | None = None,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "eval",
    loader: Callable[[ManifestRow], Clip] | None = None,
    temperature: float | None = None,
    uncertainty: int = 0,
) -> list[dict[str, Any]]:
    """Score every row's cache entry with ``detector``; returns ``Prediction.to_dict()`` records with
    manifest facts in extras.

    A video without a usable cache entry gets a record with its prepare status (or ``error``), never a score.
    ``loader`` gives a row's clip instead of its cache entry (pseudo-fakes: ``PseudoFakeSet.load``); it raises
    ``CacheError`` when it has none. ``temperature`` overrides the detector's (1.0: raw, to fit it on).
    ``uncertainty``: N stochastic passes per video (``record["uncertainty"]``; 0: none).
    """
    cache_dir = Path(cache_dir)
    statuses = _prepare_statuses(cache_dir)
    records = []
    for row in tqdm(rows, desc=desc, unit="video", disable=not progress):
        try:
            clip = loader(row) if loader is not None else read_entry(cache_dir, row.path)
            if transform is not None:
                clip = transform(clip)
            scores = detector.score(clip, modality_mask, batch_size, temperature, uncertainty=uncertainty)
            pred = scores.prediction(detector.thresholds, detector.name)
        except CacheError as e:
            pred = _missing(row, e, statuses)
        rec = pred.to_dict()
        rec["path"] = row.path
        rec["model"] = rec["model"] or detector.name
        rec["extras"].update(row_meta(row))
        records.append(rec)
    return records


def default_cache(manifest: str | os.PathLike) -> Path:
    """The cache ``prepare`` writes beside its manifest: ``<manifest folder>/cache``."""
    return PreparedDir.of_manifest(manifest).cache


def _manifest_name(path: Path, taken: set[str]) -> str:
    name = path.parent.name if path.stem == "manifest" else path.stem
    base, i = name or "manifest", 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def _rows(manifest: Path, split: str, limit: int | None) -> list[ManifestRow]:
    rows = [r for r in select(read_manifest(manifest), split) if r.label in (0, 1)]
    if not rows:
        raise ValueError(f"{manifest} has no labelled videos in split {split!r}: choose another --split")
    return rows[:limit] if limit else rows


def protocol_card(detector: Detector, manifests: list[Path], split: str, cache_dir: Path) -> dict:
    """Everything needed to reproduce a result (written to ``protocol.json``, shown in every report)."""
    params: dict[str, Any] = {}
    for row in _rows(manifests[0], split, None)[:20]:  # the first readable entry says how the cache was made
        try:
            params = read_meta(entry_path(cache_dir, row.path))["params"]
            break
        except CacheError:
            continue
    pre = detector.preprocess
    checkpoint, checkpoint_hash = _identity(detector)
    return {
        "model": detector.name,
        "checkpoint": checkpoint,
        "checkpoint_hash": checkpoint_hash,
        "temperature": detector.temperature,
        "split": split,
        "manifests": [{"path": str(m), "hash": file_hash(m)} for m in manifests],
        "cache_dir": str(cache_dir),
        "detector": params.get("detector", "unknown"),
        "cache_fps": params.get("fps"),
        "crop_size": params.get("size", pre.size),
        "margin": params.get("margin", pre.margin),
        "max_duration": params.get("max_duration"),
        "model_fps": pre.fps,
        "model_size": pre.size,
        "clip_frames": pre.clip_frames,
        "window_seconds": pre.window_seconds,
        "aggregation": detector.aggregation,
        "dfdetect_version": __version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def with_pseudofakes(
    rows: list[ManifestRow], cache_dir: Path, kinds: Sequence[str]
) -> tuple[list[ManifestRow], Callable[[ManifestRow], Clip] | None, dict[str, int]]:
    """``rows`` + their held-back pseudo-fakes, the loader that makes them, and the count per kind.

    Without ``kinds``: the rows unchanged, no loader, no counts.
    """
    if not kinds:
        return rows, None, {}
    from dfdetect.eval.pseudofakes import PseudoFakeSet

    fakes = PseudoFakeSet(rows, cache_dir, kinds)
    return rows + fakes.rows, fakes.load, fakes.counts()


def run_calibration(
    detector: Detector, manifest: Path, cache_dir: Path, pseudofakes: Sequence[str] = (), **kw: Any
) -> dict:
    """Fit the temperature on the manifest's ``val`` split (T = 1 logits) and store it in the checkpoint.

    With ``pseudofakes`` (kinds), the val split's held-back pseudo-fakes are part of the fit.
    """
    from dfdetect.eval.calibrate import calibration_report, fit_temperature

    rows, loader, _ = with_pseudofakes(_rows(manifest, "val", None), cache_dir, pseudofakes)
    records = predict_rows(
        detector, rows, cache_dir, desc="calibrate (val)", loader=loader, temperature=1.0, **kw
    )
    scored = [r for r in records if r["p_fake"] is not None]
    logits = [r["extras"]["logit"] for r in scored]
    labels = [r["extras"]["label"] for r in scored]
    t = fit_temperature(logits, labels)
    report = calibration_report(logits, labels, t)
    fitted_on = f"{manifest}:val" + (f" + pseudo-fakes {list(pseudofakes)}" if pseudofakes else "")
    if detector.checkpoint is not None and detector.checkpoint.path is not None:
        detector.checkpoint = detector.checkpoint.with_temperature(t, {"fitted_on": fitted_on, **report})
        detector.checkpoint.save(detector.checkpoint.path)
    detector.temperature = t
    return report


def run_perturbations(detector: Detector, rows, cache_dir: Path, spec, **kw: Any) -> list[dict]:
    """AUC (and mean p_fake per class) for each (perturbation, severity) of ``spec`` (see perturb.plan)."""
    from dfdetect.eval import perturb
    from dfdetect.metrics import MetricError, auc

    out = []
    for name, severity in perturb.plan(spec):
        records = predict_rows(
            detector,
            rows,
            cache_dir,
            transform=lambda clip, n=name, s=severity: perturb.apply(clip, n, s),
            desc=f"{name}={severity:g}",
            **kw,
        )
        scored = [r for r in records if r["p_fake"] is not None]
        labels = [r["extras"]["label"] for r in scored]
        p = [r["p_fake"] for r in scored]
        try:
            value = auc(labels, p)
        except MetricError:
            value = None
        real = [x for x, y in zip(p, labels, strict=True) if y == 0]
        fake = [x for x, y in zip(p, labels, strict=True) if y == 1]
        out.append(
            {
                "perturbation": name,
                "target": perturb.PERTURBATIONS[name].target,
                "unit": perturb.PERTURBATIONS[name].unit,
                "severity": severity,
                "n": len(scored),
                "auc": value,
                "mean_p_real": sum(real) / len(real) if real else None,
                "mean_p_fake": sum(fake) / len(fake) if fake else None,
            }
        )
    return out


@dataclasses.dataclass
class EvalOptions:
    """What :func:`evaluate` scores and which studies it adds (the flags of ``dfdetect eval``).

    Attributes:
        split: split to score (``test``, ``val``, ``train`` or ``all``).
        aggregation: window -> track strategy (``mean``, ``max``, ``topk``, ``attention``).
        modality_mask: None (fused), ``"video"`` or ``"audio"`` for the main predictions.
        thresholds: decision thresholds of the precision/recall/F1 table (0.5 is always added).
        device: torch device.
        batch_size: windows per forward pass.
        perturb: robustness study: True = every perturbation at default severities, a list of names, or
            ``{name: [severities] | None}``.
        ablation: also score video-only and audio-only (modality ablation).
        calibrate: first fit the temperature on the in-domain ``val`` split and store it in the checkpoint.
        run_dir: a training run folder whose ``metrics.jsonl`` / ``tb`` give the training curves.
        limit: score at most this many videos per manifest (quick looks).
        progress: show progress bars.
        n_boot: bootstrap resamples of the confidence intervals.
        pseudofakes: add one held-back pseudo-fake per real video of the split and kind (``sbi``,
            ``desync``, ``swap``; True or ``[]`` = all kinds) to every manifest scored and to the calibration
            split; see :mod:`dfdetect.eval.pseudofakes`.
        uncertainty: N stochastic passes per video of the in-domain and cross-dataset manifests (the
            report's "Uncertainty" section; see :mod:`dfdetect.eval.uncertainty`); 0: none.
        attack: white-box FGSM/PGD on the face crops of the in-domain videos (``attack.json``, the report's
            "Adversarial robustness"): an :class:`~dfdetect.eval.attack.AttackSpec`, its fields as a dict
            (``kind``, ``eps``, ``steps``, ``step_size``, ``source``) or an attack name; None: none.
    """

    split: str = "test"
    aggregation: str = "mean"
    modality_mask: str | None = None
    thresholds: Sequence[float] = (0.5, 0.6, 0.7)
    device: str = "cpu"
    batch_size: int = 8
    perturb: bool | dict | list | None = None
    ablation: bool = False
    calibrate: bool = False
    run_dir: str | os.PathLike | None = None
    limit: int | None = None
    progress: bool = True
    n_boot: int = 1000
    pseudofakes: Sequence[str] | bool | None = None
    uncertainty: int = 0
    attack: Any = None

    @property
    def scoring(self) -> dict[str, Any]:
        """The keywords of :func:`predict_rows` that every scoring pass shares."""
        return {"batch_size": self.batch_size, "progress": self.progress}


def evaluate(
    checkpoint: str | os.PathLike | Detector,
    manifest: str | os.PathLike | Sequence[str | os.PathLike],
    cache_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    out_dir: str | os.PathLike = "eval",
    options: EvalOptions | None = None,
    **settings: Any,
) -> Path:
    """Evaluate a checkpoint on one or more manifests and write predictions + report to ``out_dir``.

    Args:
        checkpoint: a dfdetect checkpoint file, or an already loaded ``infer.pipeline.Detector`` (its
            aggregation is then replaced by the options').
        manifest: one manifest, or several: the first is in-domain, the others form the cross-dataset table.
        cache_dir: cache folder(s), one per manifest (default: ``<manifest folder>/cache``).
        out_dir: output folder (created).
        options: what to score and study (:class:`EvalOptions`; default: its defaults).
        **settings: :class:`EvalOptions` fields that override ``options`` (``split="val", limit=20``).

    Returns:
        Path of ``report.md`` (``report.html``, ``metrics.json`` beside it).
    """
    from dfdetect.eval.pseudofakes import check_kinds
    from dfdetect.eval.report import build_report

    opts = dataclasses.replace(options or EvalOptions(), **settings)
    kinds = check_kinds(opts.pseudofakes)
    attack_spec = _attack_spec(opts.attack)  # checked before anything is scored
    manifests = [Path(m) for m in ([manifest] if isinstance(manifest, str | os.PathLike) else manifest)]
    caches = _caches(manifests, cache_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = _detector(checkpoint, opts.device, opts.aggregation)
    if opts.calibrate:
        rep = run_calibration(detector, manifests[0], caches[0], kinds, **opts.scoring)
        atomic_write_text(out / "calibration.json", json.dumps(rep, indent=2))
    card = protocol_card(detector, manifests, opts.split, caches[0])
    card.update({"modality_mask": opts.modality_mask, "thresholds": sorted({0.5, *opts.thresholds})})
    card["run_dir"] = opts.run_dir
    rows, loader, counts = with_pseudofakes(_rows(manifests[0], opts.split, opts.limit), caches[0], kinds)
    card["pseudofakes"] = _pseudofake_card(kinds, counts)
    records = _predict(detector, rows, caches[0], opts, loader=loader)
    write_jsonl(records, out / "predictions.jsonl")
    card["cross"], card["in_domain"] = _score_cross(detector, opts, kinds, manifests, caches, out)
    _run_studies(detector, opts, attack_spec, (rows, caches[0], loader), records, out)
    atomic_write_text(out / "protocol.json", json.dumps(card, indent=2))
    return build_report(out, run_dir=opts.run_dir, n_boot=opts.n_boot)


def _predict(detector: Detector, rows: list, cache: Path, opts: EvalOptions, **kw: Any) -> list[dict]:
    """The main predictions of ``rows`` (the options' modality mask and uncertainty passes)."""
    mask, n = opts.modality_mask, opts.uncertainty
    return predict_rows(detector, rows, cache, mask, uncertainty=n, **opts.scoring, **kw)


def _score_cross(
    detector: Detector, opts: EvalOptions, kinds: Sequence[str], manifests: list[Path], caches: list[Path],
    out: Path,
) -> tuple[dict[str, str], str]:  # fmt: skip
    """Score every manifest after the first into ``out/cross/<name>/predictions.jsonl``.

    Returns:
        ``{name: manifest path}`` of the cross-dataset manifests and the in-domain manifest's name.
    """
    taken: set[str] = set()
    cross: dict[str, str] = {}
    for m, c in zip(manifests[1:], caches[1:], strict=True):
        name = _manifest_name(m, taken)
        rows, loader, _ = with_pseudofakes(_rows(m, opts.split, opts.limit), c, kinds)
        recs = _predict(detector, rows, c, opts, desc=name, loader=loader)
        write_jsonl(recs, out / "cross" / name / "predictions.jsonl")
        cross[name] = str(m)
    return cross, _manifest_name(manifests[0], taken)


def _run_studies(
    detector: Detector, opts: EvalOptions, attack_spec: Any, scored: tuple, records: list[dict], out: Path
) -> None:
    """The optional studies on the in-domain rows (``scored``: rows, cache, loader): modality ablation,
    perturbations, attacks."""
    rows, cache, loader = scored
    kw = {**opts.scoring, "loader": loader}
    if opts.ablation:
        for mask in ("video", "audio"):
            recs = predict_rows(detector, rows, cache, mask, desc=f"{mask} only", **kw)
            write_jsonl(recs, out / "ablation" / f"predictions-{mask}.jsonl")
    if opts.perturb:
        table = run_perturbations(detector, rows, cache, opts.perturb, modality_mask=opts.modality_mask, **kw)
        atomic_write_text(out / "perturb.json", json.dumps(table, indent=2))
    if attack_spec is not None:
        from dfdetect.eval.attack import run_attacks

        args = (detector, rows, cache, attack_spec, out, records, predict_rows, loader)
        run_attacks(*args, modality_mask=opts.modality_mask, **opts.scoring)


def _attack_spec(attack: Any) -> Any:
    """The :class:`~dfdetect.eval.attack.AttackSpec` of ``evaluate(attack=...)`` (None: no attack)."""
    if not attack:
        return None
    from dfdetect.eval.attack import AttackSpec

    return AttackSpec.of(attack)


def _detector(checkpoint: str | os.PathLike | Detector, device: str, aggregation: str) -> Detector:
    from dfdetect.infer.pipeline import Detector

    if isinstance(checkpoint, Detector):
        return checkpoint.with_options(aggregation=aggregation)
    return load_for_eval(checkpoint, device, aggregation)


def _pseudofake_card(kinds: Sequence[str], counts: dict[str, int]) -> dict[str, Any] | None:
    """What the protocol card says about pseudo-fakes (None: none were added)."""
    if not kinds:
        return None
    from dfdetect.eval.pseudofakes import MIN_DESYNC_SECONDS

    return {
        "added": True,
        "kinds": list(kinds),
        "counts": counts,
        "seeded_by": "video path + kind",
        "min_desync_seconds": MIN_DESYNC_SECONDS,
        "note": "one held-back pseudo-fake per real video of the split and kind (label 1, method = kind)",
    }


def _caches(manifests: list[Path], cache_dir) -> list[Path]:
    if cache_dir is None:
        return [default_cache(m) for m in manifests]
    caches = [Path(cache_dir)] if isinstance(cache_dir, str | os.PathLike) else [Path(c) for c in cache_dir]
    if len(caches) == 1 and len(manifests) > 1:
        caches += [default_cache(m) for m in manifests[1:]]
    if len(caches) != len(manifests):
        raise ValueError(f"{len(manifests)} manifests but {len(caches)} cache folders: give one per manifest")
    return caches
