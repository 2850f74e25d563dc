"""The recipe of the shipped default detector (``clip-probe``), behind ``dfdetect fit-probe``.

Given manifests whose rows carry a ``train`` / ``val`` / ``test`` split:

1. :func:`compute_features` caches the frozen tower's features of every train and val clip, decoded as a
   scan decodes it (:func:`expert_configs`; ``FEATURES/<set>/<key>.npz``, see ``train/probe.py``);
   test rows are never read;
2. :func:`fit_probe` fits every candidate head of :data:`HEADS` with and without the self-blends
   (:data:`VARIANT_SETS`) on the train rows and keeps the best by **leave-family-out cross-validation on
   train** (``dfdetect.train.probe_cv``: each fold holds out whole generator families and real sources,
   with every other one their repositories show; the candidate whose worst set scores best wins) or,
   with ``select="val"`` or too few groups, by val AUC;
   it calibrates the choice on val (Platt scaling: a temperature and a logit shift, the shift folded into
   the head's output bias) and fits the abstention rule on the train clips;
3. :func:`write_probe` writes the self-describing checkpoint: the command that made it, the manifests
   (path and sha256), the feature settings, the val and cross-validated AUCs of every candidate.

Why cross-validation rather than val alone: val holds a few hundred clips of 11 generator families, too
few to tell candidates apart; measured (wave 4, session 4), val preferred self-blends and all 3,600 face
images (0.921) while leave-family-out CV on the 1,369 corpus train clips preferred neither (self-blends
-0.02 to -0.04 on the corpus in every configuration), and the held-out test families agreed with CV.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.constants import VERDICT_BAND
from dfdetect.data.manifest import SPLITS, ManifestRow, read_manifest
from dfdetect.hub import sha256_file
from dfdetect.metrics import MetricError, auc, false_alarm_anchor, fit_platt
from dfdetect.train.probe import FeatureSettings, read_features
from dfdetect.train.probe_cv import CV_FOLDS, CV_REPEATS, cross_validate, cv_plan, out_of_fold
from dfdetect.types import Clip

log = logging.getLogger(__name__)
HEADS = {  # candidate heads: name -> (MLP width, 0 = logistic regression; C)
    "logreg-C0.01": (0, 0.01),
    "logreg-C0.05": (0, 0.05),
    "logreg-C0.2": (0, 0.2),
    "mlp64": (64, 0.05),
}
VARIANT_SETS = (("clean", "aug"), ("clean", "aug", "sbi"))  # without and with the self-blends
FITTED_SPLITS = ("train", "val")  # the only splits the recipe reads
SELECTIONS = ("cv", "val")  # how the head is chosen (see fit_probe)


class ProbeFitError(ValueError):
    """The manifests or features cannot make a probe; the message says what to do."""


def expert_configs(encoder: str = "clip-vit-b16-int8") -> tuple[PrepareConfig, PreprocessConfig]:
    """(how clips are decoded for the cached features, the probe's preprocessing): 5 fps over at most 8 s,
    YuNet faces, 224 px crops with margin 1.3; one frame per 1 s window, normalised as ``encoder`` wants."""
    from dfdetect.models.tower import encoder_spec

    spec = encoder_spec(encoder)
    prepare = PrepareConfig(fps=5.0, size=224, margin=1.3, max_duration=8.0, detector="yunet")
    pre = PreprocessConfig(fps=1.0, size=spec.size, margin=1.3, clip_frames=1, segment_seconds=1.0,
                           mean=spec.mean, std=spec.std)  # fmt: skip
    return prepare, pre


SCAN_SECONDS = 60.0  # a scan reads this much of a video (the features read 8 s; a verdict is a frame mean)


def scan_prepare(prepare: PrepareConfig) -> PrepareConfig:
    """The prepare settings a scan of the fitted probe uses: 2 fps, faces detected every 2nd frame, up to
    :data:`SCAN_SECONDS` of each video (as ``v2``), so the timeline covers a minute, not the first 8 s."""
    return prepare.model_copy(update={"fps": 2.0, "detect_every": 2, "max_duration": SCAN_SECONDS})


def scan_preprocess(pre: PreprocessConfig) -> PreprocessConfig:
    """The preprocessing a scan of the fitted probe uses: one crop per
    :data:`~dfdetect.constants.PROBE_CROP_SECONDS` of each face track (the features: one per 1 s, <= 3 a
    clip), each scoring its 2 s of the timeline. A verdict is a mean over crops (the fit reads at most 3
    a clip), so it needs no more: on the corpus' val clips, half the tower's crops gave the same AUC and
    false alarms as one a second (docs/benchmarks.md, issue 23), at half a scan's largest cost."""
    from dfdetect.models.factory import pretrained_cfg

    cfg = pretrained_cfg("clip-probe")  # the model's own rate (constants.PROBE_CROP_SECONDS)
    return pre.model_copy(update={"fps": cfg.fps, "segment_seconds": cfg.segment_seconds})


def feature_settings(
    encoder: str = "clip-vit-b16-int8", feature: str = "embeds", max_windows: int = 3
) -> FeatureSettings:
    """The cache key's settings: the tower, its feature, the windows (frames) per clip at most, and the
    decode settings as the tag.

    Raises:
        ProbeFitError: an unknown tower, or a feature it does not have.
    """
    from dfdetect.models.probe import FeatureProbe

    try:
        FeatureProbe(encoder, feature)  # checks the names; the tower itself loads on first use
    except (KeyError, TypeError) as e:
        raise ProbeFitError(str(e).strip("'\"")) from None
    if max_windows < 1:
        raise ProbeFitError(f"max_windows must be at least 1, got {max_windows}")
    tag = expert_configs()[0].model_dump_json()
    return FeatureSettings(encoder=encoder, feature=feature, max_windows=max_windows, tag=tag)


def media_loader(prepare: PrepareConfig) -> Callable[[ManifestRow], Clip]:
    """row -> :class:`Clip`: the media file decoded as a scan decodes it (videos and still images)."""
    from dfdetect.data.extract import extract_clip
    from dfdetect.faces.detect import detector_from_config
    from dfdetect.types import MediaKind

    faces = detector_from_config(prepare)

    def load(row: ManifestRow) -> Clip:
        return extract_clip(row.path, prepare, faces, kinds=(MediaKind.VIDEO, MediaKind.IMAGE))

    return load


@dataclass(frozen=True)
class RowSet:
    """One manifest's rows; ``name`` (the CSV's stem, or a prepared folder's name) names its feature cache
    folder."""

    name: str
    path: Path
    sha256: str
    rows: list[ManifestRow]

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "rows": len(self.rows)}


def read_sets(paths: Sequence[str | os.PathLike]) -> list[RowSet]:
    """The manifests (CSV files or prepared folders with a ``manifest.csv``), checked for what the recipe
    needs: labels 0/1 and a train/val/test split on every row, both labels in train and in val.

    Raises:
        ProbeFitError: what is wrong and what to do; ``ManifestError`` for a missing or malformed file.
    """
    sets = []
    for p in paths:
        csv = Path(p) / "manifest.csv" if Path(p).is_dir() else Path(p)
        name = Path(p).name if Path(p).is_dir() else csv.stem
        rows = read_manifest(csv)
        if any(s.name == name for s in sets):
            raise ProbeFitError(f"two manifests named {name!r}: each set needs its own feature folder name")
        _check_rows(rows, csv)
        sets.append(RowSet(name, csv, sha256_file(csv), rows))
    _check_both_labels([r for s in sets for r in s.rows], ", ".join(str(s.path) for s in sets))
    return sets


def _check_rows(rows: list[ManifestRow], source: Path) -> None:
    bad = [r for r in rows if r.split not in SPLITS]
    if bad:
        raise ProbeFitError(
            f"{source}: {len(bad)} of {len(rows)} rows have no train/val/test split (e.g. {bad[0].path!r}, "
            f"split {bad[0].split!r}): give the manifest a split column with train, val or test on every "
            "row (`dfdetect prepare` writes one for the datasets it knows)"
        )
    unlabelled = [r for r in rows if r.label not in (0, 1)]
    if unlabelled:
        raise ProbeFitError(
            f"{source}: {unlabelled[0].path!r} is unlabelled: a probe fits on labels 0/1 only"
        )


def _check_both_labels(rows: list[ManifestRow], source: str) -> None:
    for split in FITTED_SPLITS:
        labels = {r.label for r in rows if r.split == split}
        if labels != {0, 1}:
            raise ProbeFitError(
                f"{source}: the {split} split needs real (0) and fake (1) rows, it has labels "
                f"{sorted(labels)}: the heads are fitted on train and chosen and calibrated on val"
            )


def compute_features(
    sets: list[RowSet], features_dir: str | os.PathLike, settings: FeatureSettings, threads: int | None = None
) -> dict[str, dict[str, int]]:
    """Cache the features of every set's train and val rows under ``features_dir/<set>`` (resumable:
    cached clips are skipped); per set, the counts of ``extract_features``."""
    from dfdetect.models.probe import EncoderError, FeatureProbe
    from dfdetect.train.probe import VARIANTS, extract_features

    prepare, pre = expert_configs(settings.encoder)
    prepare = PrepareConfig.model_validate_json(settings.tag) if settings.tag else prepare
    model = FeatureProbe(settings.encoder, settings.feature, threads=threads)
    try:
        model.encoder  # noqa: B018 - load the tower once here: one that cannot load is no bad clip
    except EncoderError as e:
        raise ProbeFitError(str(e)) from None
    load = media_loader(prepare)
    counts = {}
    for s in sets:
        rows = [r for r in s.rows if r.split in FITTED_SPLITS]
        counts[s.name] = extract_features(
            rows, Path(features_dir) / s.name, load, model, pre, settings, VARIANTS
        )
    return counts


def read_set_features(
    sets: list[RowSet], features_dir: str | os.PathLike, settings: FeatureSettings
) -> tuple[list[ManifestRow], list[dict[str, np.ndarray] | None]]:
    """Every set's train and val rows (in order) and their cached features (None: no face, or not
    cached)."""
    rows = [[r for r in s.rows if r.split in FITTED_SPLITS] for s in sets]
    feats = [read_features(r, Path(features_dir) / s.name, settings) for s, r in zip(sets, rows, strict=True)]
    return [r for part in rows for r in part], [f for part in feats for f in part]


def set_names(sets: list[RowSet]) -> list[str]:
    """The set name of each row :func:`read_set_features` returns (in its order)."""
    return [s.name for s in sets for r in s.rows if r.split in FITTED_SPLITS]


def row_counts(
    sets: list[RowSet], features_dir: str | os.PathLike, settings: FeatureSettings
) -> dict[str, dict[str, int]]:
    """Per split: real and fake rows, and (train/val only) rows whose clip has no face or whose features are
    not cached (failed or not computed yet)."""
    out: dict[str, dict[str, int]] = {}
    for s in sets:
        for r in s.rows:
            c = out.setdefault(r.split, {"real": 0, "fake": 0, "no_face": 0, "not_cached": 0})
            c["fake" if r.label else "real"] += 1
            if r.split in FITTED_SPLITS:
                path = Path(features_dir) / s.name / f"{settings.key(r.path)}.npz"
                if not path.is_file():
                    c["not_cached"] += 1
                else:
                    with np.load(path) as z:  # reads the archive's directory only
                        c["no_face"] += "no_face" in z.files
    return {k: out[k] for k in SPLITS if k in out}


@dataclass
class ProbeFit:
    """The chosen probe and how it was chosen. ``candidates``: ``"<head>/<variants>"`` -> the fitted
    model, its val AUC, its cross-validated AUC per set (``cv_auc``, empty when not cross-validated) and
    their worst (``cv_score``), ``frames`` and ``fit_seconds``. ``selection``: ``"cv"`` or ``"val"``."""

    model: Any
    head: str
    variants: tuple[str, ...]
    temperature: float
    rule: dict[str, float]
    candidates: dict[str, dict[str, Any]] = field(repr=False)
    shift: float = 0.0  # the val calibration's logit shift, folded into the model's output bias
    selection: str = "val"
    anchor: dict[str, Any] = field(default_factory=dict)  # the false-alarm map in shift and T (calibrate)

    @property
    def chosen(self) -> str:
        return candidate_name(self.head, self.variants)

    @property
    def val_auc(self) -> dict[str, float]:
        return {k: c["val_auc"] for k, c in self.candidates.items()}

    @property
    def cv_auc(self) -> dict[str, dict[str, float]]:
        return {k: c["cv_auc"] for k, c in self.candidates.items() if c.get("cv_auc")}

    def score(self, name: str) -> float:
        """What the choice ranks ``name`` by: its worst set's cross-validated AUC, or its val AUC."""
        c = self.candidates[name]
        return c["cv_score"] if self.selection == "cv" else c["val_auc"]

    def best_of(self, variants: tuple[str, ...]) -> str:
        """The best candidate among those trained on ``variants`` (first on ties), by :meth:`score`."""
        names = [k for k, c in self.candidates.items() if c["variants"] == variants]
        return max(names, key=self.score)

    def results(self) -> dict[str, Any]:
        """What the fit found, JSON-ready (no weights)."""
        chosen = self.candidates[self.chosen]
        return {"val_auc": self.val_auc, "cv_auc": self.cv_auc, "selection": self.selection,
                "chosen": self.chosen, "head": self.head, "variants": list(self.variants),
                "temperature": self.temperature, "shift": self.shift, "anchor": self.anchor,
                "rule": self.rule, "frames": chosen["frames"],
                "fit_seconds": chosen["fit_seconds"]}  # fmt: skip


def candidate_name(head: str, variants: Sequence[str]) -> str:
    return f"{head}/{'+'.join(variants)}"


def fit_probe(
    rows: list[ManifestRow],
    feats: list[dict[str, np.ndarray] | None],
    settings: FeatureSettings | None = None,
    heads: dict[str, tuple[int, float]] | None = None,
    variant_sets: Sequence[tuple[str, ...]] = VARIANT_SETS,
    sets: Sequence[str] | None = None,
    selection: str = "cv",
    folds: int = CV_FOLDS,
    repeats: int = CV_REPEATS,
) -> ProbeFit:
    """Fit every head of ``heads`` (default :data:`HEADS`) on each of ``variant_sets`` of the train rows'
    features and choose one: with ``selection="cv"``, the candidate whose worst set has the best
    cross-validated AUC (:mod:`~dfdetect.train.probe_cv`; falls back to val when no set has
    ``CV_MIN_CLIPS`` train clips of each label in enough groups), with ``"val"`` the best val AUC (the
    first on ties either way); then fit its temperature and shift on val and the abstention rule on the
    train clips. Rows of other splits are ignored; ``feats[i]`` belongs to ``rows[i]``, ``sets[i]`` names
    its set (default: one set).

    Raises:
        ProbeFitError: no train or val features of both labels, or an unknown ``selection``.
    """
    import torch

    from dfdetect.train.probe import training_matrix

    if selection not in SELECTIONS:
        raise ProbeFitError(f"unknown selection {selection!r}: use one of {', '.join(SELECTIONS)}")
    if folds < 2 or repeats < 1:
        raise ProbeFitError(f"cross-validation needs at least 2 folds and 1 repeat, got {folds}, {repeats}")
    settings = settings or FeatureSettings()
    names = list(sets) if sets is not None else [""] * len(rows)
    train = _pick(rows, feats, "train", names)
    val = _pick(rows, feats, "val", names)
    plan = cv_plan(train[0], train[2], folds, repeats) if selection == "cv" else None
    if selection == "cv" and plan is None:
        log.info("too few train groups of both labels per set to cross-validate: choosing on val")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a head of a few thousand weights: more threads only contend
    try:
        candidates = {}
        for variants in variant_sets:
            x, y, w = training_matrix(*train[:2], variants)
            for head, (hidden, c) in (heads or HEADS).items():
                fitted = _candidate(settings, head, hidden, c, variants, (x, y, w), val[:2])
                if plan is not None:
                    runs = out_of_fold(settings, hidden, c, variants, train[:2], plan)
                    fitted["cv_auc"] = cross_validate(runs, np.array([r.label for r in train[0]]), plan)
                    fitted["cv_score"] = min(fitted["cv_auc"].values())
                candidates[candidate_name(head, variants)] = fitted
    finally:
        torch.set_num_threads(threads)
    key = "cv_score" if plan is not None else "val_auc"
    best = max(candidates, key=lambda k: candidates[k][key])  # max keeps the first of equals
    chosen = candidates[best]
    t, shift, anchor = calibrate(chosen["model"], val[:2])
    rule = abstain_rule(*train[:2])
    return ProbeFit(chosen["model"], chosen["head"], chosen["variants"], t, rule, candidates, shift,
                    "cv" if plan is not None else "val", anchor)  # fmt: skip


def _pick(
    rows: list[ManifestRow], feats: list[dict[str, np.ndarray] | None], split: str, names: list[str]
) -> tuple[list[ManifestRow], list[dict[str, np.ndarray]], list[str]]:
    """The rows of ``split`` that have features, their features and set names; both labels or an error."""
    both = zip(rows, feats, names, strict=True)
    picked = [(r, f, n) for r, f, n in both if r.split == split and f is not None]
    labels = {r.label for r, _, _ in picked}
    if labels != {0, 1}:
        raise ProbeFitError(
            f"the {split} split has cached features of labels {sorted(labels)} only ({len(picked)} clips "
            "with a face): it needs real and fake clips with faces (compute the features first)"
        )
    return [r for r, _, _ in picked], [f for _, f, _ in picked], [n for _, _, n in picked]


def _candidate(
    settings: FeatureSettings,
    head: str,
    hidden: int,
    c: float,
    variants: tuple[str, ...],
    data: tuple,
    val: tuple,
) -> dict[str, Any]:
    """One head fitted on ``data = (x, y, w)``, with its val AUC (its initial weights seeded: the same
    features give the same head in any process)."""
    import torch

    from dfdetect.models.probe import FeatureProbe
    from dfdetect.train.probe import fit_head

    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(0)
        model = FeatureProbe(settings.encoder, settings.feature, hidden=hidden)
    info = fit_head(model, *data, c=c)
    val_auc = auc(*_scored(model, val)[:2])
    log.info("head %s: val AUC %.3f (%d frames, %s s)", candidate_name(head, variants), val_auc,
             info["frames"], info["fit_seconds"])  # fmt: skip
    return {"model": model, "head": head, "hidden": hidden, "c": c, "variants": tuple(variants),
            "val_auc": val_auc, **info}  # fmt: skip


FALSE_ALARM_QUANTILE = 0.95  # at most 5 % of val real clips (sources weighing the same) may be called fake


def calibrate(
    model: Any, val: tuple[list[ManifestRow], list[dict[str, np.ndarray]]]
) -> tuple[float, float, dict]:
    """Platt scaling of the model's clip logits on the val clips (:func:`~dfdetect.metrics.fit_platt`),
    then, where more than 5 % of the val reals would be called ``fake``, the band's upper edge moved onto
    the :data:`FALSE_ALARM_QUANTILE` of the val reals, every real source weighing the same, as the voice
    judge's ceiling is, its lower edge kept (:func:`~dfdetect.metrics.false_alarm_anchor`). The shift is
    added to the head's output bias (in place); returns (temperature, shift, the anchor's record).

    Why a shift as well as a temperature: the head scores held-out clips higher than its training clips
    (v4 on val: shift -1.5 logits at T 3.2); a temperature alone leaves that bias in, and every real clip
    near the band's upper edge is called fake (v4, corpus test reals: 15/199 called fake with T alone, 8
    after the shift; the ranking is unchanged).
    """
    y, s, sources = _scored(model, val)
    try:
        t, shift = fit_platt(s, y)
    except MetricError as e:
        raise ProbeFitError(f"cannot calibrate on val: {e}") from None
    reals = [u for u, label in zip(sources, y, strict=True) if label == 0]
    anchor = false_alarm_anchor((s[y == 0] + shift) / t, reals, FALSE_ALARM_QUANTILE, VERDICT_BAND)
    shift, t = shift - anchor["shift"] * t, t * anchor["scale"]  # (z - a) / k of z = (s + shift) / t
    model.head.shift_output(shift)
    return t, shift, anchor


def _scored(
    model: Any, clips: tuple[list[ManifestRow], list[dict[str, np.ndarray]]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels, clip logits and sources (a dataset where unnamed) of the clips the model scored (those with
    clean features)."""
    from dfdetect.train.probe import clip_logits

    s = clip_logits(model, clips[1])
    ok = ~np.isnan(s)
    sources = [r.source or r.dataset for r, keep in zip(clips[0], ok, strict=True) if keep]
    return np.array([r.label for r in clips[0]])[ok], s[ok], sources


def abstain_rule(rows: list[ManifestRow], feats: list[dict[str, np.ndarray] | None]) -> dict[str, float]:
    """The abstention rule's thresholds, from the train clips (never test): a clip whose main face is
    smaller than the 5th percentile of training faces (and never above 64 px), or blurrier/more compressed
    than the 5th percentile of training crops, cannot be called fake, only uncertain."""
    train = [f for r, f in zip(rows, feats, strict=True) if r.split == "train" and f is not None]
    if not train:
        raise ProbeFitError("no train clip with a face: the abstention rule is fitted on the train faces")
    face = np.concatenate([np.atleast_1d(f["face_px"]) for f in train])
    blur = np.concatenate([np.atleast_1d(f["blur"]) for f in train])
    return {
        "min_face_px": float(min(64.0, np.percentile(face, 5))),
        "min_sharpness": float(np.percentile(blur, 5)),
    }


def write_probe(
    path: str | os.PathLike,
    fit: ProbeFit,
    settings: FeatureSettings,
    manifests: Sequence[dict[str, Any]],
    command: str,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write the fitted probe as a self-describing checkpoint (atomically).

    Args:
        path: the checkpoint file (``clip-probe.pt``).
        fit: what :func:`fit_probe` returned.
        settings: the feature settings (the tower, its feature and the decode settings).
        manifests: what the rows came from (``RowSet.record()``: name, path, sha256, rows).
        command: the command line that made it.
        calibration: more calibration facts (e.g. a fusion's weights).
    """
    from dfdetect.train.probe import probe_checkpoint

    prepare = PrepareConfig.model_validate_json(settings.tag) if settings.tag else expert_configs()[0]
    _, pre = expert_configs(settings.encoder)
    chosen = fit.candidates[fit.chosen]
    config = {"encoder": settings.encoder, "feature": settings.feature, "hidden": chosen["hidden"]}
    fitted_on = "val splits of " + ", ".join(m["name"] for m in manifests)
    calib = {
        "temperature": fit.temperature,
        "logit_shift": fit.shift,  # already in the head's output bias (Platt scaling on val, then the anchor)
        "false_alarm_anchor": fit.anchor,
        "fitted_on": fitted_on,
        "abstain": fit.rule,
        **(calibration or {}),
    }
    train_config = {"recipe": "dfdetect.train.probe_fit", "command": command, "manifests": list(manifests),
                    "features": dataclasses.asdict(settings), "head": fit.head, "c": chosen["c"],
                    "variants": list(fit.variants)}  # fmt: skip
    metrics = {"val_auc": fit.val_auc, "cv_auc": fit.cv_auc, "selection": fit.selection, "chosen": fit.chosen}
    ckpt = probe_checkpoint(
        fit.model, config, scan_preprocess(pre), scan_prepare(prepare), calib, metrics, train_config
    )
    return ckpt.save(path)
