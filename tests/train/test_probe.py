"""Heads on cached frozen features (``dfdetect.train.probe``): the feature cache, its resume, the head fit.

A stand-in tower (a fixed random projection of the crops' pixels) replaces CLIP here, so these tests need
no download and run in seconds; the real tower is tested in ``tests/models/test_probe.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.data.manifest import ManifestRow
from dfdetect.metrics import auc
from dfdetect.models.probe import CLIP_MEAN, CLIP_STD, FeatureProbe
from dfdetect.train.probe import (
    FeatureSettings,
    clip_logits,
    extract_features,
    fit_head,
    read_features,
    training_matrix,
)
from tests.conftest import media

PRE = PreprocessConfig(fps=1.0, size=224, clip_frames=1, segment_seconds=1.0, mean=CLIP_MEAN, std=CLIP_STD)
PREPARE = PrepareConfig(fps=2.0, size=224, max_duration=3.0, detector="yunet", detect_every=2)


class StandIn:
    """``encode([B, T, 3, H, W]) -> [B, T, 8]``: a fixed projection of 8x8-pooled pixels (no tower)."""

    def __init__(self) -> None:
        self.proj = np.random.default_rng(0).normal(size=(3 * 8 * 8, 8)).astype(np.float32)
        self.calls = 0

    def encode(self, frames: np.ndarray) -> np.ndarray:
        self.calls += 1
        b, t, c, h, w = frames.shape
        pooled = frames.reshape(b * t, c, 8, h // 8, 8, w // 8).mean(axis=(3, 5)).reshape(b * t, -1)
        return (pooled @ self.proj).reshape(b, t, -1)


def _rows() -> list[ManifestRow]:
    paths = ["real/videoretalking_face_1.mp4", "real/videoretalking_face_2.mp4"]
    return [ManifestRow(str(media(p)), 0, "media", "real", "train", p) for p in paths]


def _load(row: ManifestRow):
    from dfdetect.data.extract import extract_clip

    return extract_clip(row.path, PREPARE)


def test_features_are_cached_per_clip_and_resumed(tmp_path) -> None:
    rows, model = _rows(), StandIn()
    settings = FeatureSettings(max_windows=3, augment_every=2, tag="test")
    counts = extract_features(rows, tmp_path, _load, model, PRE, settings, progress=False)
    assert counts == {"done": 2, "cached": 0, "no_face": 0, "failed": 0}
    feats = read_features(rows, tmp_path, settings)
    for f in feats:
        assert 1 <= len(f["feat_clean"]) <= 3 and f["feat_clean"].shape[1] == 8
        assert len(f["feat_sbi"]) == len(f["feat_aug"]) == len(f["feat_clean"][::2])  # every 2nd window
        assert (f["face_px"] > 40).all() and f["frame_px"] > 0
        assert not np.allclose(f["feat_sbi"], f["feat_clean"][::2])  # the self-blend changed the face
    calls = model.calls
    again = extract_features(rows, tmp_path, _load, model, PRE, settings, progress=False)
    assert again["cached"] == 2 and model.calls == calls  # nothing recomputed
    other = FeatureSettings(max_windows=2, tag="test")  # a setting changes the key
    assert read_features(rows, tmp_path, other) == [None, None]
    bad = [ManifestRow(str(tmp_path / "missing.mp4"), 1, "media", "x", "train", "g")]
    assert extract_features(bad, tmp_path, _load, model, PRE, settings, progress=False)["failed"] == 1


def test_training_matrix_weighs_each_clip_once() -> None:
    row = ManifestRow("a.mp4", 0, "d", "real", "train", "g")
    f = {"feat_clean": np.ones((4, 3), np.float16), "feat_sbi": np.zeros((2, 3), np.float16)}
    x, y, w = training_matrix([row, row], [f, None], ("clean", "sbi"))
    assert x.shape == (6, 3) and y.tolist() == [0, 0, 0, 0, 1, 1]  # self-blends are fakes
    assert w[:4].sum() == pytest.approx(1.0) and w[4:].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no cached features"):
        training_matrix([row], [None], ("clean",))


@pytest.mark.parametrize("hidden", [0, 16])
def test_head_fits_separable_features(hidden: int) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 150)
    x = rng.normal(size=(300, 512)).astype(np.float32) + y[:, None] * 0.5  # [M, D]
    model = FeatureProbe(hidden=hidden)
    info = fit_head(model, x, y, np.ones(300), c=0.05, epochs=30)
    assert info["frames"] == 300
    clips = [{"feat_clean": x[i : i + 3]} for i in range(0, 300, 3)]
    scores = clip_logits(model, clips + [None])
    assert np.isnan(scores[-1])
    assert auc(y[::3], scores[:-1]) > 0.95
