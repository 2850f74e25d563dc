"""Fit the head of a frozen-encoder speech judge (``whisper-speech``) on cached pooled features.

1. Features of every training file in every training variant (``data.variants``: clean, MP3, AAC, Opus,
   telephone, room), and of every validation file in ``fit.val_variants``, come from the feature cache
   (:class:`~dfdetect.data.speech_features.FeatureCache`; computed once, resumable).
2. Balanced by family: every generator family (and every real source) weighs as much as
   ``min(its files, data.per_family)`` files, spread over its files, their windows and variants; the two
   classes then weigh the same. A family with thousands of clips cannot drown one with twenty.
3. For every head in the grid (``fit.c_grid`` x ``fit.hidden_grid``) the head is fitted on the training
   windows and scored on the validation files (clip score = mean window logit, as a scan); the head with
   the best validation AUC averaged over ``fit.val_variants`` wins. The test split is never read.
4. The real-voice ceiling is the ``fit.ceiling_quantile`` of the validation reals' clean scores.

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


def select_head(cfg: Any, splits: dict, feats: dict) -> tuple[dict, dict, list[dict]]:
    """Fit every head of the grid, pick the best by mean validation AUC: (head, its record, all records)."""
    train_rows = [r for r in splits["train"] if any((r.path, v) in feats for v in cfg.data.variants)]
    table = window_table(
        train_rows, feats, cfg.data.variants, family_weights(train_rows, cfg.data.per_family)
    )
    log.info("head fit: %d training windows from %d files", len(table.y), len(train_rows))
    records, best = [], None
    for hidden in cfg.fit.hidden_grid:
        for c in cfg.fit.c_grid:
            head = fit_head(table, c, hidden, cfg.fit.epochs, cfg.train.seed)
            record = {
                "c": c,
                "hidden": hidden,
                "val_auc": _val_auc(splits["val"], feats, cfg.fit.val_variants, head),
            }
            records.append(record)
            log.info("head c=%g hidden=%d: val AUC %s", c, hidden, record["val_auc"])
            if best is None or record["val_auc"]["mean"] > best[1]["val_auc"]["mean"]:
                best = (head, record)
    assert best is not None, "fit.c_grid and fit.hidden_grid must not be empty"
    return best[0], best[1], records


def real_voice_ceiling(rows: list[ManifestRow], feats: dict, head: dict, q: float) -> dict[str, Any]:
    """The score only ``1 - q`` of the validation reals (clean) exceed, and how it was measured."""
    y, s, kept = clip_scores(rows, feats, "clean", head)
    p = 1.0 / (1.0 + np.exp(-s[y == 0]))
    sources = sorted({family_of(r) for r, label in zip(kept, y, strict=True) if label == 0})
    value = float(np.quantile(p, q)) if p.size else 0.5
    return {"p0": min(value, 0.999), "n_real": int(p.size), "quantile": q, "sources": sources}


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
    splits = {k: cap_per_family(v, d.per_family) for k, v in splits.items() if k != "test"}
    encoder = kwargs.get("encoder", "whisper-tiny-en")
    cache = FeatureCache(
        d.feature_cache, encoder, d.feature_seconds, d.max_seconds, cfg.train.threads or None
    )
    feats = extract_features(cache, feature_jobs(cfg, splits))
    head, record, records = select_head(cfg, splits, feats)
    ceiling = real_voice_ceiling(splits["val"], feats, head, cfg.fit.ceiling_quantile)
    meta = {**meta, "model_config": {**meta["model_config"], "hidden": record["hidden"]}}
    state = {**meta, "model_state": head, "metrics": {"val": record["val_auc"], "c": record["c"]}}
    ckpt = Checkpoint.from_state(state).with_real_voice_ceiling(ceiling.pop("p0"), ceiling)
    ckpt.save(run / "checkpoints" / "best.pt")
    atomic_write_text(run / "metrics.json", json.dumps({"chosen": record, "grid": records}, indent=1))
    log.info(
        "chosen head c=%g hidden=%d, val AUC %s -> %s", record["c"], record["hidden"], record["val_auc"], run
    )
    return run
