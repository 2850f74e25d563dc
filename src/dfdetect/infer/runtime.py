"""What runs a model in a scan: the runtime of a checkpoint (torch or onnxruntime), the face detector of
the scan, a torch model made fast for inference, and the torch twin of an ONNX model for explanations.

Nothing here imports torch unless the model is a torch model (or the twin is asked for).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dfdetect.config import PrepareConfig

log = logging.getLogger(__name__)


def runtime_of(checkpoint: Any) -> str:
    """What runs a checkpoint's model: ``torch``, or the ``runtime`` its class names (``onnxruntime``)."""
    return str(getattr(checkpoint, "runtime", "torch")) if checkpoint is not None else "torch"


def with_faces(prepare: PrepareConfig, faces: str | None) -> PrepareConfig:
    """``prepare`` with the scan's face detector (``faces`` of :class:`~dfdetect.infer.pipeline.Detector`).

    Raises:
        ValueError: an unknown detector name (the message lists the known ones).
    """
    if faces is None or faces == "auto":  # the detector the model's training crops came from
        return prepare
    from dfdetect.faces.detect import DETECTORS

    name = faces
    if name not in DETECTORS.names():
        raise ValueError(
            f"unknown face detector {name!r}; choose one of: auto, {', '.join(DETECTORS.names())}"
        )
    return prepare if prepare.detector == name else prepare.model_copy(update={"detector": name})


def for_inference(model: Any) -> Any:
    """A torch model made fast for scanning, same outputs: eval mode, batch norms folded into their
    convolutions, convolution weights in channels-last order (oneDNN's fast CPU kernels: ~1.25x on the
    default EfficientNet-Lite0 here); other models (ONNX sessions) unchanged, and torch not imported."""
    torch = sys.modules.get("torch")  # a torch model means torch is imported already
    if torch is None or not isinstance(model, torch.nn.Module):
        return model
    from dfdetect.models.fold import fold_batchnorm

    fold_batchnorm(model.eval())
    return model.to(memory_format=torch.channels_last)


def torch_twin(model: Any, checkpoint: Any, device: str) -> Any:
    """The model Grad-CAM can run on: ``model`` itself when it has gradients, else (an ONNX export) the torch
    checkpoint it was exported from when that file lies next to it (same name, ``.pt``, and the sha256 the
    export recorded), loaded now; else ``model`` (explanations then have no heatmaps)."""
    if getattr(model, "differentiable", True) or checkpoint is None or checkpoint.path is None:
        return model
    pt = Path(checkpoint.path).with_suffix(".pt")
    source = ((getattr(model, "meta", None) or {}).get("exported") or {}).get("source_sha256")
    from dfdetect.hub import sha256_file

    if not pt.is_file() or source is None or sha256_file(pt) != source:
        return model
    from dfdetect.checkpoint import Checkpoint

    log.info("explanations of %s: Grad-CAM on its torch checkpoint %s", Path(checkpoint.path).name, pt.name)
    return for_inference(Checkpoint.load(pt).build_model(device))
