"""Model lookup: a model name (the packaged weights, the user's models folder) or a path -> checkpoint file,
and the device a model runs on."""

from __future__ import annotations

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


def _model_files() -> dict[str, Path]:
    """Name -> checkpoint file; the models directory wins over the packaged weights."""
    found: dict[str, Path] = {}
    for folder in (WEIGHTS_DIR, models_dir()):
        if folder.is_dir():  # exported .onnx files too; a .pt wins over an .onnx of its name
            files = [p for pattern in ("*.onnx", "*.pt") for p in sorted(folder.glob(pattern))]
            found.update({p.stem: p for p in files if p.is_file()})
    return found


def available_models() -> list[str]:
    """Names accepted by :func:`load_detector` (models directory + packaged weights), sorted."""
    return sorted(_model_files())


def resolve_model(name_or_path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Find the checkpoint file for ``name_or_path``; returns ``(path, display name)``.

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
    files = _model_files()
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


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; other values are checked and kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return device
