"""dfdetect: audio-visual deepfake detection.

Public API::

    import dfdetect

    detector = dfdetect.load_detector()          # the packaged default model
    strict = dfdetect.load_detector(thresholds=(0.2, 0.8), speech=None)  # ScanOptions fields
    options = dfdetect.ScanOptions(uncertainty=8)  # frozen, checked once; .replace(), .to_dict()
    detector = dfdetect.load_detector(options=options, onnx=False)
    prediction = detector.scan("video.mp4")      # -> dfdetect.types.Prediction (also images, audio)
    print(prediction.verdict, prediction.p_fake)
    dfdetect.available_models()                  # names usable with load_detector(name)

Heavy dependencies (torch, PyAV) are imported only when a detector is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfdetect._version import __version__
from dfdetect.infer.options import ScanOptions, ScanOptionsError

__all__ = ["ScanOptions", "ScanOptionsError", "__version__", "available_models", "load_detector"]

if TYPE_CHECKING:
    from dfdetect.infer.pipeline import Detector


def load_detector(name_or_path: str | None = None, device: str = "auto", **kwargs: Any) -> Detector:
    """Load a detector ready to scan videos.

    Args:
        name_or_path: ``None`` for the packaged default model, a path to a ``.pt`` checkpoint, or the
            name of a model in the models directory (``$DFDETECT_MODELS``, else
            ``~/.cache/dfdetect/models``; files ``<name>.pt``) or among the packaged weights.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        **kwargs: passed to :class:`dfdetect.infer.pipeline.Detector`: ``options`` (a
            :class:`ScanOptions`) and its fields as overrides (``thresholds``, ``aggregation``,
            ``max_duration``, ``speech``, ``uncertainty``, ``faces``, ...); ``onnx=False`` for the ``.pt``
            of a named model (Grad-CAM heatmaps, dropout uncertainty).

    Returns:
        A :class:`dfdetect.infer.pipeline.Detector`; call ``.scan(path)`` on it.

    Raises:
        ScanOptionsError: a bad scan option (the message says which and what it accepts).
        dfdetect.infer.lookup.ModelNotFoundError: unknown name (the message lists the known ones).
        dfdetect.checkpoint.CheckpointError: the checkpoint cannot be read.
    """
    from dfdetect.infer.pipeline import load_detector as _load

    return _load(name_or_path, device=device, **kwargs)


def available_models() -> list[str]:
    """Names accepted by :func:`load_detector` (models directory + packaged weights)."""
    from dfdetect.infer.lookup import available_models as _available

    return _available()
