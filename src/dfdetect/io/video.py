"""Video decoding with PyAV: probing, streaming frame sampling at a target rate, typed media errors.

Everything runs inside the FFmpeg libraries shipped in PyAV's wheel (no ``ffmpeg`` binary). Frames are
decoded in a stream, only the sampled ones are converted to RGB arrays, and downscaling happens inside
swscale during that conversion. Timestamps are seconds from the container's start, the same origin
:func:`dfdetect.io.audio.load_audio` uses, so faces and audio stay in sync.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from dfdetect.constants import DEFAULT_FPS
from dfdetect.types import MediaKind, Status, VideoInfo

log = logging.getLogger(__name__)

_EPS = 1e-3  # seconds of tolerance when matching a frame to a target sampling time
_SKIP_MODE = "NONREF"  # FFmpeg skip_frame mode of skip_bframes: non-reference frames are not decoded
SKIP_JITTER_FRAMES = 2  # most source frame periods a sampled timestamp lags its grid time when skipping
_MAX_BAD_PACKETS = 200  # undecodable packets tolerated before a file is declared unreadable
_REENCODE_HINT = "re-encode it (e.g. `ffmpeg -i in.mp4 -c:v libx264 -c:a aac out.mp4`) or drop it"


class MediaError(Exception):
    """A media file that cannot be used; ``status`` says how it is reported at the library's edges."""

    status: Status = Status.ERROR

    def __init__(
        self, message: str, path: str | os.PathLike | None = None, kind: MediaKind | None = None
    ) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.kind = kind  # what the file turned out to be, when known


class UnreadableMediaError(MediaError):
    """Missing, empty, corrupt, truncated or not a media file at all."""

    status = Status.UNREADABLE


class NoVideoStreamError(MediaError):
    """The file is readable media but has no video stream (e.g. audio-only)."""

    status = Status.NO_VIDEO


@dataclass(frozen=True)
class Frame:
    """One sampled frame: ``index`` counts sampled frames (0, 1, ...), ``timestamp`` is in seconds."""

    index: int
    timestamp: float
    image: np.ndarray  # [H, W, 3] uint8 RGB, rotation applied


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a media file with PyAV, turning every failure into :class:`UnreadableMediaError`.

    Args:
        path: a local media file.

    Returns:
        The open input container (close it, or use it as a context manager).
    """
    p = Path(path)
    if not p.exists():
        raise UnreadableMediaError(f"{p}: file not found; check the path", p)
    if not p.is_file():
        raise UnreadableMediaError(f"{p}: not a regular file; give the path of a video file", p)
    if p.stat().st_size == 0:
        raise UnreadableMediaError(f"{p}: empty file (0 bytes); copy or download it again", p)
    try:
        return av.open(str(p), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UnreadableMediaError(
            f"{p}: not a readable media file ({reason}): it may be truncated (an incomplete copy or"
            f" download), corrupt, or not a video; check that it plays in a media player, or "
            + _REENCODE_HINT,
            p,
        ) from e


def media_origin(container: av.container.InputContainer) -> float:
    """Seconds of the container's start time: the zero of every dfdetect timestamp."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def video_stream(container: av.container.InputContainer, path: str | os.PathLike) -> av.VideoStream:
    """The first video stream of ``container``; raises :class:`NoVideoStreamError` when there is none."""
    if not container.streams:
        raise UnreadableMediaError(
            f"{path}: the file holds no audio or video stream (empty or zero-duration media); "
            + _REENCODE_HINT,
            path,
        )
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise NoVideoStreamError(
            f"{path}: no video stream (found: {kinds}); dfdetect needs a video showing a face", path
        )
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: the decoder is the main cost of prepare
    return stream


def _decode(container: av.container.InputContainer, stream: av.VideoStream, path: str) -> Iterator:
    """Decode ``stream`` frame by frame, skipping corrupt packets and ending cleanly on truncation."""
    n_frames = n_bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as e:  # one corrupt packet: skip it like ffmpeg does
                n_bad += 1
                if n_bad > _MAX_BAD_PACKETS and n_frames == 0:
                    message = f"{path}: video data is corrupt ({e}); {_REENCODE_HINT}"
                    raise UnreadableMediaError(message, path) from e
                continue
            for frame in frames:
                n_frames += 1
                yield frame
    except av.FFmpegError as e:
        if n_frames == 0:
            raise UnreadableMediaError(f"{path}: cannot read video data ({e}); {_REENCODE_HINT}", path) from e
        log.warning("%s: stopped after %d frames (%s); the file may be truncated", path, n_frames, e)
    if n_frames == 0:
        raise UnreadableMediaError(
            f"{path}: no decodable video frame (truncated or corrupt file); {_REENCODE_HINT}", path
        )


def _frame_time(frame: av.VideoFrame, n_decoded: int, rate: float) -> float:
    t = frame.time
    return float(t) if t is not None else n_decoded / rate


def _rotation(frame: av.VideoFrame, stream: av.VideoStream) -> int:
    """Counter-clockwise degrees (0/90/180/270) to turn a decoded frame upright (FFmpeg's convention)."""
    try:
        degrees = float(frame.rotation)  # from the DISPLAYMATRIX side data (0 when absent)
    except (AttributeError, ValueError, TypeError):
        degrees = 0.0
    if degrees == 0.0 and "rotate" in stream.metadata:  # legacy clockwise tag
        try:
            degrees = -float(stream.metadata["rotate"])
        except ValueError:
            degrees = 0.0
    return int(round(degrees / 90.0)) * 90 % 360


def _display_size(width: int, height: int, stream: av.VideoStream) -> tuple[int, int]:
    """Frame size with non-square pixels (sample aspect ratio) made square, before rotation."""
    sar = stream.sample_aspect_ratio
    if sar and sar.numerator > 0 and sar != 1:
        width = max(1, round(width * float(sar)))
    return width, height


def _target_size(display: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    width, height = display
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_image(frame: av.VideoFrame, size: tuple[int, int], rotation: int) -> np.ndarray:
    if size == (frame.width, frame.height):
        image = frame.to_ndarray(format="rgb24")  # [H, W, 3]
    else:
        image = frame.to_ndarray(width=size[0], height=size[1], format="rgb24")  # scaled by swscale
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the container and stream facts of a video (decodes only its first frame).

    Args:
        path: a local video file.

    Returns:
        VideoInfo with the display size (rotation and pixel aspect applied), duration, rate and audio facts.

    Raises:
        UnreadableMediaError: missing, empty, corrupt or truncated file.
        NoVideoStreamError: the file has no video stream.
    """
    path = str(path)
    with open_media(path) as container:
        stream = video_stream(container, path)
        first = next(_decode(container, stream, path))
        rotation = _rotation(first, stream)
        width, height = _display_size(first.width, first.height, stream)
        if rotation in (90, 270):
            width, height = height, width
        rate = float(stream.average_rate or stream.guessed_rate or 0.0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = (stream.frames / rate) if (stream.frames and rate) else 0.0
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path,
            duration=duration,
            fps=rate,
            width=width,
            height=height,
            codec=stream.codec_context.name,
            rotation=rotation,
            n_frames=stream.frames or None,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=audio.sample_rate if audio is not None else None,
        )


IMAGE_CODECS = frozenset({"mjpeg", "png", "bmp", "tiff", "webp", "gif", "jpeg2000", "jpegls"})


def ensure_video(info: VideoInfo) -> VideoInfo:
    """Return ``info``, or raise :class:`NoVideoStreamError` when the file is a still image.

    FFmpeg opens a JPEG or PNG as a one-frame "video"; dfdetect judges motion and audio-visual
    agreement over time, so a photo gets a clear status instead of a misleading ``no_face``.
    """
    if is_still_image(info):
        raise NoVideoStreamError(
            f"{info.path} is a still image ({info.codec}), not a video: dfdetect scans video files", info.path
        )
    return info


def _is_cover_art(stream: av.VideoStream) -> bool:
    """An embedded picture of an audio file (album art), not a video."""
    disposition = getattr(stream, "disposition", None)
    flag = getattr(getattr(av.stream, "Disposition", None), "attached_pic", None)
    return bool(disposition is not None and flag is not None and disposition & flag)


def _audio_info(path: str, container: av.container.InputContainer) -> VideoInfo:
    audio = container.streams.audio[0]
    if audio.duration is not None and audio.time_base is not None:
        duration = float(audio.duration * audio.time_base)
    else:
        duration = container.duration / av.time_base if container.duration is not None else 0.0
    return VideoInfo(path, duration, 0.0, 0, 0, "none", has_audio=True, audio_codec=audio.codec_context.name,
                     audio_sample_rate=audio.sample_rate)  # fmt: skip


def is_still_image(info: VideoInfo) -> bool:
    """FFmpeg opens a JPEG or PNG as a one-frame "video": an image codec, one frame, no duration."""
    return info.codec in IMAGE_CODECS and (info.n_frames or 1) <= 1 and info.duration <= 0.1


def inspect_media(path: str | os.PathLike) -> tuple[MediaKind, VideoInfo]:
    """What a media file is, by its content (not its name): video, still image or audio only.

    Returns:
        ``(kind, info)``; for audio, ``info`` has zero width and height and the audio facts.

    Raises:
        UnreadableMediaError: missing, empty, corrupt, truncated, no stream at all.
    """
    path = str(path)
    with open_media(path) as container:
        if not container.streams:
            video_stream(container, path)  # raises the "no stream" error
        videos = [s for s in container.streams.video if not _is_cover_art(s)]
        if not videos and container.streams.audio:
            return MediaKind.AUDIO, _audio_info(path, container)
    info = probe(path)
    return (MediaKind.IMAGE if is_still_image(info) else MediaKind.VIDEO), info


def iter_frames(
    path: str | os.PathLike,
    fps: float = DEFAULT_FPS,
    max_side: int | None = None,
    max_duration: float | None = None,
    max_frames: int | None = None,
    start: float = 0.0,
    skip_bframes: bool = True,
) -> Iterator[Frame]:
    """Stream frames sampled at ``fps``: for each target time the first decoded frame at or after it.

    Robust to variable frame rates (uses each frame's own timestamp). Only sampled frames are converted
    to RGB; ``max_side`` downscales inside swscale during that conversion.

    With ``skip_bframes`` and a video rate of at least 3x ``fps``, non-reference frames (most
    B-frames) are not decoded at all (FFmpeg's ``skip_frame = "NONREF"``), which saves 20-40% of the
    decoding. A sampled frame is then the first *decoded* frame at or after its target time, so
    timestamps jitter by at most :data:`SKIP_JITTER_FRAMES` source frame periods (typically 1) after
    the regular grid; the returned timestamps are the true ones, so audio stays aligned. When two
    decoded frames lie more than that apart, full decoding resumes for the rest of the stream (only
    the one sample inside that gap may be later, and never by more than one sampling step).

    Args:
        path: a local video file.
        fps: target sampling rate (frames per second); a lower-rate video yields all its frames.
        max_side: longest side of the returned images (None = original size).
        max_duration: seconds read from ``start`` (None = to the end).
        max_frames: most frames yielded (None = no limit).
        start: first second read (from the container's start).
        skip_bframes: allow skipping non-reference frames when the video's rate is high enough.

    Yields:
        Frame with ``image`` [H, W, 3] uint8 RGB, upright (display-matrix rotation applied).

    Raises:
        UnreadableMediaError, NoVideoStreamError: see :func:`probe`.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = str(path)
    end = start + max_duration if max_duration is not None else math.inf
    with open_media(path) as container:
        stream = video_stream(container, path)
        origin = media_origin(container)
        if start > 0:
            container.seek(int((origin + start) * av.time_base), backward=True)
        rate = float(stream.average_rate or stream.guessed_rate or 25.0)
        skipping = skip_bframes and rate >= 3 * fps
        if skipping:
            stream.codec_context.skip_frame = _SKIP_MODE
        decoded = _decode(container, stream, path)
        frames = _sample(decoded, stream, rate, origin, (start, end), fps, skipping, max_side)
        for index, (t, frame, layout) in enumerate(frames):
            yield Frame(index=index, timestamp=t, image=_to_image(frame, *layout))
            if max_frames is not None and index + 1 >= max_frames:
                break


def _sample(
    decoded: Iterator[Any],
    stream: Any,
    rate: float,
    origin: float,
    span: tuple[float, float],
    fps: float,
    skipping: bool,
    max_side: int | None,
) -> Iterator[tuple[float, Any, tuple]]:
    """The decoded frames on the ``fps`` grid within ``span`` seconds: ``(t, av frame, (size, rotation))``."""
    start, end = span
    next_t, layout, last_t = start, None, None
    for n, frame in enumerate(decoded):
        t = _frame_time(frame, n, rate) - origin
        if t >= end:
            break
        if skipping and last_t is not None and t - last_t > (SKIP_JITTER_FRAMES + 1) / rate + _EPS:
            stream.codec_context.skip_frame = "DEFAULT"  # too sparse without its non-ref frames
            skipping = False
        last_t = t
        if t < next_t - _EPS:
            continue
        if layout is None:  # size and rotation are fixed by the first sampled frame
            rotation = _rotation(frame, stream)
            layout = (_target_size(_display_size(frame.width, frame.height, stream), max_side), rotation)
        yield t, frame, layout
        next_t = start + (math.floor((t - start + _EPS) * fps) + 1) / fps


def decode_all(path: str | os.PathLike) -> int:
    """Decode every video frame with PyAV alone (no conversion): the baseline benchmarks divide by.

    Returns:
        The number of decoded frames.
    """
    path = str(path)
    with open_media(path) as container:
        stream = video_stream(container, path)
        return sum(1 for _ in _decode(container, stream, path))
