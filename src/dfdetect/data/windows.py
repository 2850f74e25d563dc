"""Windows over the face tracks of a prepared clip, and their model tensors.

One :class:`Window` is ``pre.clip_frames`` frames of one face track at ``pre.fps``, resized to
``pre.size``, with the audio of the same time span ``[t0, t0 + pre.window_seconds)`` and mouth crops.
:func:`clip_windows` cuts every window of a clip (eval, scan); ``data.dataset.VideoDataset`` draws one
window per video for training. Everything here is re-exported by ``dfdetect.data.dataset``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from dfdetect.config import PreprocessConfig
from dfdetect.data.cache import (
    read_entry_file,
)
from dfdetect.data.manifest import UNKNOWN
from dfdetect.types import Clip, FaceCrops

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# 5-point landmark order (MTCNN): left eye, right eye, nose, left mouth corner, right mouth corner.
FLIP_ORDER = (1, 0, 2, 4, 3)
TENSOR_KEYS = (
    "frames",
    "audio",
    "audio_mask",
    "mouths",
    "label",
    "segment_labels",
    "video_label",
    "audio_label",
)


@dataclass
class Window:
    """``T`` frames of one face track plus the audio of the same time span.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB face crops (``H = W = pre.size``).
        timestamps: ``[T]`` float64 seconds of each frame in the video (padding repeats the last one).
        audio: ``[S]`` float32 mono at ``pre.sample_rate`` covering ``[t0, t1)`` (zeros when absent).
        audio_mask: False when the clip has no usable audio (no stream, silent, or past its end).
        mouths: ``[T, m, m, 3]`` uint8 mouth crops (``m = pre.mouth_size``).
        landmarks: ``[T, 5, 2]`` float32 landmarks in ``frames`` pixel coordinates.
        track_id: id of the face track the window comes from.
        t0: start of the window in seconds (timestamp of its first frame).
        t1: ``t0 + pre.window_seconds``.
        n_real: frames that are real; frames ``n_real:`` repeat the last real frame (short tracks).
    """

    frames: np.ndarray
    timestamps: np.ndarray
    audio: np.ndarray
    audio_mask: bool
    mouths: np.ndarray
    landmarks: np.ndarray
    track_id: int
    t0: float
    t1: float
    n_real: int

    def replace(self, **changes: Any) -> Window:
        return dataclasses.replace(self, **changes)


def cache_fps(clip: Clip) -> float:
    """Frame rate the cache entry was sampled at (``params["fps"]``, else from the timestamps)."""
    fps = clip.params.get("fps")
    if fps:
        return float(fps)
    for face in clip.faces:
        ts = face.track.timestamps
        if len(ts) > 1:
            return float(1.0 / np.median(np.diff(ts)))
    return 0.0


def resample_indices(timestamps: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the frames nearest to a regular grid at ``fps`` starting at the first timestamp.

    Lower ``fps`` than the track's subsamples it; a higher one repeats frames (nearest neighbour).
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(ts) <= 1:
        return np.arange(len(ts))
    n = int(np.floor((ts[-1] - ts[0]) * fps + 1e-6)) + 1
    grid = ts[0] + np.arange(n) / fps  # [n]
    hi = np.clip(np.searchsorted(ts, grid), 1, len(ts) - 1)
    lo = hi - 1
    return np.where(grid - ts[lo] <= ts[hi] - grid, lo, hi)


def track_indices(clip: Clip, face: FaceCrops, pre: PreprocessConfig) -> np.ndarray:
    src_fps = cache_fps(clip)
    if src_fps and abs(src_fps - pre.fps) < 1e-6:
        return np.arange(len(face.track.timestamps))
    if src_fps and pre.fps > src_fps + 1e-6 and len(face.track.timestamps) > 1:  # not a still image
        _warn_once(
            f"cache sampled at {src_fps:g} fps but the model wants {pre.fps:g} fps: frames are repeated; "
            "prepare the data again with --fps >= the model's fps"
        )
    return resample_indices(face.track.timestamps, pre.fps)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def _resize(crops: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``[T, H, W, 3]`` crops to ``size`` and scale their landmarks."""
    h, w = crops.shape[1:3]
    if (h, w) == (size, size):
        return np.ascontiguousarray(crops), landmarks.astype(np.float32)
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops])
    scale = np.array([size / w, size / h], dtype=np.float32)
    return out, (landmarks * scale).astype(np.float32)


def window_mouths(frames: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Mouth crops ``[T, size, size, 3]`` uint8 of ``frames`` from their landmarks."""
    from dfdetect.faces.crop import mouth_crop

    return np.stack([mouth_crop(f, lm, size) for f, lm in zip(frames, landmarks, strict=True)])


def clip_audio(clip: Clip, sample_rate: int) -> np.ndarray | None:
    """The clip's audio at ``sample_rate``, or None when it has none worth using (no stream, silent)."""
    audio = np.asarray(clip.audio, dtype=np.float32)
    if not clip.has_usable_audio:
        return None
    if clip.sample_rate != sample_rate:  # caches are made at 16 kHz; linear resampling is a fallback
        n = round(audio.size * sample_rate / clip.sample_rate)
        audio = np.interp(np.arange(n) * clip.sample_rate / sample_rate, np.arange(audio.size), audio)
        audio = audio.astype(np.float32)
    return audio


def cut_audio(audio: np.ndarray | None, t0: float, pre: PreprocessConfig) -> tuple[np.ndarray, bool]:
    """Samples ``[t0, t0 + pre.window_seconds)`` of ``audio`` (zero padded) and whether any exist."""
    out = np.zeros(pre.audio_samples, dtype=np.float32)  # [S]
    if audio is None:
        return out, False
    start = round(t0 * pre.sample_rate)
    lo, hi = max(start, 0), min(start + pre.audio_samples, audio.size)
    if hi <= lo:
        return out, False
    out[lo - start : hi - start] = audio[lo:hi]
    return out, True


def track_window(
    clip: Clip,
    face_index: int,
    start: int,
    pre: PreprocessConfig,
    indices: np.ndarray | None = None,
    audio: np.ndarray | None = None,
    mouths: bool = True,
) -> Window:
    """The window of face track ``face_index`` starting at resampled frame ``start``.

    Args:
        clip: the prepared clip.
        face_index: index into ``clip.faces``.
        start: first frame, counted in frames at ``pre.fps``.
        pre: preprocessing of the model.
        indices: resampled frame indices of the track (computed when None).
        audio: the clip's audio from :func:`clip_audio` (computed when None and the clip has some).
        mouths: compute mouth crops (set False when the frames will change before use).
    """
    face = clip.faces[face_index]
    if indices is None:
        indices = track_indices(clip, face, pre)
    if audio is None:
        audio = clip_audio(clip, pre.sample_rate)
    sel = indices[start : start + pre.clip_frames]
    n_real = len(sel)
    if n_real == 0:
        raise ValueError(f"window start {start} is past the end of track {face.track.track_id}")
    sel = np.concatenate([sel, np.full(pre.clip_frames - n_real, sel[-1])])  # pad with the last frame
    frames, landmarks = _resize(
        np.asarray(face.crops[np.sort(np.unique(sel))]), face.crop_landmarks[sel], pre.size
    )
    frames = frames[np.searchsorted(np.unique(sel), sel)]  # [T, S, S, 3]; read each cached frame once
    timestamps = np.asarray(face.track.timestamps[sel], dtype=np.float64)
    t0 = float(timestamps[0])
    wav, has_audio = cut_audio(audio, t0, pre)
    m = pre.mouth_size
    mouth = window_mouths(frames, landmarks, m) if mouths else np.zeros((pre.clip_frames, m, m, 3), np.uint8)
    return Window(
        frames=frames,
        timestamps=timestamps,
        audio=wav,
        audio_mask=has_audio,
        mouths=mouth,
        landmarks=landmarks,
        track_id=int(face.track.track_id),
        t0=t0,
        t1=t0 + pre.window_seconds,
        n_real=n_real,
    )


def window_starts(n: int, clip_frames: int, stride: int) -> list[int]:
    """Starts covering ``n`` frames with windows of ``clip_frames``; the last one ends at the track's end."""
    if n <= clip_frames:
        return [0]
    starts = list(range(0, n - clip_frames + 1, stride))
    if starts[-1] + clip_frames < n:
        starts.append(n - clip_frames)
    return starts


def clip_windows(
    clip: Clip,
    pre: PreprocessConfig,
    track_index: int | None = None,
    stride: int | None = None,
    mouths: bool = True,
) -> list[Window]:
    """Every window of one track (``track_index``) or of all tracks of ``clip``, in track then time order.

    Args:
        clip: the prepared clip (cache entry or ``prepare_clip`` output).
        pre: preprocessing of the model (fps, size, clip_frames, ...).
        track_index: index into ``clip.faces``; None for all tracks.
        stride: frames (at ``pre.fps``) between window starts; default ``pre.clip_frames`` (no overlap).
            The last window is moved back so it ends at the track's end; tracks shorter than a window
            give one padded window.
        mouths: compute mouth crops.

    Returns:
        The windows; empty when the clip has no face track.
    """
    stride = stride or pre.clip_frames
    if stride < 1:
        raise ValueError(f"stride must be >= 1 frame, got {stride}")
    indices_of = range(len(clip.faces)) if track_index is None else [track_index]
    audio = clip_audio(clip, pre.sample_rate)
    windows = []
    for i in indices_of:
        indices = track_indices(clip, clip.faces[i], pre)
        for start in window_starts(len(indices), pre.clip_frames, stride):
            windows.append(track_window(clip, i, start, pre, indices, audio, mouths))
    return windows


def audio_windows(clip: Clip, pre: PreprocessConfig, overlap: float = 0.5) -> list[Window]:
    """Sliding windows over the audio of a clip without faces (an audio file), for audio-capable models.

    Each window spans ``pre.window_seconds`` (the last one ends at the audio's end); consecutive windows
    overlap by ``overlap`` of a window. Frames and mouths are blank (an audio model ignores them);
    ``track_id`` is -1.

    Returns:
        The windows; empty when the clip has no usable audio.
    """
    audio = clip_audio(clip, pre.sample_rate)
    if audio is None:
        return []
    seconds = audio.size / pre.sample_rate
    step = max(pre.window_seconds * (1.0 - overlap), 1.0 / pre.fps)
    starts = list(np.arange(0.0, max(seconds - pre.window_seconds, 0.0) + 1e-6, step))
    if starts[-1] + pre.window_seconds < seconds - 1e-6:
        starts.append(seconds - pre.window_seconds)
    t, s, m = pre.clip_frames, pre.size, pre.mouth_size
    windows = []
    for t0 in starts:
        times = float(t0) + np.arange(t) / pre.fps  # [T]
        wav, has_audio = cut_audio(audio, float(t0), pre)
        windows.append(
            Window(
                frames=np.zeros((t, s, s, 3), np.uint8),
                timestamps=times,
                audio=wav,
                audio_mask=has_audio,
                mouths=np.zeros((t, m, m, 3), np.uint8),
                landmarks=np.zeros((t, 5, 2), np.float32),
                track_id=-1,
                t0=float(t0),
                t1=float(t0) + pre.window_seconds,
                n_real=max(1, int(np.sum(times < seconds))),
            )
        )
    return windows


def normalise_array(images: np.ndarray, pre: PreprocessConfig) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 -> ``[T, 3, H, W]`` float32 ``(x / 255 - mean) / std`` via a lookup table."""
    levels = np.arange(256, dtype=np.float32) / 255
    lut = (levels[None] - np.array(pre.mean, np.float32)[:, None]) / np.array(pre.std, np.float32)[:, None]
    t, h, w = images.shape[:3]
    out = np.empty((t, 3, h, w), np.float32)
    for c in range(3):
        out[:, c] = lut[c][images[..., c]]
    return out


def _normalise(images: np.ndarray, pre: PreprocessConfig) -> torch.Tensor:
    """:func:`normalise_array` as a torch tensor."""
    import torch

    return torch.from_numpy(normalise_array(images, pre))


def window_arrays(window: Window, pre: PreprocessConfig) -> dict[str, np.ndarray]:
    """Model inputs of one window as numpy arrays (what a model on onnxruntime takes; no torch).

    Returns:
        ``frames`` [T, 3, H, W] float32 and ``mouths`` [T, 3, m, m] float32, both normalised with
        ``pre.mean``/``pre.std``; ``audio`` [S] float32; ``audio_mask`` bool scalar.
    """
    return {
        "frames": normalise_array(window.frames, pre),
        "audio": np.ascontiguousarray(window.audio, dtype=np.float32),
        "audio_mask": np.asarray(bool(window.audio_mask)),
        "mouths": normalise_array(window.mouths, pre),
    }


def window_tensors(window: Window, pre: PreprocessConfig) -> dict[str, torch.Tensor]:
    """:func:`window_arrays` as torch tensors (the same values)."""
    import torch

    return {k: torch.from_numpy(v) if k != "audio_mask" else torch.tensor(bool(v)) for k, v in
            window_arrays(window, pre).items()}  # fmt: skip


def segment_labels(label: int, n_real: int, pre: PreprocessConfig) -> np.ndarray:
    """``[K]`` labels of a window's segments: the window's label, -1 for segments of padding only."""
    k = pre.num_segments
    starts = np.round(np.arange(k) * pre.segment_seconds * pre.fps)
    return np.where(starts < n_real, label, UNKNOWN).astype(np.float32)


def _segment_frames(pre: PreprocessConfig) -> list[tuple[int, int]]:
    """``[K]`` (first, end) frame of each segment of a window (the last one runs to the window's end)."""
    starts = [int(v) for v in np.round(np.arange(pre.num_segments) * pre.segment_seconds * pre.fps)]
    return list(zip(starts, [*starts[1:], pre.clip_frames], strict=True))


def span_segment_labels(
    window: Window, spans: Sequence[tuple[float, float]], pre: PreprocessConfig
) -> np.ndarray:
    """``[K]`` labels of a window's segments from known manipulated spans (seconds of the video).

    A segment is fake (1) when the time its real frames cover (:func:`frame_edges`) overlaps a span,
    real (0) otherwise, and -1 when it holds only padding: the "any manipulated frame" rule of
    AV-Deepfake1M's segment labels.
    """
    out = np.full(pre.num_segments, UNKNOWN, np.float32)
    edges = frame_edges(window)
    for k, (first, end) in enumerate(_segment_frames(pre)):
        end = min(end, window.n_real)
        if first >= end:
            continue
        a, b = edges[first], edges[end]
        out[k] = float(any(min(b, s1) - max(a, s0) > 1e-6 for s0, s1 in spans))
    return out


def frame_edges(window: Window) -> np.ndarray:
    """``[n_real + 1]`` seconds where each real frame of a window starts, then where the last one ends.

    Frame ``f`` covers ``[edges[f], edges[f + 1])``: until the next frame, the last one for one frame
    period (``(t1 - t0) / T``). Spans built from these edges tile the window without overlaps.
    """
    ts = np.asarray(window.timestamps[: window.n_real], dtype=np.float64)
    period = (window.t1 - window.t0) / len(window.timestamps)
    return np.append(ts, ts[-1] + period)


def open_entry(path: str | os.PathLike) -> Clip:
    """Read a cache entry with the face crops memory-mapped (only the frames used are read from disk)."""
    return read_entry_file(path, mmap=True)
