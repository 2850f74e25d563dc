"""Fit the head of a frozen-encoder speech judge (``whisper-speech``) on cached pooled features.

1. Features of every training file in every training variant (``data.variants``: clean, MP3, AAC, Opus,
   telephone, room), and of every validation file in ``fit.val_variants``, come from the feature cache
   (:class:`~dfdetect.data.speech_features.FeatureCache`; computed once, resumable).
2. Balanced by family: every generator family (and every real source) weighs as much as
   ``min(its files, data.per_family)`` files, spread over its files, their windows and variants; the two
   classes then weigh the same. A family with thousands of clips cannot drown one with twenty.
3. For every head in the grid (``fit.c_grid`` x ``fit.hidden_grid``) the head is fitted on the training
   windows and scored on the validation files (clip score = mean window logit, as a scan); the head with
   the best validation AUC averaged over ``fit.val_variants`` wins. The test split is never read. With
   ``fit.mix_grid`` one logistic head is fitted on the labelled folder's files and one on the catalogue's,
   each pool with its own C, and their weighted average (exactly one linear head) is what the grid
   chooses among: a pool of a few sources and a pool of many generators each keep what they learnt.
4. The real-voice ceiling is the ``fit.ceiling_quantile`` of real voices the head never trained on, every
   real source weighing the same: each training real scored by the chosen head refitted without its fold
   of real sources (out of fold), and the validation reals; the temperature then puts it at the verdict
   band's upper edge.

The winner is written as ``checkpoints/best.pt`` by :mod:`dfdetect.checkpoint`, with its metrics, the grid
and the ceiling; ``metrics.json`` holds every candidate's validation AUC.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.data.manifest import ManifestRow

log = logging.getLogger(__name__)


def family_of(row: ManifestRow) -> str:
    """The balancing unit of a row: its generator family for a fake (the catalogue's ``family``, else the
    method), its source for a real (the catalogue's ``source`` repository, else its group: the speaker)."""
    if row.label == 1:
        return f"fake:{row.family or row.method}"
    return f"real:{row.source}" if row.source else f"real:{row.dataset}:{row.group}"


def pool_of(row: ManifestRow) -> str:
    """A row's training pool: ``labels`` (a file of the labelled folder, ``data.labels``) or ``catalogue``
    (a file of a prepared catalogue manifest, ``data.manifests``)."""
    return "labels" if row.dataset == "folder" else "catalogue"


def average_heads(heads: list[dict[str, np.ndarray]], weights: list[float]) -> dict[str, np.ndarray]:
    """One logistic head whose logit is the ``weights``-weighted sum of the logits of linear ``heads``
    (each with its own standardisation): exact, so a scan pays for one head."""
    pairs = list(zip(heads, weights, strict=True))
    w = sum(a * h["w"] / h["std"] for h, a in pairs)
    b = sum(a * (float(h["b"]) - float(np.sum(h["w"] * h["mean"] / h["std"]))) for h, a in pairs)
    dim = len(w)
    ones, zeros = np.ones(dim, np.float32), np.zeros(dim, np.float32)
    return {"mean": zeros, "std": ones, "w": np.asarray(w, np.float32), "b": np.float32(b)}


def _rank(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def cap_per_family(rows: list[ManifestRow], cap: int) -> list[ManifestRow]:
    """At most ``cap`` rows of every family (:func:`family_of`), a fixed pseudo-random choice by path."""
    kept, seen = [], Counter()
    for row in sorted(rows, key=lambda r: _rank(r.path)):
        if seen[family_of(row)] < cap:
            seen[family_of(row)] += 1
            kept.append(row)
    return kept


def training_variants(row: ManifestRow, variants: list[str], per_clip: int) -> list[str]:
    """The variants a training file is used in: the first of ``variants`` (``clean``) and ``per_clip - 1``
    of the others, a fixed pseudo-random choice by path (every file sees a different mix of codecs)."""
    first, others = variants[:1], sorted(variants[1:], key=lambda v: _rank(f"{row.path}|{v}"))
    return first + others[: max(per_clip - 1, 0)]


def feature_jobs(cfg: Any, splits: dict[str, list[ManifestRow]]) -> list[tuple[str, str]]:
    """Every (path, variant) the fit reads: training files in their variants, validation files in
    ``fit.val_variants`` (clean first, so an interrupted extraction leaves the most useful part done)."""
    d = cfg.data
    jobs = [
        (r.path, v) for r in splits["train"] for v in training_variants(r, d.variants, d.variants_per_clip)
    ]
    val = [(r.path, v) for v in cfg.fit.val_variants for r in splits["val"]]
    return jobs + val


def family_weights(rows: list[ManifestRow], per_family: int) -> np.ndarray:
    """``[N]`` weights: each family weighs ``min(n, per_family)`` files; both classes sum to the same."""
    families = [family_of(r) for r in rows]
    counts = Counter(families)
    w = np.array([min(counts[f], per_family) / counts[f] for f in families], np.float64)
    labels = np.array([r.label for r in rows])
    for c in (0, 1):
        if (labels == c).any():
            w[labels == c] /= w[labels == c].sum()
    return w * len(rows) / 2


@dataclass
class WindowTable:
    """Training windows: features ``x [N, 2D]``, labels ``y [N]``, weights ``w [N]``."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray


def window_table(
    rows: list[ManifestRow],
    feats: dict[tuple[str, str], np.ndarray],
    variants: list[str],
    weights: np.ndarray,
) -> WindowTable:
    """Stack the windows of every (row, variant) with features; a row's weight is split over them."""
    xs, ys, ws = [], [], []
    for row, weight in zip(rows, weights, strict=True):
        parts = [feats[(row.path, v)] for v in variants if (row.path, v) in feats]
        n = sum(len(p) for p in parts)
        for p in parts:
            xs.append(p)
            ys.append(np.full(len(p), row.label, np.float64))
            ws.append(np.full(len(p), weight / n))
    return WindowTable(np.concatenate(xs), np.concatenate(ys), np.concatenate(ws))


def fit_head(
    table: WindowTable, c: float, hidden: int = 0, epochs: int = 60, seed: int = 0
) -> dict[str, np.ndarray]:
    """A head state (:func:`dfdetect.models.whisper_speech.head_logits`) fitted on ``table``: feature
    standardisation from the weighted training windows, then an L2-regularised logistic regression
    (``hidden=0``, scikit-learn, strength ``1/c``) or a one-hidden-layer ReLU MLP (torch, weight decay
    ``1/c``)."""
    mean = np.average(table.x, axis=0, weights=table.w)
    std = np.sqrt(np.average((table.x - mean) ** 2, axis=0, weights=table.w)) + 1e-6
    z = (table.x - mean) / std
    state = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    if hidden == 0:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=c, max_iter=2000)
        clf.fit(z, table.y, sample_weight=table.w)
        return state | {"w": clf.coef_[0].astype(np.float32), "b": np.float32(clf.intercept_[0])}
    return state | _fit_mlp(z, table.y, table.w, hidden, 1.0 / c, epochs, seed)


def _fit_mlp(z: np.ndarray, y: np.ndarray, w: np.ndarray, hidden: int, decay: float, epochs: int, seed: int):  # noqa: ANN202
    import torch

    torch.manual_seed(seed)
    x, t, sw = (torch.as_tensor(a, dtype=torch.float32) for a in (z, y, w / w.mean()))
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=decay * 1e-2)
    for _ in range(epochs):  # full batch: a few thousand windows
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(-1), t, weight=sw)
        loss.backward()
        opt.step()
    l1, l2 = net[0], net[2]
    return {
        "w1": l1.weight.detach().numpy().T.copy(), "b1": l1.bias.detach().numpy().copy(),
        "w": l2.weight.detach().numpy()[0].copy(), "b": np.float32(l2.bias.detach().numpy()[0]),
    }  # fmt: skip


def clip_scores(rows: list[ManifestRow], feats: dict, variant: str, head: dict[str, np.ndarray]) -> tuple:
    """(labels, clip logits, rows kept) of ``rows`` in ``variant``: mean window logit, as a scan."""
    from dfdetect.models.whisper_speech import head_logits

    kept = [r for r in rows if (r.path, variant) in feats]
    logits = np.array([float(head_logits(feats[(r.path, variant)], head).mean()) for r in kept])
    return np.array([r.label for r in kept]), logits, kept


def _val_auc(rows: list[ManifestRow], feats: dict, variants: list[str], head: dict) -> dict[str, float]:
    from dfdetect.metrics import auc

    out = {}
    for v in variants:
        y, s, _ = clip_scores(rows, feats, v, head)
        out[v] = auc(y, s) if len(set(y.tolist())) == 2 else float("nan")
    out["mean"] = float(np.nanmean(list(out.values())))
    return out


def fit_recipe(cfg: Any, rows: list[ManifestRow], feats: dict, record: dict) -> dict[str, np.ndarray]:
    """The head of ``record`` (a grid point of :func:`select_head`) fitted on ``rows``."""
    d = cfg.data

    def fit(part: list[ManifestRow], c: float, hidden: int) -> dict[str, np.ndarray]:
        table = window_table(part, feats, d.variants, family_weights(part, d.per_family))
        return fit_head(table, c, hidden, cfg.fit.epochs, cfg.train.seed)

    if record.get("mix") is None:
        return fit(rows, record["c"], record["hidden"])
    pools = [[r for r in rows if pool_of(r) == pool] for pool in ("labels", "catalogue")]
    heads = [fit(pools[0], record["c"], 0), fit(pools[1], record["c_catalogue"], 0)]
    return average_heads(heads, [record["mix"], 1.0 - record["mix"]])


def grid_points(cfg: Any, both_pools: bool = True) -> list[dict]:
    """Every head of the grid: ``c`` x ``hidden``, or with ``fit.mix_grid`` (and training files in both
    pools) the average of a labels-pool head (``c``) and a catalogue-pool head (``c_catalogue``) for every
    ``mix`` (the labels head's weight)."""
    f = cfg.fit
    if not (f.mix_grid and both_pools):
        return [{"c": c, "hidden": h, "mix": None} for h in f.hidden_grid for c in f.c_grid]
    pairs = [(c, cc) for c in f.c_grid for cc in f.c_grid]
    return [{"c": c, "c_catalogue": cc, "mix": m, "hidden": 0} for m in f.mix_grid for c, cc in pairs]


def select_head(cfg: Any, splits: dict, feats: dict) -> tuple[dict, dict, list[dict]]:
    """Fit every head of the grid (:func:`grid_points`), pick the best by mean validation AUC: (head, its
    record, all records). Each pool's head is fitted once per ``c`` and reused across ``mix``."""
    from functools import cache

    train_rows = [r for r in splits["train"] if any((r.path, v) in feats for v in cfg.data.variants)]
    log.info("head fit: %d training files", len(train_rows))

    @cache
    def pool_head(pool: str, c: float) -> dict[str, np.ndarray]:
        part = [r for r in train_rows if pool_of(r) == pool]
        return fit_recipe(cfg, part, feats, {"c": c, "hidden": 0, "mix": None})

    records, best = [], None
    for point in grid_points(cfg, len({pool_of(r) for r in train_rows}) == 2):
        if point["mix"] is None:
            head = fit_recipe(cfg, train_rows, feats, point)
        else:
            pair = [pool_head("labels", point["c"]), pool_head("catalogue", point["c_catalogue"])]
            head = average_heads(pair, [point["mix"], 1.0 - point["mix"]])
        record = {**point, "val_auc": _val_auc(splits["val"], feats, cfg.fit.val_variants, head)}
        records.append(record)
        log.info("head %s: val AUC %s", point, record["val_auc"])
        if best is None or record["val_auc"]["mean"] > best[1]["val_auc"]["mean"]:
            best = (head, record)
    assert best is not None, "fit.c_grid and fit.hidden_grid must not be empty"
    return best[0], best[1], records


def first_window_logit(row: ManifestRow, feats: dict, head: dict[str, np.ndarray]) -> float:
    """The clean logit of a file's first window: what a scan reading one window gives."""
    from dfdetect.models.whisper_speech import head_logits

    return float(head_logits(feats[(row.path, "clean")][:1], head)[0])


def out_of_fold_real_logits(
    cfg: Any, rows: list[ManifestRow], feats: dict, record: dict, folds: int = 5
) -> dict[str, float]:
    """``{path: logit}`` of every real training file, each scored by the ``record`` head fitted on every
    fake and the reals of the other folds (folds by real source, :func:`family_of`): as if its source were
    new to the head."""
    from sklearn.model_selection import GroupKFold

    rows = [r for r in rows if (r.path, "clean") in feats]
    fakes, reals = [r for r in rows if r.label == 1], [r for r in rows if r.label == 0]
    groups = [family_of(r) for r in reals]
    out: dict[str, float] = {}
    if len(set(groups)) < 2:  # one real source: nothing to hold it out from
        return out
    for fit_idx, held_idx in GroupKFold(n_splits=min(folds, len(set(groups)))).split(reals, groups=groups):
        head = fit_recipe(cfg, fakes + [reals[i] for i in fit_idx], feats, record)
        out |= {reals[i].path: first_window_logit(reals[i], feats, head) for i in held_idx}
    return out


def real_voice_ceiling(cfg: Any, splits: dict, feats: dict, head: dict, record: dict) -> tuple[float, dict]:
    """(temperature, ceiling info with ``p0``): the ``fit.ceiling_quantile`` of real voices the head never
    trained on, every real source weighing the same (:func:`dfdetect.metrics.source_quantile`): training
    reals scored out of fold (:func:`out_of_fold_real_logits`) and the validation reals, first window,
    clean. The temperature puts that quantile (``p0``) at the verdict band's upper edge, so a voice scanned
    on its own is called fake only above it (``dfdetect calibrate-voice --split test`` measures it on test
    sources)."""
    from dfdetect.constants import VERDICT_BAND
    from dfdetect.metrics import anchoring_temperature, held_out_exceedance, source_quantile

    logits = out_of_fold_real_logits(cfg, splits["train"], feats, record, cfg.fit.ceiling_folds)
    val = [r for r in splits["val"] if r.label == 0 and (r.path, "clean") in feats]
    logits |= {r.path: first_window_logit(r, feats, head) for r in val}
    source = {r.path: r.source or r.dataset for r in [*splits["train"], *val]}
    values, sources = np.array(list(logits.values())), [source[p] for p in logits]
    q = cfg.fit.ceiling_quantile
    z0 = source_quantile(values, sources, q)
    at = VERDICT_BAND[1]  # anchored there when above 0.5; a ceiling under 0.5 stays at T = 1
    temperature = anchoring_temperature(z0, at) if z0 > 0 else 1.0
    info = {
        "quantile": q, "weighting": "each real source the same (its repository, else its dataset)",
        "scores": f"first window, clean: val reals; training reals out of {cfg.fit.ceiling_folds} folds",
        "sources": len(set(sources)), "n_real": int(values.size), "logit": round(z0, 4),
        "splits": ["train", "val"], "seconds_per_file": float(cfg.data.feature_seconds),
        "anchored_at": at if z0 > 0 else None,
        "p0": at if z0 > 0 else float(1 / (1 + np.exp(-z0))), "temperature": round(temperature, 4),
        "new_source_above": held_out_exceedance(values, sources, q),
    }  # fmt: skip
    return temperature, info


def fit_speech_head(cfg: Any, run: Path, splits: dict[str, list[ManifestRow]], meta: dict[str, Any]) -> Path:
    """Fit and write ``run/checkpoints/best.pt`` (see the module docstring); returns ``run``.

    Args:
        cfg: the speech experiment. run: the run dir. splits: its ``train``/``val``/``test`` rows (the
            test rows are never read). meta: the checkpoint's metadata (model config, preprocess, config).
    """
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.data.speech_features import FeatureCache, extract_features
    from dfdetect.io.files import atomic_write_text

    kwargs = cfg.model.kwargs()
    d = cfg.data
    caps = {"train": d.per_family, "val": cfg.fit.val_per_family or d.per_family}
    splits = {k: cap_per_family(splits[k], cap) for k, cap in caps.items()}
    encoder = kwargs.get("encoder", "whisper-tiny-en")
    cache = FeatureCache(
        d.feature_cache, encoder, d.feature_seconds, d.max_seconds, cfg.train.threads or None
    )
    feats = extract_features(cache, feature_jobs(cfg, splits))
    head, record, records = select_head(cfg, splits, feats)
    temperature, ceiling = real_voice_ceiling(cfg, splits, feats, head, record)
    meta = {**meta, "model_config": {**meta["model_config"], "hidden": record["hidden"]}}
    chosen = {k: v for k, v in record.items() if k != "val_auc"}
    state = {**meta, "model_state": head, "metrics": {"val": record["val_auc"], **chosen}}
    ckpt = Checkpoint.from_state(state).with_temperature(temperature)
    ckpt = ckpt.with_real_voice_ceiling(ceiling["p0"], ceiling)
    ckpt.save(run / "checkpoints" / "best.pt")
    atomic_write_text(run / "metrics.json", json.dumps({"chosen": record, "grid": records}, indent=1))
    log.info("chosen head %s (val AUC %s), ceiling %s -> %s", chosen, record["val_auc"], ceiling, run)
    return run
