"""Command-line options shared by several commands: one definition, checked once by
:class:`~dfdetect.infer.options.ScanOptions`."""

from __future__ import annotations

import argparse
from typing import Any

from dfdetect.constants import VERDICT_BAND
from dfdetect.infer.options import ScanOptions, ScanOptionsError


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


# the flag of each ScanOptions field, for usage errors that name what the user typed
FLAGS = {
    "thresholds": "--threshold-band",
    "aggregation": "--aggregation",
    "max_duration": "--max-duration",
    "speech": "--speech",
    "uncertainty": "--uncertainty",
    "uncertainty_method": "--uncertainty-method",
    "faces": "--faces",
    "explain": "--explain",
}


class UsageError(ValueError):
    """A bad command-line value (the command prints it and exits with its usage-error code, 2)."""


def scan_options(**fields: Any) -> ScanOptions:
    """The :class:`~dfdetect.infer.options.ScanOptions` of parsed arguments (``fields`` by option name).

    Raises:
        UsageError: a bad value; the message names the command-line flag.
    """
    try:
        return ScanOptions(**fields)
    except ScanOptionsError as e:
        raise UsageError(f"{FLAGS.get(e.field, e.field)}: {e.problem}") from e


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
