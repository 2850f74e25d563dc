"""Heads on cached frozen features: the training recipe of the ``clip-probe`` expert (``models/probe.py``).

The frozen tower is the slow part (tens of milliseconds per crop), so it runs once per clip and variant:
:func:`extract_features` writes one ``.npz`` per clip (keyed by the clip's path and every setting that
changes the features) holding the features of the windows a scan would score (the main face track's,
one frame per window), the same after a self-blend of every real face (SBI, Shiohara & Yamasaki 2022)
and after a random re-encoding (H.264 / down-scaling), and the facts the abstention rule reads (face
size in the original frame, sharpness). A head (:func:`fit_head`) then trains in seconds on 2 cores.

Everything here is numpy + the model's head; the clips come from a caller's ``load`` function (a scan's
``extract_clip`` of a media file, or ``data.cache.read_entry`` of a prepared corpus), so features are
computed exactly as the scan computes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.config import PreprocessConfig
from dfdetect.data.manifest import ManifestRow
from dfdetect.io.files import atomic_write
from dfdetect.types import Clip

log = logging.getLogger(__name__)
VARIANTS = ("clean", "sbi", "aug")  # sbi: real clips only (their self-blends, labelled fake)


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that changes a clip's cached features (part of the cache key)."""

    encoder: str = "clip-vit-b16-int8"
    feature: str = "embeds"
    max_windows: int = 3
    augment_every: int = 3  # self-blends and re-encodings of every n-th window only
    size: int = 224
    fps: float = 1.0
    tag: str = ""  # where the clips come from (e.g. the prepare settings of a scan, or a cache's name)

    def key(self, path: str, transform: str = "") -> str:
        text = json.dumps([path, transform, *self.__dict__.values()], default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:20]


def main_windows(clip: Clip, pre: PreprocessConfig, max_windows: int) -> list[Any]:
    """The windows of the clip's main (first-ranked) face track, at most ``max_windows`` evenly spaced."""
    from dfdetect.data.windows import clip_windows

    if not clip.faces:
        return []
    windows = clip_windows(clip, pre, track_index=0, mouths=False)
    if len(windows) > max_windows:
        keep = np.unique(np.linspace(0, len(windows) - 1, max_windows).round().astype(int))
        windows = [windows[i] for i in keep]
    return windows


def _pixels(frames: list[np.ndarray], pre: PreprocessConfig) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 frames -> ``[N, 1, 3, H, W]`` normalised float32 model input."""
    from dfdetect.data.windows import _normalise

    return _normalise(np.stack(frames), pre).numpy()[:, None]


def _self_blends(windows: list[Any], rng: np.random.Generator) -> list[np.ndarray]:
    """One self-blended frame per window (its own random SBI parameters)."""
    from dfdetect.data.pseudofake import self_blend

    return [self_blend(w.frames[:1], w.landmarks[:1], rng)[0][0] for w in windows]


def _augmented(frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The frames after one random re-encoding: H.264 CRF 24-38 (p 0.6) else down-and-up scaling 0.3-0.7."""
    import cv2

    from dfdetect.data.augment import h264

    stack = np.stack(frames)  # [N, H, W, 3]
    if rng.random() < 0.6:
        return list(h264(stack, int(rng.integers(24, 39))))
    h, w = stack.shape[1:3]
    f = float(rng.uniform(0.3, 0.7))
    small = [
        cv2.resize(x, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA) for x in stack
    ]
    return [cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR) for x in small]


def quality(clip: Clip, margin: float) -> dict[str, np.ndarray]:
    """What the abstention rule reads of the main face track: ``face_px`` [N] (face side in the original
    frame, pixels), ``blur`` [N] (variance of the Laplacian of each crop) and ``frame_px`` (short side)."""
    face = clip.faces[0]
    side = (face.crop_boxes[:, 2] - face.crop_boxes[:, 0]) / margin  # [N]
    frame_px = float(min(clip.info.width or 0, clip.info.height or 0))
    return {"face_px": side.astype(np.float32), "blur": face.blur.astype(np.float32),
            "frame_px": np.float32(frame_px)}  # fmt: skip


def clip_features(
    clip: Clip,
    model: Any,
    pre: PreprocessConfig,
    settings: FeatureSettings,
    variants: Iterable[str],
    label: int,
) -> dict[str, np.ndarray]:
    """Features of one clip's main-track windows per variant (``feat_<variant>`` ``[N, D]`` float16) plus
    :func:`quality`; empty when the clip has no face track."""
    windows = main_windows(clip, pre, settings.max_windows)
    if not windows:
        return {}
    rng = np.random.default_rng(zlib.crc32(clip.path.encode()))
    frames = [w.frames[0] for w in windows]
    half = windows[:: max(1, settings.augment_every)]  # the variants use every n-th window (CPU budget)
    out: dict[str, np.ndarray] = {"times": np.array([w.t0 for w in windows], np.float32)}
    for variant in variants:
        if variant == "sbi" and label != 0:
            continue
        images = {"clean": lambda: frames, "sbi": lambda: _self_blends(half, rng),
                  "aug": lambda: _augmented([w.frames[0] for w in half], rng)}[variant]()  # fmt: skip
        out[f"feat_{variant}"] = model.encode(_pixels(images, pre))[:, 0].astype(np.float16)  # [N, D]
    return {**out, **quality(clip, pre.margin)}


def extract_features(
    rows: list[ManifestRow],
    out_dir: str | os.PathLike,
    load: Callable[[ManifestRow], Clip],
    model: Any,
    pre: PreprocessConfig,
    settings: FeatureSettings,
    variants: Iterable[str] = VARIANTS,
    transform: tuple[str, Callable[[Clip], Clip]] | None = None,
    progress: bool = True,
    extra: Callable[[Clip], dict[str, np.ndarray]] | None = None,
) -> dict[str, int]:
    """Cache the features of every row's clip under ``out_dir`` (resumable: cached clips are skipped).

    Args:
        rows: the clips (manifest rows; ``label`` decides whether a self-blend is made).
        out_dir: the feature cache (one ``<key>.npz`` per clip and transform).
        load: row -> :class:`Clip` (may raise: the row is counted as failed and the batch goes on).
        model: a ``FeatureProbe`` (its ``encode``).
        pre: the model's preprocessing.
        settings: the feature settings (part of the key).
        variants: which of :data:`VARIANTS` to compute.
        transform: ``(name, clip -> clip)`` applied before the windows (e.g. an H.264 re-encoding for a
            robustness test); its name is part of the key.
        progress: show a tqdm bar.
        extra: more arrays to store with a clip's features (e.g. another model's logit of the same clip).

    Returns:
        Counts ``{"done", "cached", "no_face", "failed"}``.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"done": 0, "cached": 0, "no_face": 0, "failed": 0}
    name = transform[0] if transform else ""
    for row in tqdm(rows, desc=f"features {name}".strip(), unit="clip", disable=not progress):
        target = out / f"{settings.key(row.path, name)}.npz"
        if target.is_file():
            counts["cached"] += 1
            continue
        try:
            clip = load(row)
            clip = transform[1](clip) if transform else clip
            arrays = clip_features(clip, model, pre, settings, variants, row.label)
            arrays = {**arrays, **extra(clip)} if arrays and extra is not None else arrays
        except Exception as e:  # noqa: BLE001 - one bad clip never stops a batch
            log.warning("features of %s failed: %s: %s", row.path, type(e).__name__, e)
            counts["failed"] += 1
            continue
        counts["no_face" if not arrays else "done"] += 1
        arrays = arrays or {"no_face": np.array(True)}
        atomic_write(target, lambda tmp, a=arrays: np.savez(tmp, **a), suffix=".npz")
    return counts


def read_features(
    rows: list[ManifestRow], out_dir: str | os.PathLike, settings: FeatureSettings, transform: str = ""
) -> list[dict[str, np.ndarray] | None]:
    """The cached arrays of each row (None: not cached yet, or no face)."""
    found: list[dict[str, np.ndarray] | None] = []
    for row in rows:
        path = Path(out_dir) / f"{settings.key(row.path, transform)}.npz"
        if not path.is_file():
            found.append(None)
            continue
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        found.append(None if "no_face" in arrays else arrays)
    return found


def training_matrix(
    rows: list[ManifestRow], feats: list[dict[str, np.ndarray] | None], variants: Iterable[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame-level ``(X [M, D] float32, y [M], weight [M])`` of ``rows`` over ``variants``: each clip and
    variant weighs 1 in all (its frames share it), so long clips do not dominate."""
    xs, ys, ws = [], [], []
    for row, f in zip(rows, feats, strict=True):
        if f is None:
            continue
        for variant in variants:
            x = f.get(f"feat_{variant}")
            if x is None or not len(x):
                continue
            label = 1 if variant == "sbi" else int(row.label)
            xs.append(x.astype(np.float32))
            ys.append(np.full(len(x), label))
            ws.append(np.full(len(x), 1.0 / len(x)))
    if not xs:
        raise ValueError("no cached features for these rows: run extract_features first")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def _balanced(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``w`` rescaled so each class weighs the same in all and the mean weight is 1."""
    out = w.astype(np.float64).copy()
    for c in (0, 1):
        total = out[y == c].sum()
        if total > 0:
            out[y == c] *= 0.5 / total
    return out * len(out)


def fit_head(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    c: float = 0.05,
    epochs: int = 30,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Fit ``model.head`` on frame features ``x [M, D]``, labels ``y [M]``, weights ``w [M]`` (balanced
    per class): logistic regression (scikit-learn, ``C = c``) for a linear head, else AdamW on weighted
    BCE with weight decay ``0.01 / c`` (``epochs`` passes in mini-batches of 256 frames).

    Returns:
        ``{"frames": M, "fit_seconds": ...}``.
    """
    import time

    import torch

    start = time.perf_counter()
    mean, std = x.mean(axis=0), x.std(axis=0)
    model.head.set_standardisation(mean, std)
    z = (x - mean) / np.maximum(std, 1e-6)  # [M, D]
    weights = _balanced(y, w)
    last = model.head.net[-1]
    if len(model.head.net) == 2:  # dropout + linear: logistic regression
        from sklearn.linear_model import LogisticRegression

        lr_model = LogisticRegression(C=c, max_iter=3000).fit(z, y, sample_weight=weights)
        with torch.no_grad():
            last.weight.copy_(torch.as_tensor(lr_model.coef_, dtype=torch.float32))
            last.bias.copy_(torch.as_tensor(lr_model.intercept_, dtype=torch.float32))
    else:
        _fit_mlp(model.head, torch.from_numpy(z.astype(np.float32)), y, weights, c, epochs, lr, seed)
    model.head.eval()
    return {"frames": int(len(y)), "fit_seconds": round(time.perf_counter() - start, 3)}


def _fit_mlp(
    head: Any, z: Any, y: np.ndarray, weights: np.ndarray, c: float, epochs: int, lr: float, seed: int
):
    """Weighted-BCE training of the head's layers on standardised features ``z [M, D]``."""
    import torch

    torch.manual_seed(seed)
    target = torch.as_tensor(y, dtype=torch.float32)
    wt = torch.as_tensor(weights, dtype=torch.float32)
    opt = torch.optim.AdamW(head.net.parameters(), lr=lr, weight_decay=min(1.0, 0.01 / c))
    head.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(z), generator=gen).split(256):
            logits = head.net(z[idx]).squeeze(-1)  # [b]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[idx], weight=wt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def clip_logits(model: Any, feats: list[dict[str, np.ndarray] | None], variant: str = "clean") -> np.ndarray:
    """Per clip, the mean of its windows' head logits (as a scan aggregates a track); NaN without features."""
    import torch

    out = np.full(len(feats), np.nan)
    model.head.eval()
    with torch.no_grad():
        for i, f in enumerate(feats):
            x = None if f is None else f.get(f"feat_{variant}")
            if x is not None and len(x):
                out[i] = float(model.head(torch.from_numpy(x.astype(np.float32))).mean())
    return out


def probe_checkpoint(
    model: Any,
    model_config: dict[str, Any],
    pre: PreprocessConfig,
    prepare: Any,
    calibration: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> Any:
    """The self-describing :class:`~dfdetect.checkpoint.Checkpoint` of a fitted probe: encoder reference
    (``model_config``), head weights, preprocessing, prepare settings, calibration (temperature and the
    abstention rule), metrics."""
    from dfdetect.checkpoint import Checkpoint

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Checkpoint(
        model_state=state,
        model_config={"name": "clip-probe", **model_config},
        preprocess=pre,
        prepare=prepare,
        calibration={"temperature": 1.0, **calibration},
        train_config=train_config,
        metrics=dict(metrics or {}),
    )
