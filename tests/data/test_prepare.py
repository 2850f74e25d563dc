"""data.prepare: one folder of real clips + the malformed corpus -> statuses, cache entries, resume, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from dfdetect.cli import main
from dfdetect.config import PrepareConfig
from dfdetect.data import cache
from dfdetect.data.extract import clip_status
from dfdetect.data.manifest import ManifestRow, read_manifest
from dfdetect.data.prepare import _limit, prepare, prepare_clip, prepare_source
from dfdetect.types import AudioStatus, MediaKind, Status
from tests.conftest import media
from tests.malformed import EXPECTED, make_malformed_corpus

CONFIG = PrepareConfig(max_duration=2.0, fps=5.0, size=112)
REAL = {  # real clip -> expected status
    "real/pcavs_Pose_Source_00067.mp4": Status.OK,  # speech
    "real/liveportrait_d0.mp4": Status.NO_AUDIO,  # no audio stream
    "real/liveportrait_d3.mp4": Status.NO_AUDIO,  # silent track
}


def _report(out) -> dict[str, dict]:
    lines = (out / "prepare_report.jsonl").read_text().splitlines()
    return {r["path"]: r for r in map(json.loads, lines)}  # latest line per video wins


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A user's folder: real clips (linked, never copied into the repo) + every malformed file."""
    root = tmp_path_factory.mktemp("videos")
    expected = {}
    for rel, status in REAL.items():
        link = root / os.path.basename(rel)
        link.symlink_to(media(rel))
        expected[link.name] = status
    for name, path in make_malformed_corpus(root / "bad").items():
        expected[f"bad/{path.name}"] = EXPECTED[name]
    return root, expected


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory):
    root, expected = folder
    out = tmp_path_factory.mktemp("prepared")
    summary = prepare_source("folder", root, out, CONFIG, workers=1, progress=False)
    return root, expected, out, summary


def test_statuses_per_file_and_batch_completes(prepared):
    root, expected, out, summary = prepared
    report = _report(out)
    got = {os.path.relpath(p, root): r["status"] for p, r in report.items()}
    assert got == {name: str(status) for name, status in expected.items()}
    failed = {Status.UNREADABLE, Status.NO_VIDEO, Status.ERROR}
    assert summary.total == len(expected) and summary.skipped == 0
    assert len(summary.failed) == sum(s in failed for s in expected.values())
    assert summary.done == sum(s not in failed for s in expected.values())
    assert all(r.message for r in summary.failed)  # every failure says why
    assert "failed" in summary.format()
    for path, line in report.items():  # entries exactly for the usable videos
        assert cache.has_entry(out / "cache", path) == (Status(line["status"]) not in failed)
        assert set(line) >= {"path", "status", "message", "seconds", "n_faces", "audio_status"}
    rows = read_manifest(out / "manifest.csv")
    assert {r.path for r in rows} == set(report)
    config = json.loads((out / "prepare_config.json").read_text())
    assert config["source"] == "folder" and config["config"] == CONFIG.model_dump()


def test_cache_entry_round_trip(prepared):
    root, _, out, _ = prepared
    clip = cache.read_entry(out / "cache", str(root / "pcavs_Pose_Source_00067.mp4"))
    assert clip.audio_status is AudioStatus.OK and clip.sample_rate == 16000
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (32000,)  # max_duration 2 s
    assert clip.speech and clip.speech[0][0] < 1.0
    assert clip.info.width == 224 and clip.info.has_audio
    assert clip.params == {**CONFIG.model_dump(), "detector": "mtcnn"}
    assert len(clip.faces) == 1
    face = clip.faces[0]
    t = len(face.track.timestamps)
    assert 8 <= t <= 10  # 2 s at 5 fps
    assert face.crops.shape == (t, 112, 112, 3) and face.crops.dtype == np.uint8
    assert face.track.boxes.shape == (t, 4) and face.track.landmarks.shape == (t, 5, 2)
    assert face.track.detected.dtype == bool and face.track.detected.any()
    assert np.all(np.diff(face.track.timestamps) > 0) and face.track.timestamps[-1] < 2.0
    assert face.crop_landmarks.shape == (t, 5, 2) and face.blur.shape == (t,)
    silent = cache.read_entry(out / "cache", str(root / "liveportrait_d3.mp4"))
    assert silent.audio_status is AudioStatus.SILENT and silent.speech == []
    no_stream = cache.read_entry(out / "cache", str(root / "liveportrait_d0.mp4"))
    assert no_stream.audio_status is AudioStatus.NO_STREAM and no_stream.audio.size == 0
    faceless = cache.read_entry(out / "cache", str(root / "bad" / "faceless.mp4"))
    assert faceless.faces == [] and faceless.audio_status is AudioStatus.OK


def test_resume_skips_done_videos_and_retries_failed(prepared):
    root, expected, out, first = prepared
    rows = read_manifest(out / "manifest.csv")
    mtimes = {r.path: os.path.getmtime(cache.entry_path(out / "cache", r.path)) for r in rows
              if cache.has_entry(out / "cache", r.path)}  # fmt: skip
    again = prepare(rows, out, CONFIG, workers=1, progress=False)
    assert again.skipped == first.done and again.done == 0
    assert len(again.failed) == len(first.failed)  # failures are retried (and fail again)
    assert all(os.path.getmtime(cache.entry_path(out / "cache", p)) == m for p, m in mtimes.items())
    report = _report(out)
    assert report[str(root / "liveportrait_d0.mp4")]["skipped"] is True


def test_changed_settings_are_prepared_again(tmp_path):
    path = media("real/liveportrait_d0.mp4")
    config = PrepareConfig(max_duration=1.0, size=64)
    assert prepare([path], tmp_path, config, workers=1, progress=False).done == 1
    assert prepare([path], tmp_path, config, workers=1, progress=False).skipped == 1
    changed = PrepareConfig(max_duration=1.0, size=96)
    assert prepare([path], tmp_path, changed, workers=1, progress=False).done == 1
    assert cache.read_entry(tmp_path / "cache", str(path)).faces[0].crops.shape[1:] == (96, 96, 3)


def test_unexpected_error_is_reported_and_batch_goes_on(tmp_path, monkeypatch):
    import dfdetect.data.prepare as prep

    real_prepare_clip = prep.prepare_clip

    def flaky(path, *args, **kwargs):
        if "d0" in str(path):
            raise RuntimeError("boom")
        return real_prepare_clip(path, *args, **kwargs)

    monkeypatch.setattr(prep, "prepare_clip", flaky)
    paths = [media("real/liveportrait_d0.mp4"), media("real/pcavs_Pose_Source_00067.mp4")]
    summary = prepare(paths, tmp_path, PrepareConfig(max_duration=1.0, size=64), workers=1, progress=False)
    assert summary.done == 1 and [r.status for r in summary.failed] == ["error"]
    assert "RuntimeError: boom" in summary.failed[0].message


def test_prepare_clip_in_memory(tmp_path):
    corpus = make_malformed_corpus(tmp_path)
    clip = prepare_clip(corpus["faceless"], CONFIG)
    assert clip.faces == [] and clip.info.width == 160
    audio = prepare_clip(corpus["audio_only"], CONFIG)  # an audio entry, for speech sets
    assert audio.kind == MediaKind.AUDIO and audio.faces == [] and audio.has_usable_audio


@pytest.mark.slow
def test_worker_processes(tmp_path):
    corpus = make_malformed_corpus(tmp_path / "bad")
    paths = [media("real/pcavs_Pose_Source_00067.mp4"), corpus["text"], corpus["faceless"]]
    config = PrepareConfig(max_duration=1.0, size=64)
    summary = prepare(paths, tmp_path / "out", config, workers=2, progress=False)
    assert summary.counts == {"ok": 1, "unreadable": 1, "no_face": 1}
    clip = cache.read_entry(tmp_path / "out" / "cache", str(paths[0]))
    assert clip.faces and clip.faces[0].crops.shape[1:] == (64, 64, 3)


def test_limit_is_reproducible_and_balanced():
    rows = [ManifestRow(f"/v/{i}.mp4", i % 4 == 0, "x", "m", "train", str(i)) for i in range(40)]
    picked = _limit(rows, 6, seed=3)
    assert picked == _limit(rows, 6, seed=3) and len(picked) == 6
    assert sum(r.label for r in picked) == 3
    assert [r.path for r in picked] == sorted(r.path for r in picked)


def test_cli_prepare_folder_and_bad_root(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").symlink_to(media("real/liveportrait_d0.mp4"))
    (videos / "broken.mp4").write_bytes(b"")
    out = tmp_path / "out"
    args = ["prepare", "folder", str(videos), "--out", str(out), "--workers", "1", "--max-duration", "1",
            "--size", "64", "--quiet"]  # fmt: skip
    assert main(args) == 0  # finished, even with a failed video
    printed = capsys.readouterr().out
    assert "failed 1" in printed and "broken.mp4" in printed
    assert cache.has_entry(out / "cache", str(videos / "clip.mp4"))
    assert main(["prepare", "ffpp", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "dfdetect prepare:" in err and "Traceback" not in err
    assert main(["prepare", "folder", str(videos), "--out", str(out), "--fps", "-1"]) == 2


@pytest.mark.parametrize("image", ["images/obama.jpg", "images/alex-lacamoire.png"])
def test_still_image_is_a_one_frame_clip(image):
    """Face-image sets are prepared like one-frame videos: every face a one-frame track with landmarks
    (what self-blending needs)."""
    clip = prepare_clip(media(image), PrepareConfig(size=96))
    assert clip.kind == MediaKind.IMAGE and clip_status(clip) is Status.OK
    assert clip.faces and all(f.crops.shape == (1, 96, 96, 3) for f in clip.faces)
    assert all(f.track.landmarks.shape == (1, 5, 2) for f in clip.faces)
