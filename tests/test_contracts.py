"""The contracts shared by all layers: types, registry, manifest, cache entries, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfdetect.data import cache
from dfdetect.data.manifest import ManifestError, ManifestRow, read_manifest, write_manifest
from dfdetect.io.files import atomic_write
from dfdetect.registry import Registry
from dfdetect.types import (
    AudioStatus,
    Clip,
    FaceCrops,
    FaceTrack,
    Prediction,
    Status,
    TrackScore,
    Verdict,
    VideoInfo,
)


def _clip(path: str, n_faces: int = 2, t: int = 4) -> Clip:
    rng = np.random.default_rng(0)
    faces = []
    for i in range(n_faces):
        track = FaceTrack(
            track_id=i,
            timestamps=np.arange(t) * 0.2,
            boxes=rng.uniform(0, 100, (t, 4)).astype(np.float32),
            landmarks=rng.uniform(0, 100, (t, 5, 2)).astype(np.float32),
            scores=np.full(t, 0.99, np.float32),
            detected=np.array([True, False] * (t // 2)),
        )
        faces.append(
            FaceCrops(
                track=track,
                crops=rng.integers(0, 255, (t, 32, 32, 3), dtype=np.uint8),
                crop_boxes=np.zeros((t, 4), np.float32),
                crop_landmarks=np.zeros((t, 5, 2), np.float32),
                blur=np.ones(t, np.float32),
            )
        )
    info = VideoInfo(path=path, duration=1.0, fps=25.0, width=64, height=48, codec="h264", has_audio=True)
    return Clip(
        path=path,
        info=info,
        faces=faces,
        audio=rng.standard_normal(16000).astype(np.float32),
        sample_rate=16000,
        audio_status=AudioStatus.OK,
        speech=[(0.1, 0.5)],
        params={"fps": 5.0, "size": 32},
    )


def test_cache_round_trip(tmp_path):
    clip = _clip("/data/a b/vid.mp4")
    path = cache.write_entry(tmp_path, clip)
    assert path.is_file() and cache.has_entry(tmp_path, clip.path)
    back = cache.read_entry(tmp_path, clip.path)
    assert back.path == clip.path and back.info == clip.info and back.speech == [(0.1, 0.5)]
    assert back.audio_status is AudioStatus.OK and back.params == clip.params
    assert len(back.faces) == 2
    for a, b in zip(clip.faces, back.faces, strict=True):
        np.testing.assert_array_equal(a.crops, b.crops)
        np.testing.assert_array_equal(a.track.detected, b.track.detected)
        assert a.track.track_id == b.track.track_id
    assert not list(tmp_path.rglob("*.tmp*")), "temporary files must not remain"


def test_cache_entry_without_faces_and_missing_or_corrupt_entries(tmp_path):
    clip = _clip("/v/none.mp4", n_faces=0)
    cache.write_entry(tmp_path, clip)
    assert cache.read_entry(tmp_path, clip.path).faces == []
    with pytest.raises(cache.CacheError, match="dfdetect prepare"):
        cache.read_entry(tmp_path, "/v/other.mp4")
    broken = cache.entry_path(tmp_path, "/v/broken.mp4")
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(cache.CacheError, match="unreadable"):
        cache.read_entry(tmp_path, "/v/broken.mp4")


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def failing(p):
        p.write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_manifest_round_trip_and_errors(tmp_path):
    rows = [
        ManifestRow(path="/d/real/1.mp4", label=0, dataset="x", method="real", split="train", group="1"),
        ManifestRow(
            path="/d/fake/1_2.mp4",
            label=1,
            dataset="fakeavceleb",
            method="wav2lip",
            split="test",
            group="1",
            video_label=1,
            audio_label=0,
            category="FakeVideo-RealAudio",
        ),
        ManifestRow(path="/d/mine.mp4", label=-1, dataset="folder", method="unknown", split="", group="m"),
    ]
    path = write_manifest(rows, tmp_path / "manifest.csv")
    assert read_manifest(path) == rows
    with pytest.raises(ManifestError, match="duplicate"):
        write_manifest(rows + rows[:1], tmp_path / "dup.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\n/x.mp4,2\n")
    with pytest.raises(ManifestError, match="bad.csv:2"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.csv")


def test_prediction_json_round_trip():
    pred = Prediction(
        path="/v.mp4",
        status=Status.OK,
        p_fake=0.8,
        verdict=Verdict.FAKE,
        modality={"visual": 0.7},
        tracks=[TrackScore(0, 0.8, 0.0, 2.0, 10, (1.0, 2.0, 3.0, 4.0))],
        timeline=[(0.0, 1.0, 0.8)],
        extras={"frames": np.arange(3)},
    )
    d = json.loads(json.dumps(pred.to_dict()))
    assert d["status"] == "ok" and d["verdict"] == "fake" and d["extras"]["frames"] == [0, 1, 2]
    back = Prediction.from_dict(d)
    assert back.tracks == pred.tracks and back.timeline == pred.timeline and back.status is Status.OK


def test_registry():
    reg: Registry[int] = Registry("thing")
    reg.register("one")(lambda: 1)
    assert reg.create("one") == 1 and reg.names() == ["one"] and "one" in reg
    with pytest.raises(KeyError, match="known: one"):
        reg.create("two")
    with pytest.raises(ValueError, match="already"):
        reg.register("one")(lambda: 1)


def test_atomic_write_gives_usual_permissions(tmp_path):
    import os

    from dfdetect.io.files import atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_cache_meta_is_read_alone(tmp_path):
    clip = _clip("/videos/meta.mp4")
    path = cache.write_entry(tmp_path, clip)
    meta = cache.read_meta(path)
    assert meta["n_faces"] == 2 and meta["params"] == clip.params and meta["kind"] == "video"
    with pytest.raises(cache.CacheError):
        cache.read_meta(tmp_path / "absent.npz")


def test_prepared_dir_layout(tmp_path):
    from dfdetect.config import PreparedDir

    layout = PreparedDir(tmp_path)
    assert layout.manifest == tmp_path / "manifest.csv" and layout.cache == tmp_path / "cache"
    assert PreparedDir.of_manifest(layout.manifest).root == tmp_path.resolve()
    assert PreparedDir.of_cache(layout.cache).report == tmp_path / "prepare_report.jsonl"


def test_checkpoint_round_trip_and_validation(tmp_path):
    """A checkpoint alone rebuilds its model, preprocessing attached (timm's pretrained_cfg style)."""
    import torch

    from dfdetect.checkpoint import Checkpoint, CheckpointError
    from dfdetect.config import PreprocessConfig
    from dfdetect.models.factory import create_model

    cfg = {"name": "audio", "d_model": 32, "audio_width": 8}
    model = create_model(**cfg)
    pre = PreprocessConfig(fps=4.0, size=64, clip_frames=4)
    state = {"model_state": model.state_dict(), "model_config": cfg, "preprocess": pre.model_dump(), "rng": 7}
    ckpt = Checkpoint.from_state(state)
    assert ckpt.prepare.fps == 4.0 and ckpt.temperature == 1.0 and ckpt.training_state == {"rng": 7}
    path = ckpt.with_temperature(2.5, {"fitted_on": "val"}).save(tmp_path / "m.pt")
    back = Checkpoint.load(path)
    assert back.temperature == 2.5 and back.calibration["fitted_on"] == "val" and back.versions["dfdetect"]
    rebuilt = back.build_model()
    assert rebuilt.preprocess_cfg == pre.model_dump() and not rebuilt.training
    x = torch.randn(1, pre.audio_samples)
    assert torch.allclose(rebuilt(torch.zeros(1, 4, 3, 8, 8), audio=x)["logit"], model.eval()(
        torch.zeros(1, 4, 3, 8, 8), audio=x)["logit"])  # fmt: skip
    assert Checkpoint.load(back.exported().save(tmp_path / "e.pt")).training_state == {}
    with pytest.raises(CheckpointError, match="missing"):
        Checkpoint.from_state({"model_state": {}})
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        Checkpoint.load(tmp_path / "bad.pt")


def test_export_half_stores_float16_weights_that_rebuild_the_same_model(tmp_path, capsys):
    """`dfdetect export --half`: float16 weights (the packaged default is stored so), loaded back into the
    float32 model with outputs within float16 rounding."""
    import torch

    from dfdetect.checkpoint import Checkpoint
    from dfdetect.cli import main
    from dfdetect.config import PreprocessConfig
    from dfdetect.models.factory import create_model

    cfg = {"name": "audio", "d_model": 32, "audio_width": 8}
    model = create_model(**cfg).eval()
    pre = PreprocessConfig(fps=4.0, size=64, clip_frames=4)
    state = {"model_state": model.state_dict(), "model_config": cfg, "preprocess": pre.model_dump(), "rng": 7}
    src = Checkpoint.from_state(state).save(tmp_path / "m.pt")
    assert main(["export", str(src), str(tmp_path / "h.pt"), "--half"]) == 0
    half = Checkpoint.load(tmp_path / "h.pt")
    assert half.training_state == {}
    assert {v.dtype for v in half.model_state.values() if v.is_floating_point()} == {torch.float16}
    assert (tmp_path / "h.pt").stat().st_size < 0.75 * src.stat().st_size
    x = torch.randn(1, pre.audio_samples)
    rebuilt = half.build_model()
    assert next(rebuilt.parameters()).dtype == torch.float32
    with torch.no_grad():
        a, b = (
            rebuilt(torch.zeros(1, 4, 3, 8, 8), audio=x)["logit"],
            model(torch.zeros(1, 4, 3, 8, 8), audio=x)["logit"],
        )
    assert torch.allclose(a, b, atol=1e-2)
