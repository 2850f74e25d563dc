"""Video and audio augmentations of windows: shapes, consistency across frames, landmarks, SNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfdetect.config import AugmentConfig, PreprocessConfig
from dfdetect.data.augment import (
    add_noise,
    augment_audio,
    augment_window,
    down_up,
    h264,
    hflip,
    jpeg,
    random_resized_crop,
    time_shift,
)
from dfdetect.data.dataset import VideoDataset, clip_windows
from tests.data.clips import make_clip, row, write_cache

PRE = PreprocessConfig(fps=5.0, size=64, clip_frames=4, mouth_size=32)
ALL = AugmentConfig(
    p_color=1, p_crop=1, p_flip=1, p_blur=1, p_jpeg=1, p_audio_shift=1, p_audio_noise=1, p_audio_gain=1
)


@pytest.fixture(scope="module")
def window():
    return clip_windows(make_clip(n_frames=8), PRE)[0]


def test_augment_keeps_shapes_and_is_the_same_for_every_frame(window):
    out = augment_window(window, ALL, np.random.default_rng(0))
    assert out.frames.shape == window.frames.shape and out.frames.dtype == np.uint8
    assert out.audio.shape == window.audio.shape and out.audio.dtype == np.float32
    assert out.landmarks.shape == window.landmarks.shape and out.landmarks.dtype == np.float32
    assert not np.array_equal(out.frames, window.frames) and not np.array_equal(out.audio, window.audio)
    same = window.replace(frames=np.repeat(window.frames[:1], 4, axis=0))
    out = augment_window(same, ALL, np.random.default_rng(1))
    for t in range(1, 4):
        np.testing.assert_array_equal(out.frames[t], out.frames[0])
    a = augment_window(window, ALL, np.random.default_rng(2))
    b = augment_window(window, ALL, np.random.default_rng(2))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)


def test_no_audio_is_left_alone(window):
    silent = window.replace(audio=np.zeros_like(window.audio), audio_mask=False)
    out = augment_window(silent, ALL, np.random.default_rng(0))
    assert not out.audio.any() and not out.audio_mask


def _dots(window):
    """Frames that are black except a white 3x3 dot at the left eye landmark."""
    frames = np.zeros_like(window.frames)
    x, y = window.landmarks[0, 0].astype(int)
    frames[:, y - 1 : y + 2, x - 1 : x + 2] = 255
    return frames


def test_geometric_augmentations_move_the_landmarks(window):
    frames = _dots(window)
    flipped, lm = hflip(frames, window.landmarks)
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all()  # the left eye is still the leftmost eye
    x, y = lm[0, 1]  # the old left eye is now the right one
    assert flipped[0, int(y), int(x)].max() == 255
    for seed in range(3):
        cropped, lm = random_resized_crop(frames, window.landmarks, (0.6, 0.8), np.random.default_rng(seed))
        assert cropped.shape == frames.shape
        grey = cropped[0].max(-1)
        ys, xs = np.nonzero(grey > 100)
        centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])  # continuous coordinates
        np.testing.assert_allclose(centre, lm[0, 0], atol=1.0)


def test_jpeg_quality_controls_the_error(window):
    err = [np.abs(jpeg(window.frames, q).astype(int) - window.frames).mean() for q in (20, 90)]
    assert err[0] > err[1] > 0


def test_noise_snr_gain_and_shift_are_honoured():
    rng = np.random.default_rng(0)
    audio = np.sin(np.linspace(0, 400 * np.pi, 16000)).astype(np.float32) * 0.3
    for snr in (10.0, 25.0):
        noisy = add_noise(audio, snr, rng)
        measured = 10 * np.log10(np.mean(audio**2) / np.mean((noisy - audio) ** 2))
        assert measured == pytest.approx(snr, abs=0.01)
    np.testing.assert_array_equal(add_noise(np.zeros(10, np.float32), 10, rng), np.zeros(10))
    x = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(time_shift(x, 3), [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(time_shift(x, -2), [3, 4, 5, 6, 7, 8, 9, 10, 0, 0])
    gain_only = AugmentConfig(p_audio_shift=0, p_audio_noise=0, p_audio_gain=1, gain_db=(6.0, 6.0))
    np.testing.assert_allclose(augment_audio(audio, gain_only, rng), audio * 10 ** (6 / 20), rtol=1e-6)
    shift_only = AugmentConfig(p_audio_shift=1, p_audio_noise=0, p_audio_gain=0, audio_shift_seconds=0.01)
    shifted = augment_audio(audio, shift_only, rng)
    lag = [k for k in range(-160, 161) if np.array_equal(shifted, time_shift(audio, k))]
    assert len(lag) == 1 and abs(lag[0]) <= 160


def test_dataset_recomputes_mouths_after_augmentation(tmp_path):
    write_cache(tmp_path, [make_clip("/v/a.mp4", n_frames=8)])
    flip = AugmentConfig(p_color=0, p_crop=0, p_flip=1, p_blur=0, p_jpeg=0)
    plain = VideoDataset([row("/v/a.mp4", 0)], tmp_path, PRE, train=True, seed=0)[0]
    flipped = VideoDataset([row("/v/a.mp4", 0)], tmp_path, PRE, train=True, augment=flip, seed=0)[0]
    assert torch.allclose(flipped["frames"], plain["frames"].flip(-1))
    # the mouth of the mirrored face is the mirrored mouth (the landmarks were mirrored too)
    assert torch.allclose(flipped["mouths"], plain["mouths"].flip(-1), atol=0.2)


def test_reencoding_and_rescaling_degrade_like_an_upload(window):
    """H.264 re-encoding loses more at a higher CRF; down-and-up scaling blurs; both keep the window's
    shape, and the config turns them on through augment_window."""
    frames = window.frames
    err = {crf: np.abs(h264(frames, crf).astype(int) - frames).mean() for crf in (18, 40)}
    assert h264(frames, 18).shape == frames.shape and 0 < err[18] < err[40]
    blurred = down_up(frames, 0.4)
    assert blurred.shape == frames.shape and blurred.dtype == np.uint8
    assert (
        np.abs(np.diff(blurred.astype(int), axis=2)).mean()
        < np.abs(np.diff(frames.astype(int), axis=2)).mean()
    )
    only = AugmentConfig(p_color=0, p_crop=0, p_flip=0, p_blur=0, p_jpeg=0, p_resize=1, p_h264=1,
                         p_audio_shift=0, p_audio_noise=0, p_audio_gain=0)  # fmt: skip
    out = augment_window(window, only, np.random.default_rng(0))
    assert out.frames.shape == frames.shape and not np.array_equal(out.frames, frames)
    np.testing.assert_array_equal(out.landmarks, window.landmarks)  # photometric only
