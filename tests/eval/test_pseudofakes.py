"""Held-back pseudo-fakes of the evaluation: deterministic, local to the face, really desynced/swapped."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfdetect.data.cache import write_entry
from dfdetect.data.manifest import ManifestRow
from dfdetect.data.pseudofake import face_hull, sample_sbi_params
from dfdetect.eval import pseudofakes as pf
from dfdetect.types import Clip
from tests.eval.conftest import make_clip

SIZE = 96


@pytest.fixture(scope="module")
def speaking() -> Clip:
    return make_clip("real/pcavs_Audio_Source_00015.mp4", seconds=3.0, size=SIZE, n_tracks=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> tuple[Path, list[ManifestRow], dict[str, Clip]]:
    """A cache of 4 real videos (2 with audio, 1 without, 1 faceless) and 1 fake, as manifest rows."""
    specs = {
        "/v/a.mp4": make_clip("real/pcavs_Audio_Source_00015.mp4", seconds=2.5, size=32),
        "/v/b.mp4": make_clip("real/pcavs_Audio_Source_00086.mp4", seconds=4.0, size=32),
        "/v/mute.mp4": make_clip("real/pcavs_Input_00098.mp4", seconds=2.0, size=32, audio=False),
        "/v/faceless.mp4": make_clip("real/pcavs_Input_00098.mp4", seconds=2.0, size=32, faces=False),
        "/v/fake.mp4": make_clip("real/pcavs_Pose_Source_00067.mp4", seconds=2.0, size=32),
    }
    out = tmp_path_factory.mktemp("pf-cache")
    clips = {}
    for path, clip in specs.items():
        clips[path] = dataclasses.replace(clip, path=path)
        write_entry(out, clips[path])
    rows = [
        ManifestRow(
            path=p, label=int(p.endswith("fake.mp4")), dataset="demo", method="real", split="test", group=p
        )
        for p in specs
    ]
    rows.append(
        ManifestRow(path="/v/gone.mp4", label=0, dataset="demo", method="real", split="test", group="g")
    )
    return out, rows, clips


def test_same_path_gives_the_same_fake_and_another_path_another(speaking):
    other = np.tile(np.flip(speaking.audio), 2)  # longer than the clip: the swap start is drawn
    for kind in pf.KINDS:
        a = pf.make_pseudofake(speaking, kind, other_audio=other)
        b = pf.make_pseudofake(speaking, kind, other_audio=other)
        c = pf.make_pseudofake(speaking, kind, seed="/elsewhere.mp4", other_audio=other)
        np.testing.assert_array_equal(a.audio, b.audio)
        for fa, fb in zip(a.faces, b.faces, strict=True):
            np.testing.assert_array_equal(fa.crops, fb.crops)
        if kind == "sbi":
            assert not np.array_equal(a.faces[0].crops, c.faces[0].crops)
        else:
            assert not np.array_equal(a.audio, speaking.audio) and not np.array_equal(a.audio, c.audio)


def test_sbi_changes_every_crop_only_inside_the_face_and_keeps_shapes(speaking, monkeypatch):
    calls = []
    blend = pf.self_blend

    def face_only_blend(frames, landmarks, rng, params=None):
        # half of SBI draws transform the whole target frame (as the paper's code does); this test checks
        # the face-source branch, whatever the path-seeded draw of the machine's media path is
        calls.append(1)
        params = dataclasses.replace(params or sample_sbi_params(rng), transform_target=False)
        return blend(frames, landmarks, rng, params)

    monkeypatch.setattr(pf, "self_blend", face_only_blend)
    fake = pf.make_pseudofake(speaking, "sbi")
    assert len(calls) == len(speaking.faces) == 2  # one call, so one set of SBI parameters, per track
    np.testing.assert_array_equal(fake.audio, speaking.audio)
    # the widest face hull the parameters can draw, dilated by what the mask deformation and blur can add
    widest = dataclasses.replace(
        sample_sbi_params(np.random.default_rng(0)), hull="face", hull_scale=(1.1, 1.1)
    )
    grow = int(0.15 * SIZE) * 2 + 1
    for real, faked in zip(speaking.faces, fake.faces, strict=True):
        assert faked.crops.shape == real.crops.shape and faked.crops.dtype == np.uint8
        np.testing.assert_array_equal(faked.crop_landmarks, real.crop_landmarks)
        assert faked.track is real.track
        changed = np.abs(faked.crops.astype(int) - real.crops.astype(int)).max(-1) > 0  # [T, H, W]
        assert changed.reshape(len(changed), -1).any(1).all(), "every frame is blended"
        for t, lm in enumerate(real.crop_landmarks):
            region = cv2.dilate(face_hull(lm, (SIZE, SIZE), widest), np.ones((grow, grow), np.uint8))
            assert not changed[t][region == 0].any(), f"frame {t} changed outside the face"
            assert changed[t][face_hull(lm, (SIZE, SIZE), widest) > 0].mean() > 0.3


def _circular_shift(a: np.ndarray, b: np.ndarray) -> int:
    """k with ``b == np.roll(a, k)`` (checked exactly)."""
    k = int(np.argmax(np.fft.irfft(np.conj(np.fft.rfft(a)) * np.fft.rfft(b), len(a))))
    assert np.array_equal(np.roll(a, k), b)
    return k


def test_desync_shifts_the_audio_by_at_least_one_second(speaking):
    n, sr = len(speaking.audio), speaking.sample_rate
    for seed in ("/x/1.mp4", "/x/2.mp4", "/x/3.mp4", "/x/4.mp4"):
        fake = pf.make_pseudofake(speaking, "desync", seed=seed)
        k = _circular_shift(speaking.audio, fake.audio)
        assert min(k, n - k) / sr >= pf.MIN_DESYNC_SECONDS  # either way round the wrap
        assert abs(fake.params["desync_seconds"]) >= pf.MIN_DESYNC_SECONDS
        assert all(f.crops is r.crops for f, r in zip(fake.faces, speaking.faces, strict=True))
    short = dataclasses.replace(speaking, audio=speaking.audio[: int(1.5 * sr)])
    assert pf.make_pseudofake(short, "desync") is None  # cannot be shifted by 1 s both ways


def test_rows_keys_labels_and_no_audio_fakes_without_audio(cache):
    cache_dir, rows, _ = cache
    fakes = pf.PseudoFakeSet(rows, cache_dir)
    keys = [r.path for r in fakes.rows]
    assert keys == [
        "/v/a.mp4#sbi",
        "/v/a.mp4#desync",
        "/v/a.mp4#swap",
        "/v/b.mp4#sbi",
        "/v/b.mp4#desync",
        "/v/b.mp4#swap",
        "/v/mute.mp4#sbi",  # no audio: no desync, no swap; faceless, fake and missing videos: nothing
    ]
    assert fakes.counts() == {"sbi": 3, "desync": 2, "swap": 2}
    for row in fakes.rows:
        source, kind = row.path.split("#")
        assert (row.label, row.method, row.group, row.dataset, row.split) == (1, kind, source, "demo", "test")
        assert row.video_label == int(kind == "sbi")
        assert row.audio_label == (None if source == "/v/mute.mp4" else 0)
    assert [r.path for r in pf.PseudoFakeSet(rows, cache_dir, ["swap"]).rows] == [
        "/v/a.mp4#swap",
        "/v/b.mp4#swap",
    ]
    with pytest.raises(ValueError, match="unknown pseudo-fake kind"):
        pf.check_kinds(["deepfake"])


def test_swap_takes_the_audio_of_another_real_video(cache):
    cache_dir, rows, clips = cache
    fakes = pf.PseudoFakeSet(rows, cache_dir, ["swap"])
    assert fakes.partners == {"/v/a.mp4": "/v/b.mp4", "/v/b.mp4": "/v/a.mp4"}
    for row in fakes.rows:
        source = row.path.split("#")[0]
        fake, own, other = fakes.load(row), clips[source].audio, clips[fakes.partners[source]].audio
        assert fake.path == row.path and len(fake.audio) == len(own)
        assert not np.array_equal(fake.audio, own)
        m = min(len(own), len(other))
        starts = [s for s in range(len(other) - m + 1) if np.array_equal(fake.audio[:m], other[s : s + m])]
        assert starts, "the swapped audio is a span of the partner's audio"
        np.testing.assert_array_equal(fake.audio[m:], 0)  # a shorter partner is padded with silence
        for f, r in zip(fake.faces, clips[source].faces, strict=True):
            np.testing.assert_array_equal(f.crops, r.crops)
    plain = fakes.load(rows[0])
    assert plain.path == "/v/a.mp4" and np.array_equal(plain.audio, clips["/v/a.mp4"].audio)
