"""Pseudo-fakes: self-blended images (SBI) and audio-visual desync / swap, on real frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dfdetect.config import PreprocessConfig, PseudoFakeConfig
from dfdetect.data.dataset import VideoDataset, clip_windows
from dfdetect.data.pseudofake import (
    BLEND_RATIOS,
    PseudoFaker,
    desync,
    face_hull,
    sample_sbi_params,
    self_blend,
    swap_audio,
)
from tests.data.clips import make_clip, row, write_cache

PRE = PreprocessConfig(fps=5.0, size=96, clip_frames=4, mouth_size=32)  # 0.8 s windows


@pytest.fixture(scope="module")
def window():
    return clip_windows(make_clip(n_frames=8, size=96), PRE)[0]


def _params(seed=0, **kw):
    p = sample_sbi_params(np.random.default_rng(seed))
    return dataclasses.replace(p, **{"transform_target": False, "hull": "face", "ratio": 1.0, **kw})


def test_sbi_changes_only_inside_the_mask(window):
    for seed in range(4):
        params = _params(seed, ratio=BLEND_RATIOS[seed])
        fakes, masks, _ = self_blend(window.frames, window.landmarks, None, params)
        assert fakes.shape == window.frames.shape and fakes.dtype == np.uint8
        assert masks.shape == window.frames.shape[:3] and masks.dtype == np.float32
        assert masks.min() >= 0 and masks.max() == pytest.approx(params.ratio, abs=1e-5)  # ratio honoured
        changed = (fakes != window.frames).any(-1)  # [T, H, W]
        assert not changed[masks == 0].any()  # outside the mask the frame is untouched
        assert changed[masks > 0.2].mean() > 0.5  # inside it the face is replaced
        nose = window.landmarks[0, 2].astype(int)
        assert masks[0, nose[1], nose[0]] == pytest.approx(params.ratio, abs=0.05)  # the face is covered
        assert 0.1 < (masks[0] > 0).mean() < 0.8  # ... and not the whole crop


def test_sbi_uses_the_same_parameters_for_every_frame(window):
    same = np.repeat(window.frames[:1], 4, axis=0)
    fakes, masks, _ = self_blend(same, window.landmarks, np.random.default_rng(5))
    for t in range(1, 4):
        np.testing.assert_array_equal(fakes[t], fakes[0])
    # real, moving frames with the same landmarks: the same mask, a consistent difference pattern
    fakes, masks, _ = self_blend(window.frames, window.landmarks, None, _params(1))
    for t in range(1, 4):
        np.testing.assert_array_equal(masks[t], masks[0])
    # fixed parameters are reproducible; another draw gives another fake
    again, _, _ = self_blend(window.frames, window.landmarks, None, _params(1))
    np.testing.assert_array_equal(again, fakes)
    other, _, _ = self_blend(window.frames, window.landmarks, None, _params(2))
    assert not np.array_equal(other, fakes)


def test_sbi_target_branch_blends_into_the_transformed_frame(window):
    params = _params(3, transform_target=True, ratio=0.75)
    from dfdetect.data.pseudofake import self_blend_frame

    fake, mask, target = self_blend_frame(window.frames[0], window.landmarks[0], params)
    assert not np.array_equal(target, window.frames[0])
    np.testing.assert_array_equal(fake[mask == 0], target[mask == 0])


def test_face_hull_spans_brows_to_chin(window):
    lm = window.landmarks[0]
    mask = face_hull(lm, (96, 96), _params())
    eyes_y, mouth_y = lm[:2, 1].mean(), lm[3:, 1].mean()
    rows = np.flatnonzero(mask.any(1))
    h = mouth_y - eyes_y
    assert rows[0] < eyes_y - 0.3 * h and rows[-1] > mouth_y + 0.5 * h
    assert mask[lm[:, 1].astype(int), lm[:, 0].astype(int)].all()  # every landmark inside


def test_desync_shift_is_exact():
    audio = np.arange(16000, dtype=np.float32)
    np.testing.assert_array_equal(desync(audio, 0.5, 16000), np.roll(audio, 8000))
    np.testing.assert_array_equal(desync(audio, -0.25, 16000), np.roll(audio, -4000))
    source = np.arange(64000, dtype=np.float32)  # the clip; the window starts at sample 20000
    out = desync(source[20000:36000], 0.5, 16000, source=source, start=20000)
    np.testing.assert_array_equal(out, source[12000:28000])  # cut from the clip, no splice


def test_swap_uses_the_other_audio(window):
    other = np.arange(100000, dtype=np.float32) + 7
    swapped = swap_audio(window, other, np.random.default_rng(0))
    start = int(swapped.audio[0]) - 7
    np.testing.assert_array_equal(swapped.audio, other[start : start + len(window.audio)])
    assert swapped.audio_mask
    short = swap_audio(window, np.ones(100, np.float32))
    assert short.audio[:100].all() and not short.audio[100:].any()


def test_pseudofaker_kinds_labels_and_shift(window):
    rng = np.random.default_rng(0)
    cfg = PseudoFakeConfig(
        sbi_weight=0, desync_weight=1, swap_weight=0, min_desync_seconds=0.2, max_desync_seconds=2
    )
    clip_audio = np.arange(16000 * 4, dtype=np.float32)
    w = window.replace(t0=1.0, audio=clip_audio[16000 : 16000 + PRE.audio_samples])
    for _ in range(10):
        faked, labels, kind = PseudoFaker(cfg)(w, rng, clip_audio=clip_audio)
        assert kind == "av_desync" and labels == {"label": 1, "video_label": 0, "audio_label": 0}
        shift = 16000 - int(faked.audio[0])
        assert 0.2 * 16000 <= abs(shift) <= 0.6 * 16000  # >= min, and <= window - min
        np.testing.assert_array_equal(faked.frames, w.frames)
    silent = window.replace(audio_mask=False)
    faker = PseudoFaker(PseudoFakeConfig())
    assert set(faker.kinds(silent)) == {"sbi"}
    for _ in range(5):
        faked, labels, kind = faker(silent, rng, other_audio=np.ones(50000, np.float32))
        assert kind == "sbi" and labels == {"label": 1, "video_label": 1, "audio_label": -1}
        assert not np.array_equal(faked.frames, silent.frames)
    only_swap = PseudoFaker(PseudoFakeConfig(sbi_weight=1, desync_weight=0, swap_weight=1000))
    kinds = {only_swap(window, rng, other_audio=lambda: None)[2] for _ in range(5)}
    assert kinds == {"sbi"}  # no other audio found: falls back to the other kinds
    faked, labels, kind = only_swap(window, rng, other_audio=np.full(30000, 0.5, np.float32))
    assert kind == "av_swap" and (faked.audio == 0.5).all() and labels["video_label"] == 0


def test_dataset_makes_pseudo_fakes_from_reals(tmp_path):
    clips = [make_clip(f"/v/r{i}.mp4", n_frames=12, size=96) for i in range(3)]
    clips.append(make_clip("/v/f.mp4", n_frames=12, size=96))
    write_cache(tmp_path, clips)
    rows = [row(f"/v/r{i}.mp4", 0) for i in range(3)] + [row("/v/f.mp4", 1)]
    cfg = PseudoFakeConfig(p_fake=1.0, only_real=True)
    ds = VideoDataset(rows, tmp_path, PRE, train=True, pseudofake=cfg, seed=1, windows_per_video=4)
    assert len(ds) == 12  # the real fake is dropped (only_real)
    kinds = []
    for i in range(len(ds)):
        s = ds[i]
        kinds.append(s["meta"]["pseudo"])
        assert s["label"].item() == 1 and s["meta"]["method"] == s["meta"]["pseudo"]
        assert s["video_label"].item() == (1 if s["meta"]["pseudo"] == "sbi" else 0)
        assert s["audio_label"].item() == 0 and (s["segment_labels"] == 1).all()
    assert set(kinds) == {"sbi", "av_desync", "av_swap"}
    again = VideoDataset(rows, tmp_path, PRE, train=True, pseudofake=cfg, seed=1, windows_per_video=4)
    for i in (0, 5):
        a, b = ds[i], again[i]
        assert a["meta"] == b["meta"]
        for key in ("frames", "audio", "mouths"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
