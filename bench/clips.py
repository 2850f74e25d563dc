"""Clips the benchmarks generate: a 10 s 1920x1080 H.264 talking head with audio.

Imported by the bench scripts (run as ``python bench/<name>.py``, so this folder is on sys.path).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from common import MEDIA

SOURCE_1080P = MEDIA / "real" / "liveportrait_d10.mp4"


def make_1080p(src: Path, dst: Path, seconds: float = 10.0) -> Path:
    """Upscale ``src`` (looped to ``seconds``) to 1920x1080 H.264 with its audio as AAC."""
    import av
    import cv2
    import numpy as np

    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        fps = float(vin.average_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    with av.open(str(src)) as inp:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=44100)
        chunks = (
            [o.to_ndarray()[0] for f in inp.decode(audio=0) for o in resampler.resample(f)]
            if inp.streams.audio
            else []
        )
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    n = round(seconds * fps)
    with av.open(str(dst), "w") as out:
        vs = out.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001), options={"preset": "veryfast", "crf": "20"}
        )
        vs.width, vs.height, vs.pix_fmt = 1920, 1080, "yuv420p"
        aus = out.add_stream("aac", rate=44100) if audio.size else None
        if aus is not None:
            aus.layout = "mono"
        for i in range(n):
            face = cv2.resize(frames[i % len(frames)], (1080, 1080), interpolation=cv2.INTER_CUBIC)
            canvas = np.zeros((1080, 1920, 3), np.uint8)
            canvas[:, 420:1500] = face
            for packet in vs.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if aus is not None:
            _encode_audio(
                out, aus, np.tile(audio, int(np.ceil(seconds * 44100 / audio.size)))[: int(seconds * 44100)]
            )
    return dst


def _encode_audio(container, stream, audio, rate: int = 44100) -> None:
    import av
    import numpy as np

    size = stream.codec_context.frame_size or 1024
    for start in range(0, len(audio), size):
        block = np.pad(audio[start : start + size], (0, max(0, size - len(audio[start : start + size]))))
        frame = av.AudioFrame.from_ndarray(block[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
