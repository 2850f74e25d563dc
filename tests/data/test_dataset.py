"""Windows over cached clips, their tensors, and the training dataset (real frames, tiny clips)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from dfdetect.config import PreprocessConfig
from dfdetect.data import cache
from dfdetect.data.dataset import (
    VideoDataset,
    clip_windows,
    collate,
    open_entry,
    resample_indices,
    window_tensors,
)
from dfdetect.types import AudioStatus
from tests.data.clips import make_clip, row, write_cache

PRE = PreprocessConfig(fps=5.0, size=64, clip_frames=8, mouth_size=32)  # 1.6 s windows, 2 segments


def test_windows_cover_every_frame_of_every_track():
    clip = make_clip(n_frames=20, track_lengths=[20, 5])
    windows = clip_windows(clip, PRE)
    assert [(w.track_id, w.n_real) for w in windows] == [(0, 8), (0, 8), (0, 8), (1, 5)]
    starts = [w.t0 for w in windows if w.track_id == 0]
    assert starts == pytest.approx([0.0, 1.6, 2.4])  # the last window ends at the track's end
    covered = np.unique(np.concatenate([w.timestamps for w in windows if w.track_id == 0]))
    np.testing.assert_allclose(covered, clip.faces[0].track.timestamps)
    for w in windows:
        assert w.frames.shape == (8, 64, 64, 3) and w.frames.dtype == np.uint8
        assert w.mouths.shape == (8, 32, 32, 3) and w.mouths.dtype == np.uint8
        assert w.t1 == pytest.approx(w.t0 + PRE.window_seconds)
        np.testing.assert_array_equal(w.frames[0], clip.faces[w.track_id].crops[round(w.t0 * 5)])
    assert len(clip_windows(clip, PRE, track_index=1)) == 1
    assert len(clip_windows(clip, PRE, track_index=0, stride=2)) == 7  # 0,2,..,12


def test_short_track_is_padded_with_its_last_frame():
    clip = make_clip(track_lengths=[3])
    (w,) = clip_windows(clip, PRE)
    assert w.n_real == 3 and len(w.frames) == 8
    for i in range(3, 8):
        np.testing.assert_array_equal(w.frames[i], w.frames[2])
        assert w.timestamps[i] == w.timestamps[2]


def test_fps_subsampling_and_resizing():
    clip = make_clip(n_frames=40, fps=10.0, size=96)
    windows = clip_windows(clip, PRE)
    assert [w.t0 for w in windows] == pytest.approx([0.0, 1.6, 2.4])  # 20 frames at 5 fps
    w = windows[0]
    np.testing.assert_allclose(np.diff(w.timestamps), 0.2)
    assert w.frames.shape == (8, 64, 64, 3)
    np.testing.assert_allclose(w.landmarks, clip.faces[0].crop_landmarks[0:16:2] * 64 / 96, rtol=1e-5)
    # the frame shown at 0.4 s is the cached frame at 0.4 s, resized
    small = cv2.resize(clip.faces[0].crops[4], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(w.frames[2], small)
    ref = clip_windows(make_clip(n_frames=40, fps=10.0, size=64), PRE)[0]
    np.testing.assert_array_equal(ref.timestamps, w.timestamps)


def test_resample_indices_nearest_grid():
    ts = np.arange(30) / 30.0
    np.testing.assert_array_equal(resample_indices(ts, 10.0), np.arange(0, 30, 3))
    np.testing.assert_array_equal(resample_indices(ts[:4], 60.0)[:3], [0, 0, 1])  # upsampling repeats
    assert list(resample_indices(np.array([1.0]), 5.0)) == [0]


def test_audio_click_lands_at_the_right_sample():
    audio = np.zeros(4 * 16000, np.float32)
    audio[20800] = 1.0  # a click at 1.3 s
    clip = make_clip(n_frames=20, audio=audio)
    pre = PreprocessConfig(fps=5.0, size=64, clip_frames=4, mouth_size=32)  # 0.8 s windows
    windows = clip_windows(clip, pre)
    hits = [(w.t0, int(np.argmax(w.audio))) for w in windows if w.audio.max() > 0]
    assert hits == [(pytest.approx(0.8), 8000)]  # 1.3 s - 0.8 s = 0.5 s = sample 8000
    assert all(w.audio.shape == (12800,) and w.audio_mask for w in windows)
    # same with a 10 fps cache subsampled to 5 fps
    clip10 = make_clip(n_frames=40, fps=10.0, audio=audio)
    hits = [(w.t0, int(np.argmax(w.audio))) for w in clip_windows(clip10, pre) if w.audio.max() > 0]
    assert hits == [(pytest.approx(0.8), 8000)]  # 1.3 s - 0.8 s = 0.5 s = sample 8000


def test_missing_silent_and_short_audio():
    for clip in (
        make_clip(audio=np.zeros(0, np.float32)),
        make_clip(audio=np.zeros(64000, np.float32), audio_status=AudioStatus.SILENT),
    ):
        for w in clip_windows(clip, PRE):
            assert not w.audio_mask and w.audio.shape == (PRE.audio_samples,) and not w.audio.any()
    short = make_clip(n_frames=20, audio=np.ones(16000, np.float32))  # 1 s of audio for 4 s of video
    windows = clip_windows(short, PRE)
    assert windows[0].audio_mask and windows[0].audio[:16000].all() and not windows[0].audio[16000:].any()
    assert not windows[1].audio_mask  # starts at 1.6 s, past the audio


def test_window_tensors_shapes_and_normalisation():
    (w, *_) = clip_windows(make_clip(), PRE)
    t = window_tensors(w, PRE)
    assert t["frames"].shape == (8, 3, 64, 64) and t["frames"].dtype == torch.float32
    assert t["mouths"].shape == (8, 3, 32, 32) and t["mouths"].dtype == torch.float32
    assert t["audio"].shape == (PRE.audio_samples,) and t["audio"].dtype == torch.float32
    assert t["audio_mask"].dtype == torch.bool and t["audio_mask"].item()
    mean = torch.tensor(PRE.mean).view(1, 3, 1, 1)
    std = torch.tensor(PRE.std).view(1, 3, 1, 1)
    restored = (t["frames"] * std + mean) * 255
    np.testing.assert_allclose(restored.permute(0, 2, 3, 1).numpy(), w.frames, atol=1e-3)


def test_open_entry_maps_crops_and_matches_read_entry(tmp_path):
    clip = make_clip(track_lengths=[20, 6])
    write_cache(tmp_path, [clip])
    full = cache.read_entry(tmp_path, clip.path)
    mapped = open_entry(cache.entry_path(tmp_path, clip.path))
    assert isinstance(mapped.faces[0].crops, np.memmap)
    for a, b in zip(full.faces, mapped.faces, strict=True):
        np.testing.assert_array_equal(a.crops, b.crops)
        np.testing.assert_array_equal(a.crop_landmarks, b.crop_landmarks)
        np.testing.assert_array_equal(a.track.timestamps, b.track.timestamps)
    np.testing.assert_array_equal(full.audio, mapped.audio)
    assert dataclasses.replace(mapped, faces=[]) == dataclasses.replace(full, faces=[], audio=mapped.audio)


@pytest.fixture()
def cache_rows(tmp_path):
    clips = [
        make_clip("/v/real.mp4", n_frames=30, track_lengths=[30, 12]),
        make_clip("/v/fake.mp4", n_frames=20),
        make_clip("/v/avfake.mp4", n_frames=20, audio=np.zeros(0, np.float32)),
        make_clip("/v/unknown.mp4", n_frames=20),
        make_clip("/v/faceless.mp4", track_lengths=[]),
    ]
    write_cache(tmp_path, clips)
    rows = [
        row("/v/real.mp4", 0),
        row("/v/fake.mp4", 1),
        row("/v/avfake.mp4", 1, video_label=0, audio_label=1, dataset="fakeavceleb"),
        row("/v/unknown.mp4", -1),
        row("/v/faceless.mp4", 0),
        row("/v/not_prepared.mp4", 0),
    ]
    return tmp_path, rows


def test_dataset_skips_rows_and_labels_samples(cache_rows, caplog):
    cache_dir, rows = cache_rows
    with caplog.at_level("INFO"):
        train = VideoDataset(rows, cache_dir, PRE, train=True)
    assert [it.row.path for it in train.items] == ["/v/real.mp4", "/v/fake.mp4", "/v/avfake.mp4"]
    for reason in ("1 no cache entry", "1 no face track", "1 unlabelled"):
        assert reason in caplog.text
    evald = VideoDataset(rows, cache_dir, PRE, train=False, windows_per_video=2)
    assert len(evald) == 8 and list(evald.labels) == [0, 0, 1, 1, 1, 1, -1, -1]
    expected = {  # label, video_label, audio_label, audio_mask
        "/v/real.mp4": (0, 0, 0, True),
        "/v/fake.mp4": (1, -1, -1, True),
        "/v/avfake.mp4": (1, 0, -1, False),  # audio label unknown where the clip has no audio
        "/v/unknown.mp4": (-1, -1, -1, True),
    }
    for i in range(len(evald)):
        s = evald[i]
        assert s["frames"].shape == (8, 3, 64, 64) and s["mouths"].shape == (8, 3, 32, 32)
        assert s["audio"].shape == (PRE.audio_samples,) and s["label"].dtype == torch.float32
        assert s["segment_labels"].shape == (PRE.num_segments,)
        got = (s["label"].item(), s["video_label"].item(), s["audio_label"].item(), s["audio_mask"].item())
        assert got == expected[s["meta"]["path"]]
        assert (s["segment_labels"] == s["label"]).all()
        assert s["meta"]["method"] == ("real" if s["label"] == 0 else "Deepfakes")
        assert s["meta"]["pseudo"] == ""
    # eval windows: evenly spaced inside the largest track (30 frames -> starts 7 and 15 at 5 fps)
    assert [evald[i]["meta"]["t0"] for i in (0, 1)] == pytest.approx([1.4, 3.0])


def test_dataset_segment_labels_of_padded_windows(tmp_path):
    write_cache(tmp_path, [make_clip("/v/short.mp4", track_lengths=[4])])
    s = VideoDataset([row("/v/short.mp4", 1)], tmp_path, PRE)[0]
    assert s["segment_labels"].tolist() == [1.0, -1.0]  # frames 5.. are padding
    assert s["meta"]["n_real"] == 4


def test_dataset_is_deterministic_per_seed_epoch_index(cache_rows):
    cache_dir, rows = cache_rows
    a = VideoDataset(rows, cache_dir, PRE, train=True, seed=3, windows_per_video=4)
    b = VideoDataset(rows, cache_dir, PRE, train=True, seed=3, windows_per_video=4)
    for i in (0, 5, 9):
        sa, sb = a[i], b[i]
        for key in ("frames", "audio", "mouths", "label", "segment_labels"):
            assert torch.equal(sa[key], sb[key])
        assert sa["meta"] == sb["meta"]

    def draws(ds):
        return [(ds[i]["meta"]["track_id"], ds[i]["meta"]["t0"]) for i in range(8)]

    first = draws(a)
    a.set_epoch(1)
    assert draws(a) != first
    a.set_epoch(0)
    assert draws(a) == first == draws(b)


def test_collate_in_a_dataloader_with_workers(cache_rows):
    cache_dir, rows = cache_rows
    ds = VideoDataset(rows, cache_dir, PRE, train=True, windows_per_video=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert [b["frames"].shape[0] for b in batches] == [3, 3]
    b = batches[0]
    assert b["frames"].shape == (3, 8, 3, 64, 64) and b["audio_mask"].dtype == torch.bool
    assert b["label"].shape == (3,) and b["segment_labels"].shape == (3, 2)
    assert isinstance(b["meta"], list) and b["meta"][0]["path"] == "/v/real.mp4"
    direct = collate([ds[i] for i in range(3)])
    assert torch.equal(direct["frames"], b["frames"])  # workers draw the same samples
