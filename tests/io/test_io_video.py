"""io.video: probe, fps sampling, rotation, VFR, odd sizes, codecs/containers, typed errors."""

from __future__ import annotations

import av
import numpy as np
import pytest

from dfdetect.io.video import (
    SKIP_JITTER_FRAMES,
    Frame,
    MediaError,
    NoVideoStreamError,
    UnreadableMediaError,
    decode_all,
    iter_frames,
    probe,
)
from dfdetect.types import Status
from tests.conftest import media
from tests.malformed import EXPECTED, make_malformed_corpus, sine, write_video


def _source_index(frame: Frame) -> int:
    """level_frame() draws frame i with grey level 8 * i (bottom-right corner, away from the marker)."""
    return int(round(float(frame.image[-4:, -4:].mean()) / 8))


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_malformed_corpus(tmp_path_factory.mktemp("malformed"))


CODECS = [
    ("libx264", "mp4"),
    ("libx264", "mov"),
    ("mpeg4", "avi"),
    ("libvpx-vp9", "webm"),
    ("libx265", "mkv"),
    ("libx265", "mp4"),
]


@pytest.mark.parametrize(("codec", "ext"), CODECS)
def test_codecs_and_containers(tmp_path, codec, ext):
    if not _has_encoder(codec):
        pytest.skip(f"this PyAV wheel has no {codec} encoder, so no {codec} test clip can be made")
    path = write_video(tmp_path / f"clip.{ext}", n_frames=20, fps=10, codec=codec)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (96, 64, 0)
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(2.0, abs=0.15)
    frames = list(iter_frames(path, fps=5))
    assert [f.index for f in frames] == list(range(10))
    assert [_source_index(f) for f in frames] == list(range(0, 20, 2))
    assert np.allclose([f.timestamp for f in frames], np.arange(10) * 0.2, atol=1e-3)
    assert all(f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8 for f in frames)
    assert decode_all(path) == 20


def test_real_clip_probe_and_sampling():
    path = media("real/liveportrait_d0.mp4")
    info = probe(path)
    assert (info.width, info.height, info.codec) == (512, 512, "h264")
    assert info.has_audio is False and info.n_frames == 78
    frames = list(iter_frames(path, fps=5, max_side=128))
    assert len(frames) == 16  # 3.12 s at 5 fps
    assert frames[0].image.shape == (128, 128, 3)
    lag = np.array([f.timestamp for f in frames]) - np.arange(16) * 0.2  # behind the 0.2 s grid
    assert np.all(lag >= -1e-3) and np.all(lag <= SKIP_JITTER_FRAMES / info.fps + 1e-3)
    full = list(iter_frames(path, fps=5, max_side=128, skip_bframes=False))
    assert np.diff([f.timestamp for f in full]) == pytest.approx(np.full(15, 0.2))  # exact without skipping
    assert decode_all(path) == 78


@pytest.mark.parametrize("clip", ["real/ffpp_orig_519.mp4", "real/videoretalking_face_2.mp4"])
def test_skipping_frames_keeps_sampling_within_the_jitter_bound(clip):
    path = media(clip)
    rate = probe(path).fps
    skipped = [f.timestamp for f in iter_frames(path, fps=5, max_side=64, max_duration=5)]
    full = [f.timestamp for f in iter_frames(path, fps=5, max_side=64, max_duration=5, skip_bframes=False)]
    assert len(skipped) == len(full) == 25
    lag = np.array(skipped) - np.array(full)  # the regular grid's frame vs the first decoded one after it
    assert np.all(lag >= -1e-6) and np.all(lag <= SKIP_JITTER_FRAMES / rate + 1e-3)


def test_real_clip_with_audio_and_late_video_start():
    path = media("real/face_recognition_short_hamilton_clip.mp4")
    info = probe(path)
    assert info.has_audio and info.audio_codec == "aac" and info.audio_sample_rate == 44100
    frames = list(iter_frames(path, fps=2, max_duration=3))
    # the video stream starts 0.84 s after the container (the audio starts at 0): same clock as audio
    assert frames[0].timestamp == pytest.approx(0.844, abs=0.01)
    assert all(f.timestamp < 3 for f in frames) and len(frames) == 5


def test_limits_start_and_max_frames(tmp_path):
    path = write_video(tmp_path / "c.mp4", n_frames=50, fps=10)
    frames = list(iter_frames(path, fps=5, start=2.0, max_duration=1.0))
    assert [_source_index(f) for f in frames] == [20, 22, 24, 26, 28]
    assert frames[0].timestamp == pytest.approx(2.0) and frames[0].index == 0
    assert len(list(iter_frames(path, fps=5, max_frames=3))) == 3
    assert len(list(iter_frames(path, fps=100))) == 50  # higher than the video's rate: every frame


def test_variable_frame_rate_picks_first_frame_at_or_after_each_target(tmp_path):
    times = [0.0, 0.05, 0.3, 0.31, 0.32, 0.9, 1.0, 1.45, 1.5, 2.0]
    path = write_video(tmp_path / "vfr.mp4", n_frames=len(times), fps=10, times=times)
    frames = list(iter_frames(path, fps=5))
    assert [_source_index(f) for f in frames] == [0, 2, 5, 6, 7, 9]
    assert [round(f.timestamp, 3) for f in frames] == [0.0, 0.3, 0.9, 1.0, 1.45, 2.0]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_applied(tmp_path, rotation):
    path = write_video(tmp_path / "rot.mp4", n_frames=4, size=(96, 64), rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    expected_shape = (96, 64) if rotation in (90, 270) else (64, 96)
    assert (info.height, info.width) == expected_shape
    image = next(iter_frames(path)).image
    assert image.shape[:2] == expected_shape
    # the white marker drawn top-left ends where a counter-clockwise rotation puts it
    corner = {90: image[-4:, :4], 180: image[-4:, -4:], 270: image[:4, -4:]}[rotation]
    assert corner.mean() > 200 and image[:4, :4].mean() < 100


def test_odd_size_and_downscale_inside_ffmpeg(tmp_path):
    path = write_video(tmp_path / "odd.mp4", n_frames=6, size=(333, 251), pix_fmt="yuv444p")
    info = probe(path)
    assert (info.width, info.height) == (333, 251)
    assert next(iter_frames(path)).image.shape == (251, 333, 3)
    small = next(iter_frames(path, max_side=100)).image
    assert small.shape == (75, 100, 3)
    assert next(iter_frames(path, max_side=1000)).image.shape == (251, 333, 3)  # never upscaled


def test_audio_stream_facts(tmp_path):
    path = write_video(tmp_path / "av.webm", codec="libvpx-vp9", audio=sine(2.0))
    info = probe(path)
    assert info.has_audio and info.audio_codec == "opus"


def test_missing_file_message_says_what_to_do(tmp_path):
    with pytest.raises(UnreadableMediaError, match="not found; check the path") as err:
        probe(tmp_path / "nope.mp4")
    assert err.value.status is Status.UNREADABLE


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_files_raise_typed_errors(corpus, name):
    # prepare keeps an audio-only file as an audio entry; the video decoder itself refuses it
    expected = Status.NO_VIDEO if name == "audio_only" else EXPECTED[name]
    if expected not in (Status.UNREADABLE, Status.NO_VIDEO):
        frames = list(iter_frames(corpus[name]))  # readable: faceless clips decode fine
        assert frames and probe(corpus[name]).width == 160
        return
    for read in (probe, lambda p: list(iter_frames(p)), decode_all):
        with pytest.raises(MediaError) as err:
            read(corpus[name])
        assert err.value.status is expected
        assert str(corpus[name]) in str(err.value)
    if expected is Status.NO_VIDEO:
        assert isinstance(err.value, NoVideoStreamError)


def test_bad_fps_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        list(iter_frames(tmp_path / "x.mp4", fps=0))
