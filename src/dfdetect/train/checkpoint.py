"""Checkpoints (DESIGN.md, "Checkpoint"): a checkpoint alone rebuilds the model and its preprocessing.

Keys: ``model_state, model_config, preprocess, calibration, train_config, step, epoch, optimizer,
scheduler, scaler, rng, data_position, metrics, versions``. Written atomically.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from dfdetect.io.files import atomic_write

REQUIRED_KEYS = ("model_state", "model_config", "preprocess")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or lacks what is needed to rebuild its model."""


def versions() -> dict[str, str]:
    import timm

    from dfdetect import __version__

    return {
        "dfdetect": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save ``state`` (must hold at least :data:`REQUIRED_KEYS`) to ``path`` atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint state lacks {missing}")
    state = {"versions": versions(), "calibration": {"temperature": 1.0}, **state}
    return atomic_write(path, lambda tmp: torch.save(state, tmp), suffix=".pt")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; raises :class:`CheckpointError` with what to do on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a dfdetect checkpoint (missing {missing})")
    return state


def build_model(state: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model of a loaded checkpoint (weights loaded, eval mode)."""
    from dfdetect.models.factory import create_model

    cfg = dict(state["model_config"])
    name = cfg.pop("name")
    cfg["pretrained"] = False  # the weights come from the checkpoint
    cfg.pop("pretrained_path", None)
    model = create_model(name, **cfg)
    model.load_state_dict(state["model_state"])
    return model.eval()


def temperature(state: dict[str, Any]) -> float:
    return float(state.get("calibration", {}).get("temperature", 1.0))


TRAINING_STATE_KEYS = ("optimizer", "scheduler", "scaler", "rng", "data_position", "loop")


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write a copy of ``src`` without the training state (optimizer, scheduler, RNG, ...).

    The result still rebuilds the model and its preprocessing (model_state, model_config, preprocess,
    prepare, calibration, train_config, metrics, versions) and is a third of the size: what ships.
    """
    state = load_checkpoint(src)
    kept = {k: v for k, v in state.items() if k not in TRAINING_STATE_KEYS}
    return save_checkpoint(dst, kept)
