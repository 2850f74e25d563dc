"""Still images: decoded upright (EXIF orientation applied) as RGB uint8, with typed media errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfdetect.io.video import UnreadableMediaError


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read a still image (jpg, png, webp, bmp, tiff, gif: the first frame) as ``[H, W, 3]`` uint8 RGB.

    Pillow decodes it and applies its EXIF orientation (phones store portraits sideways); an image
    Pillow cannot read is decoded by FFmpeg (PyAV) instead.

    Raises:
        UnreadableMediaError: the file is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        image = _first_frame(p)
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        raise UnreadableMediaError(f"{p}: an empty image; check the file", p)
    return np.ascontiguousarray(image, dtype=np.uint8)


def _first_frame(path: Path) -> np.ndarray:
    from dfdetect.io.video import iter_frames

    frame = next(iter(iter_frames(path, fps=1.0, max_frames=1)), None)
    if frame is None:
        raise UnreadableMediaError(f"{path}: not a readable image; open it in an image viewer to check", path)
    return frame.image
