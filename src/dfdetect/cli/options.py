"""Command-line options shared by several commands (one definition, one check)."""

from __future__ import annotations

import argparse

from dfdetect.constants import VERDICT_BAND


def add_threshold_band(p: argparse.ArgumentParser) -> None:
    """``--threshold-band LOW HIGH``: the p_fake band between the real and fake verdicts."""
    p.add_argument(
        "--threshold-band",
        nargs=2,
        type=float,
        default=VERDICT_BAND,
        metavar=("LOW", "HIGH"),
        help="p_fake <= LOW is real, >= HIGH is fake, between is uncertain (default: %(default)s)",
    )


def threshold_band_error(band: tuple[float, float] | list[float]) -> str | None:
    """What is wrong with a ``--threshold-band`` value (None: nothing)."""
    low, high = band
    if not 0.0 <= low <= high <= 1.0:
        return f"--threshold-band needs 0 <= LOW <= HIGH <= 1, got {low} {high}"
    return None


FACE_DETECTORS = ("auto", "yunet", "mtcnn")


def add_faces(p: argparse.ArgumentParser) -> None:
    """``--faces auto|yunet|mtcnn``: the face detector of a scan."""
    p.add_argument(
        "--faces",
        choices=FACE_DETECTORS,
        default="auto",
        help="face detector: yunet (OpenCV, no torch: with an ONNX model the scan imports no torch), "
        "mtcnn (torch; what the packaged models were trained on), auto = the scan default, mtcnn "
        "(default: %(default)s)",
    )
