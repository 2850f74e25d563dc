"""Model lookup: a model name (the packaged weights, the user's models folder) or a path -> checkpoint file,
and the device a model runs on.

A name with both forms in one folder, ``<name>.onnx`` (``dfdetect export --onnx``) and ``<name>.pt``, gives
the ONNX file when onnxruntime is installed (scans then import no torch) unless the caller needs the torch
model (``onnx=False``: Grad-CAM heatmaps, dropout uncertainty, training).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "default"


class ModelNotFoundError(LookupError):
    """No checkpoint matches the requested model name or path."""


def models_dir() -> Path:
    """The user's models directory: ``$DFDETECT_MODELS``, else ``~/.cache/dfdetect/models``."""
    env = os.environ.get("DFDETECT_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dfdetect" / "models"


@functools.cache
def has_onnxruntime() -> bool:
    """Whether onnxruntime is installed (without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def _model_files(onnx: bool = True) -> dict[str, Path]:
    """Name -> checkpoint file; the models directory wins over the packaged weights. Within a folder, an
    ``.onnx`` wins over the ``.pt`` of its name when ``onnx`` and onnxruntime is installed, else the
    ``.pt``."""
    first = ("*.pt", "*.onnx") if onnx and has_onnxruntime() else ("*.onnx", "*.pt")
    found: dict[str, Path] = {}
    for folder in (WEIGHTS_DIR, models_dir()):
        if folder.is_dir():  # the later pattern overwrites the earlier one of the same name
            files = [p for pattern in first for p in sorted(folder.glob(pattern))]
            found.update({p.stem: p for p in files if p.is_file()})
    return found


def available_models() -> list[str]:
    """Names accepted by :func:`load_detector` (models directory + packaged weights), sorted."""
    return sorted(_model_files())


def resolve_model(name_or_path: str | os.PathLike | None = None, onnx: bool = True) -> tuple[Path, str]:
    """Find the checkpoint file for ``name_or_path``; returns ``(path, display name)``.

    Args:
        name_or_path: a checkpoint path, a model name, or None for the default model.
        onnx: for a name with both an ``.onnx`` and a ``.pt`` file, take the ``.onnx`` (when onnxruntime
            is installed); False: the ``.pt`` (the torch model: heatmaps, dropout, training).

    Raises:
        ModelNotFoundError: no such file or name; the message lists the available names.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.suffix in (".pt", ".onnx") or os.sep in text or "/" in text
    if path.is_file():
        return path, path.stem
    files = _model_files(onnx)
    if not looks_like_path and text in files:
        return files[text], text
    names = ", ".join(sorted(files)) or "none"
    if looks_like_path:
        raise ModelNotFoundError(f"checkpoint file not found: {path}")
    hint = f"put <name>.pt files in {models_dir()} (or set $DFDETECT_MODELS), or pass a checkpoint path"
    if text == DEFAULT_MODEL:
        raise ModelNotFoundError(
            f"the default model is not installed ({WEIGHTS_DIR / 'default.pt'} is missing); "
            f"available models: {names}; {hint}"
        )
    raise ModelNotFoundError(f"unknown model {text!r}; available models: {names}; {hint}")


def resolve_device(device: str = "auto", runtime: str = "torch") -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; other values are checked and kept.

    ``runtime``: what runs the model; ``onnxruntime`` asks onnxruntime's providers instead of torch (no torch
    import); ``numpy`` (a model that imports no torch) runs on the CPU whatever was asked.
    """
    if runtime == "numpy":
        return "cpu"
    if runtime == "onnxruntime":
        from dfdetect.infer.onnx import resolve_onnx_device

        return resolve_onnx_device(device)
    from dfdetect.models.device import resolve_device as torch_device

    return str(torch_device(device))
