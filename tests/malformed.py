"""Generated media for tests: small synthetic clips and a corpus of malformed files.

Importable helper (not a test module): ``from tests.malformed import make_malformed_corpus, EXPECTED``.
Everything is generated with PyAV's encoders into a temporary directory; real clips are only read from
../shared/media (never copied into the repository).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dfdetect.types import Status
from tests.conftest import media

FrameFn = Callable[[int, int, int], np.ndarray]  # (index, width, height) -> [H, W, 3] uint8 RGB

# The status `prepare` (and `scan`) must report for each entry of make_malformed_corpus().
EXPECTED: dict[str, Status] = {
    "zero_byte": Status.UNREADABLE,
    "truncated": Status.UNREADABLE,
    "random_bytes": Status.UNREADABLE,
    "text": Status.UNREADABLE,
    "no_frames": Status.UNREADABLE,
    "audio_only": Status.NO_VIDEO,
    "faceless": Status.NO_FACE,
    "single_frame": Status.NO_FACE,
}


def level_frame(index: int, width: int, height: int) -> np.ndarray:
    """Frame whose grey level encodes its index (``8 * index``), with a white top-left marker."""
    image = np.full((height, width, 3), (8 * index) % 256, np.uint8)
    image[: max(2, height // 4), : max(2, width // 4)] = 255
    return image


def noise_frame(index: int, width: int, height: int) -> np.ndarray:
    """A colour gradient with noise: no face anywhere."""
    rng = np.random.default_rng(index)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    base = np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 128, np.float32),
        ],
        axis=2,
    )
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def sine(seconds: float, rate: int = 16000, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    """[S] float32 sine tone."""
    t = np.arange(round(seconds * rate), dtype=np.float32) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _add_audio(container: av.container.OutputContainer, codec: str, rate: int) -> av.AudioStream:
    stream = container.add_stream(codec, rate=rate)
    stream.layout = "mono"
    return stream


def _encode_audio(container, stream, audio: np.ndarray, rate: int) -> None:
    chunk = stream.codec_context.frame_size or 1024
    fmt = stream.codec_context.format.name
    for start in range(0, len(audio), chunk):
        block = audio[start : start + chunk]
        if len(block) < chunk and stream.codec_context.frame_size:
            block = np.pad(block, (0, chunk - len(block)))
        if fmt.startswith("s16"):
            block = (np.clip(block, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(block[None, :].astype(block.dtype), format=fmt, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_video(
    path: str | os.PathLike,
    n_frames: int = 20,
    size: tuple[int, int] = (96, 64),
    fps: int = 10,
    codec: str = "libx264",
    frame_fn: FrameFn = level_frame,
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode a small clip with PyAV.

    Args:
        path: output file; its extension picks the container (mp4, mov, mkv, webm, avi, m4a).
        n_frames: frames to encode (0 gives a video stream with no frame at all).
        size: (width, height).
        fps: nominal frame rate.
        codec: PyAV encoder name (libx264, libx265, mpeg4, libvpx-vp9, ...).
        frame_fn: draws frame ``i``.
        times: presentation times in seconds, one per frame (irregular for a VFR clip).
        rotation: display-matrix rotation (counter-clockwise degrees) written to the stream.
        audio: optional mono float32 signal at ``audio_rate`` muxed as a second stream.
        audio_rate: sample rate of ``audio``.
        pix_fmt: encoder pixel format (``yuv444p`` allows odd sizes with libx264).
    """
    path = Path(path)
    width, height = size
    options = {"x265-params": "log-level=error"} if codec == "libx265" else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = _add_audio(container, _audio_codec(path), audio_rate) if audio is not None else None
        container.start_encoding()  # writes the header even when no frame follows
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i, width, height), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            _encode_audio(container, audio_stream, audio, audio_rate)
    return path


def _audio_codec(path: Path) -> str:
    return {".webm": "libopus", ".mkv": "libopus", ".avi": "mp3"}.get(path.suffix, "aac")


def write_audio(path: str | os.PathLike, audio: np.ndarray, rate: int = 16000) -> Path:
    """An audio-only file (AAC in .m4a/.mp4) from a mono float32 signal."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        stream = _add_audio(container, "aac", rate)
        _encode_audio(container, stream, audio, rate)
    return path


def make_malformed_corpus(directory: str | os.PathLike) -> dict[str, Path]:
    """Write malformed and edge-case media files into ``directory``; keys match :data:`EXPECTED`.

    zero_byte (empty .mp4), truncated (first 30% of a real clip: its index is at the end, so nothing
    plays), random_bytes, text (a text file named .mp4), no_frames (an mp4 header, no frame: zero
    duration), single_frame (one frame, no face), audio_only (AAC speech in an .mp4, no video) and
    faceless (2 s of colour noise with a tone).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["zero_byte"] = d / "zero_byte.mp4"
    out["zero_byte"].write_bytes(b"")
    real = media("real/liveportrait_d11.mp4").read_bytes()
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(real[: int(0.3 * len(real))])
    out["random_bytes"] = d / "random_bytes.mp4"
    out["random_bytes"].write_bytes(np.random.default_rng(0).integers(0, 256, 64_000, np.uint8).tobytes())
    out["text"] = d / "text.mp4"
    out["text"].write_text("this is not a video\n" * 200, encoding="utf-8")
    out["no_frames"] = write_video(d / "no_frames.mp4", n_frames=0)
    out["audio_only"] = write_audio(d / "audio_only.mp4", _speech())
    out["faceless"] = write_video(
        d / "faceless.mp4", n_frames=20, size=(160, 120), fps=10, frame_fn=noise_frame, audio=sine(2.0)
    )
    out["single_frame"] = write_video(
        d / "single_frame.mp4", n_frames=1, size=(160, 120), frame_fn=noise_frame
    )
    return out


def _speech() -> np.ndarray:
    """3 s of the real speech clip (mono 16 kHz), or a tone if it cannot be read."""
    with av.open(str(media("videoretalking_audio_1.wav"))) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        frames = container.decode(audio=0)
        chunks = [out.to_ndarray().reshape(-1) for f in frames for out in resampler.resample(f)]
    audio = np.concatenate(chunks) if chunks else sine(3.0)
    return audio[: 3 * 16000].astype(np.float32)
