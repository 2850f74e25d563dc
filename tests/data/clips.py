"""Small :class:`~dfdetect.types.Clip` objects and cache folders built from real frames, for tests.

Frames are decoded from a real clip of ../shared/media (VoxCeleb2 face crops, so the centre of each
frame is a face) and resized to a small square; landmarks are a plausible frontal 5-point layout.
Reusable by any test: ``make_clip(...)``, ``write_cache(dir, clips)``, ``decode_frames(...)``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import av
import cv2
import numpy as np

from dfdetect.data import cache
from dfdetect.data.manifest import ManifestRow
from dfdetect.types import AudioStatus, Clip, FaceCrops, FaceTrack, VideoInfo
from tests.conftest import media

DEFAULT_SOURCE = "real/pcavs_Audio_Source_00015.mp4"  # 224x224, 25 fps, ~7 s, speech
# Frontal 5-point landmarks (left eye, right eye, nose, mouth left, mouth right) in a unit face crop
# made with margin 1.3 (face box = the central 1/1.3 of the crop).
_TEMPLATE = np.array([[0.33, 0.40], [0.67, 0.40], [0.50, 0.575], [0.355, 0.765], [0.645, 0.765]])
UNIT_LANDMARKS = 0.5 + (_TEMPLATE - 0.5) / 1.3


@functools.lru_cache(maxsize=8)
def _decoded(rel: str, every: int, n: int) -> tuple[np.ndarray, float]:
    """Every ``every``-th frame of a media clip (first ``n`` of them) and the clip's frame rate."""
    frames = []
    with av.open(str(media(rel))) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        for i, frame in enumerate(container.decode(stream)):
            if i % every == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= n:
                break
    out = np.stack(frames)
    out.setflags(write=False)
    return out, rate


def decode_frames(rel: str = DEFAULT_SOURCE, n: int = 20, fps: float = 5.0, size: int = 64) -> np.ndarray:
    """``[n, size, size, 3]`` uint8 RGB frames of a media clip sampled at about ``fps`` (cycled if short)."""
    _, rate = _decoded(rel, 1, 1)
    every = max(1, round(rate / fps))
    raw, _ = _decoded(rel, every, n)
    raw = raw[np.arange(n) % len(raw)]
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in raw])


@functools.lru_cache(maxsize=4)
def decode_audio(rel: str = DEFAULT_SOURCE, sample_rate: int = 16000) -> np.ndarray:
    """The mono float32 audio of a media clip at ``sample_rate``."""
    chunks = []
    with av.open(str(media(rel))) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32)
    audio.setflags(write=False)
    return audio


def landmarks_for(size: int, n: int, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """``[n, 5, 2]`` float32 plausible landmarks for ``size`` crops (optionally jittered)."""
    rng = np.random.default_rng(seed)
    lm = np.broadcast_to(UNIT_LANDMARKS * size, (n, 5, 2)) + rng.normal(0, jitter * size, (n, 5, 2))
    return lm.astype(np.float32)


def make_track(
    track_id: int, n: int, fps: float, size: int, start: float = 0.0, rel: str = DEFAULT_SOURCE
) -> FaceCrops:
    """A face track of ``n`` real frames at ``fps`` starting at ``start`` seconds."""
    crops = decode_frames(rel, n, fps, size)
    ts = start + np.arange(n) / fps
    boxes = np.tile(np.array([[100, 80, 300, 280]], np.float32), (n, 1))
    track = FaceTrack(
        track_id=track_id,
        timestamps=ts.astype(np.float64),
        boxes=boxes,
        landmarks=landmarks_for(200, n) + 100,
        scores=np.full(n, 0.99, np.float32),
        detected=np.arange(n) % 3 == 0,
    )
    lm = landmarks_for(size, n)
    blur = np.ones(n, np.float32)
    return FaceCrops(track=track, crops=crops, crop_boxes=boxes, crop_landmarks=lm, blur=blur)


def make_clip(
    path: str = "/videos/a.mp4",
    n_frames: int = 20,
    fps: float = 5.0,
    size: int = 64,
    tracks: int = 1,
    audio: np.ndarray | None = None,
    audio_status: AudioStatus | None = None,
    duration: float | None = None,
    track_lengths: list[int] | None = None,
    rel: str = DEFAULT_SOURCE,
) -> Clip:
    """A Clip of real frames. ``audio=None`` uses the clip's real audio; pass ``np.zeros(0)`` for none."""
    lengths = [n_frames] * tracks if track_lengths is None else track_lengths
    faces = [make_track(i, n, fps, size, rel=rel) for i, n in enumerate(lengths)]
    duration = duration or max(lengths, default=n_frames) / fps
    if audio is None:
        audio = decode_audio(rel)[: round(duration * 16000)].copy()
    if audio_status is None:
        audio_status = AudioStatus.OK if audio.size else AudioStatus.NO_STREAM
    info = VideoInfo(
        path=path, duration=duration, fps=25.0, width=400, height=400, codec="h264", has_audio=audio.size > 0
    )
    return Clip(
        path=path,
        info=info,
        faces=faces,
        audio=np.asarray(audio, np.float32),
        sample_rate=16000,
        audio_status=audio_status,
        speech=[(0.0, duration)],
        params={"fps": fps, "size": size, "margin": 1.3, "detector": "test"},
    )


def write_cache(cache_dir: Path, clips: list[Clip]) -> Path:
    """Write ``clips`` as cache entries under ``cache_dir``; returns ``cache_dir``."""
    for clip in clips:
        cache.write_entry(cache_dir, clip)
    return cache_dir


def row(path: str, label: int = 0, split: str = "train", **kw: object) -> ManifestRow:
    """A manifest row with sensible defaults."""
    method = kw.pop("method", "real" if label == 0 else "Deepfakes")
    dataset, group = str(kw.pop("dataset", "test")), str(kw.pop("group", path))
    return ManifestRow(path, label, dataset, str(method), split, group, **kw)  # type: ignore[arg-type]
