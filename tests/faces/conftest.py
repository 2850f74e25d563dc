"""Helpers for the face tests: frames of the real clips, images, a small detector shared per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfdetect.faces.detect import MTCNNDetector
from tests.conftest import media


@dataclass(frozen=True)
class LocalFrame:
    """Same fields as ``dfdetect.io.video.Frame`` (used when io/video.py is not there)."""

    index: int
    timestamp: float
    image: np.ndarray


def read_frames(rel: str, fps: float = 5.0, max_frames: int | None = None) -> list:
    """Frames of ``../shared/media/<rel>`` sampled at ``fps`` (io.video when present, else PyAV)."""
    path = media(rel)
    try:
        from dfdetect.io.video import iter_frames
    except ImportError:
        return _pyav_frames(path, fps, max_frames)
    return list(iter_frames(path, fps=fps, max_frames=max_frames))


def _pyav_frames(path: Path, fps: float, max_frames: int | None) -> list[LocalFrame]:
    import av

    frames: list[LocalFrame] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
            if t + 1e-6 < len(frames) / fps:
                continue
            frames.append(LocalFrame(frame.index, t, frame.to_ndarray(format="rgb24")))
            if max_frames and len(frames) >= max_frames:
                break
    return frames


def read_image(name: str) -> np.ndarray:
    """An RGB uint8 image from ../shared/media/images."""
    image = cv2.imread(str(media(f"images/{name}")), cv2.IMREAD_COLOR)
    assert image is not None, name
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def detector() -> MTCNNDetector:
    """One MTCNN for the whole session (weights load once); faces of the test media are >= 60 px."""
    return MTCNNDetector(detect_size=640, min_face_size=60)
