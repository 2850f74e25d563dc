"""Explanations: Grad-CAM heatmaps on face crops, the saliency fallback, curves and JSON extras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dfdetect.infer.explain import explain_scores, overlay_heatmap, thumbnail_extras, thumbnails_of


def _check_frames(expl, clip, size: int) -> None:
    assert expl.frames, "the most suspicious crops are explained"
    assert len(expl.frames) <= 6
    times = [f.time for f in expl.frames]
    assert len(set(times)) == len(times), "distinct frames"
    scores = [f.score for f in expl.frames]
    assert scores == sorted(scores, reverse=True), "most suspicious first"
    for f in expl.frames:
        assert f.crop.shape == (size, size, 3) and f.crop.dtype == np.uint8
        assert f.heatmap is not None and f.heatmap.shape == f.crop.shape[:2]
        assert f.heatmap.dtype == np.float32
        assert 0.0 <= f.heatmap.min() and f.heatmap.max() <= 1.0
        assert f.overlay.shape == f.crop.shape and f.overlay.dtype == np.uint8
        assert 0.0 <= f.score <= 1.0


def test_gradcam_on_real_clip(detector, prepared_clip, tmp_path: Path) -> None:
    model = detector.model
    assert getattr(model, "cam_layer", None) is not None, "the demo model exposes a Grad-CAM layer"
    scores = detector.score(prepared_clip)
    expl = explain_scores(model, scores, detector.preprocess)
    assert expl.method == "gradcam"
    assert expl.track_id == scores.decisive
    _check_frames(expl, prepared_clip, detector.preprocess.size)
    assert any(f.heatmap.max() > 0.99 for f in expl.frames), "each map is normalised to its peak"
    curve = expl.curves["fake_probability"]
    assert len(curve["t"]) == len(curve["value"]) > 0
    assert all(0 <= v <= 1 for v in curve["value"])
    assert all(p.grad is None for p in model.parameters()), "no gradients left behind"
    extras = expl.to_extras()
    json.dumps(extras)
    assert extras["frames"][0]["overlay"].startswith("data:image/jpeg;base64,")
    on_disk = expl.to_extras(tmp_path / "imgs")
    assert Path(on_disk["frames"][0]["crop"]).is_file()


def test_saliency_fallback_without_cam_layer(detector, prepared_clip, monkeypatch) -> None:
    model = detector.model
    monkeypatch.setattr(model, "cam_layer", None)
    expl = explain_scores(model, detector.score(prepared_clip), detector.preprocess, top_k=3)
    assert expl.method == "saliency"
    _check_frames(expl, prepared_clip, detector.preprocess.size)


def test_overlay_and_thumbnails(prepared_clip, tmp_path: Path) -> None:
    crop = np.full((32, 32, 3), 128, np.uint8)
    heat = np.zeros((32, 32), np.float32)
    heat[16, 16] = 1.0
    out = overlay_heatmap(crop, heat)
    assert out.shape == crop.shape and not np.array_equal(out[16, 16], out[0, 0])
    thumbs = thumbnail_extras(thumbnails_of(prepared_clip))
    assert set(thumbs) == {str(f.track.track_id) for f in prepared_clip.faces}
    files = thumbnail_extras(thumbnails_of(prepared_clip), tmp_path)
    assert all(Path(p).is_file() for p in files.values())
