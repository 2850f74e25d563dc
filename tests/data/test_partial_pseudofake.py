"""Partial pseudo-fakes: only a contiguous span of a real window is self-blended, and the labels say where."""

from __future__ import annotations

import numpy as np
import pytest

from dfdetect.config import PreprocessConfig, PseudoFakeConfig
from dfdetect.data.dataset import VideoDataset, clip_windows, frame_edges
from dfdetect.data.pseudofake import FADE_SECONDS, PseudoFaker
from tests.data.clips import make_clip, row, write_cache

PRE = PreprocessConfig(fps=5.0, size=64, clip_frames=8, segment_seconds=0.4, mouth_size=32)  # 4 x 2 frames
ONLY_SBI = {"sbi_weight": 1.0, "desync_weight": 0.0, "swap_weight": 0.0}


def _changed(a: np.ndarray, b: np.ndarray) -> list[int]:
    return [i for i in range(len(a)) if not np.array_equal(a[i], b[i])]


def test_partial_sbi_blends_one_span_and_reports_it():
    window = clip_windows(make_clip(n_frames=8, size=64), PRE)[0]
    faker = PseudoFaker(PseudoFakeConfig(partial_p=1.0, partial_span=(0.25, 0.5), **ONLY_SBI))
    spans = set()
    for seed in range(6):
        faked, labels, kind = faker(window, np.random.default_rng(seed))
        assert kind == "sbi_partial" and labels["label"] == 1 and labels["video_label"] == 1
        changed = _changed(faked.frames, window.frames)
        first, end = changed[0], changed[-1] + 1
        assert changed == list(range(first, end)) and 2 <= end - first <= 4  # contiguous, 25-50 % of 8
        edges = frame_edges(window)
        assert labels["segments"] == ((pytest.approx(edges[first]), pytest.approx(edges[end])),)
        spans.add((first, end))
    assert len(spans) > 2  # the span moves
    whole = PseudoFaker(PseudoFakeConfig(partial_p=0.0, **ONLY_SBI))
    faked, labels, kind = whole(window, np.random.default_rng(0))
    assert kind == "sbi" and "segments" not in labels and len(_changed(faked.frames, window.frames)) == 8
    with pytest.raises(ValueError, match="partial_span"):
        PseudoFaker(PseudoFakeConfig(partial_span=(0.6, 0.3)))


def test_partial_desync_shifts_the_audio_of_one_span_only():
    window = clip_windows(make_clip(n_frames=8, size=64), PRE)[0]
    cfg = PseudoFakeConfig(partial_p=1.0, sbi_weight=0.0, desync_weight=1.0, swap_weight=0.0)
    faked, labels, kind = PseudoFaker(cfg)(window, np.random.default_rng(3))
    assert kind == "av_desync_partial"
    assert (labels["label"], labels["video_label"], labels["audio_label"]) == (1, 0, 0)
    (a, b), edges = labels["segments"][0], frame_edges(window)
    assert a in edges and b in edges and 0 < b - a < window.t1 - window.t0
    np.testing.assert_array_equal(faked.frames, window.frames)  # the faces are untouched
    lo, hi = (round((t - window.t0) * 16000) for t in (a, b))
    fade = round(FADE_SECONDS * 16000)
    before, after = slice(0, max(lo - 1, 0)), slice(hi + 1, None)
    np.testing.assert_array_equal(faked.audio[before], window.audio[before])  # in sync before...
    np.testing.assert_array_equal(faked.audio[after], window.audio[after])  # ... and after the span
    inside = slice(lo + fade + 1, hi - fade - 1)
    assert not np.allclose(faked.audio[inside], window.audio[inside])
    # the span holds the window's audio of another time (rolled: no clip audio was given to cut from)
    n = len(window.audio)
    rolled = [k for k in range(1, n) if np.array_equal(faked.audio[inside], np.roll(window.audio, k)[inside])]
    assert len(rolled) == 1 and min(rolled[0], n - rolled[0]) / 16000 >= cfg.min_desync_seconds - 1e-6


def test_dataset_segment_labels_of_partial_pseudo_fakes(tmp_path):
    write_cache(tmp_path, [make_clip(f"/v/r{i}.mp4", n_frames=20, size=64) for i in range(2)])
    rows = [row(f"/v/r{i}.mp4", 0) for i in range(2)]
    cfg = PseudoFakeConfig(p_fake=1.0, partial_p=1.0, **ONLY_SBI)
    fakes = VideoDataset(rows, tmp_path, PRE, train=True, pseudofake=cfg, seed=2, windows_per_video=4)
    plain = VideoDataset(rows, tmp_path, PRE, train=True, pseudofake=cfg.model_copy(update={"p_fake": 0.0}),
                         seed=2, windows_per_video=4)  # fmt: skip
    mixed = 0
    for i in range(len(fakes)):
        s, ref = fakes[i], plain[i]  # the same window (same draws), faked or not
        assert s["meta"]["pseudo"] == "sbi_partial" and s["meta"]["t0"] == ref["meta"]["t0"]
        changed = set(_changed(s["frames"].numpy(), ref["frames"].numpy()))
        want = [float(bool(changed & {2 * k, 2 * k + 1})) for k in range(4)]
        assert s["segment_labels"].tolist() == want and s["label"].item() == 1.0
        assert (ref["segment_labels"] == 0).all() and ref["label"].item() == 0.0
        mixed += 0.0 in want
    assert mixed > 0  # the segment labels say where: some windows are partly real
