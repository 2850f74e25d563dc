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

from dfdetect.types import MediaKind, Status
from tests.conftest import media

FrameFn = Callable[[int, int, int], np.ndarray]  # (index, width, height) -> [H, W, 3] uint8 RGB

# The status `prepare` must report for each entry of make_malformed_corpus() (an audio-only file is
# kept as an audio entry: speech sets are prepared like video sets).
EXPECTED: dict[str, Status] = {
    "zero_byte": Status.UNREADABLE,
    "truncated": Status.UNREADABLE,
    "random_bytes": Status.UNREADABLE,
    "text": Status.UNREADABLE,
    "no_frames": Status.UNREADABLE,
    "audio_only": Status.OK,
    "faceless": Status.NO_FACE,
    "single_frame": Status.NO_FACE,
}
# What `scan` with an audio-visual model reports: it also hears audio-only files.
SCAN_EXPECTED: dict[str, Status] = {**EXPECTED, "audio_only": Status.OK}


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


# --------------------------------------------------------------------------- scan edge corpus

FACE_CLIP = "real/pcavs_Audio_Source_00015.mp4"  # 224 px talking head with speech

# What `scan` with an audio-visual model reports for each entry of make_edge_corpus(): (status, kind).
EDGE_EXPECTED: dict[str, tuple[Status, MediaKind]] = {
    "corrupt_middle": (Status.OK, MediaKind.VIDEO),
    "image_as_mp4": (Status.OK, MediaKind.IMAGE),
    "folder.mp4": (Status.UNREADABLE, MediaKind.VIDEO),
    "one_face_frame": (Status.NO_AUDIO, MediaKind.VIDEO),
    "rotated_phone": (Status.NO_AUDIO, MediaKind.VIDEO),
    "vfr": (Status.NO_AUDIO, MediaKind.VIDEO),
    "tiny_17x31": (Status.NO_FACE, MediaKind.VIDEO),
    "8k": (Status.NO_FACE, MediaKind.VIDEO),
    "gray": (Status.NO_AUDIO, MediaKind.VIDEO),
    "yuv444": (Status.NO_AUDIO, MediaKind.VIDEO),
    "stereo_44k": (Status.OK, MediaKind.VIDEO),
    "silent_audio": (Status.NO_AUDIO, MediaKind.VIDEO),
    "vp9_webm": (Status.NO_AUDIO, MediaKind.VIDEO),
    "mpeg4_avi": (Status.NO_AUDIO, MediaKind.VIDEO),
    "non_ascii": (Status.OK, MediaKind.VIDEO),
    "speech_wav": (Status.OK, MediaKind.AUDIO),
    "silent_wav": (Status.NO_SPEECH, MediaKind.AUDIO),
    "faceless_png": (Status.NO_FACE, MediaKind.IMAGE),
}


def face_frames(n: int = 20, rel: str = FACE_CLIP) -> np.ndarray:
    """``[n, 224, 224, 3]`` uint8 RGB frames of a real talking head (the first ``n``)."""
    with av.open(str(media(rel))) as container:
        frames = [
            f.to_ndarray(format="rgb24") for _, f in zip(range(n), container.decode(video=0), strict=False)
        ]
    return np.stack(frames)


def _from(frames: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> FrameFn:
    """A FrameFn drawing ``transform(frames[i])`` (the size given to write_video must match)."""
    return lambda i, _w, _h: np.ascontiguousarray(transform(frames[i % len(frames)]))


def _write_wav(path: Path, audio: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "stereo" if channels == 2 else "mono"
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        data = np.repeat(pcm[None, :], channels, axis=0).T.reshape(1, -1)  # packed (interleaved)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout=stream.layout.name)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _stereo_video(path: Path, frames: np.ndarray, audio: np.ndarray, rate: int = 44100) -> Path:
    """A face video with 44.1 kHz stereo AAC audio."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("aac", rate=rate)
        sound.layout = "stereo"
        for f in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        chunk = sound.codec_context.frame_size or 1024
        for start in range(0, len(audio) - chunk, chunk):
            block = np.repeat(audio[None, start : start + chunk], 2, axis=0).astype(
                np.float32
            )  # [2, n] planar
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return path


def make_edge_corpus(directory: str | os.PathLike) -> dict[str, Path]:
    """Edge inputs of a scan (keys match :data:`EDGE_EXPECTED`), beside :func:`make_malformed_corpus`.

    Real faces come from a 224 px talking head; each generated clip is 1-3 s so a scan stays short.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    faces = face_frames(40)
    speech = _speech()
    out: dict[str, Path] = {}
    data = bytearray(media(FACE_CLIP).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4000] = np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes()
    out["corrupt_middle"] = d / "corrupt_middle.mp4"
    out["corrupt_middle"].write_bytes(bytes(data))
    out["image_as_mp4"] = d / "image_as.mp4"
    out["image_as_mp4"].write_bytes(media("images/obama.jpg").read_bytes())
    out["folder.mp4"] = d / "folder.mp4"
    out["folder.mp4"].mkdir(exist_ok=True)
    size = (224, 224)
    out["one_face_frame"] = write_video(d / "one_face_frame.mp4", 1, size, frame_fn=_from(faces))
    out["rotated_phone"] = write_video(
        d / "rotated_phone.mp4",
        15,
        (224, 224),
        fps=10,
        frame_fn=_from(faces, lambda f: np.rot90(f, -1)),
        rotation=90,
    )
    vfr_times = np.cumsum([0.0] + [0.04 if i % 3 else 0.2 for i in range(19)])
    out["vfr"] = write_video(d / "vfr.mp4", 20, size, frame_fn=_from(faces), times=vfr_times)
    out["tiny_17x31"] = write_video(d / "tiny_17x31.mp4", 10, (17, 31), pix_fmt="yuv444p")
    out["8k"] = write_video(d / "8k.mp4", 3, (7680, 4320), fps=5)
    gray = _from(faces, lambda f: np.repeat(f.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2))
    out["gray"] = write_video(d / "gray.mkv", 15, size, fps=10, codec="ffv1", frame_fn=gray, pix_fmt="gray")
    out["yuv444"] = write_video(d / "yuv444.mp4", 15, size, fps=10, frame_fn=_from(faces), pix_fmt="yuv444p")
    at_44k = np.interp(np.arange(int(1.6 * 44100)) * 16000 / 44100, np.arange(speech.size), speech)
    out["stereo_44k"] = _stereo_video(d / "stereo_44k.mp4", faces[:40], at_44k.astype(np.float32))
    out["silent_audio"] = write_video(
        d / "silent_audio.mp4", 15, size, fps=10, frame_fn=_from(faces), audio=np.zeros(24000, np.float32)
    )
    out["vp9_webm"] = write_video(d / "vp9.webm", 15, size, fps=10, codec="libvpx-vp9", frame_fn=_from(faces))
    out["mpeg4_avi"] = write_video(d / "mpeg4.avi", 15, size, fps=10, codec="mpeg4", frame_fn=_from(faces))
    out["non_ascii"] = d / "vidéo_日本語 ü.mp4"
    out["non_ascii"].write_bytes(media(FACE_CLIP).read_bytes())
    out["speech_wav"] = _write_wav(d / "speech.wav", speech)
    out["silent_wav"] = _write_wav(d / "silent.wav", np.zeros(32000, np.float32))
    out["faceless_png"] = d / "faceless.png"
    _write_png(out["faceless_png"], noise_frame(0, 200, 150))
    return out


def _write_png(path: Path, image: np.ndarray) -> Path:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
