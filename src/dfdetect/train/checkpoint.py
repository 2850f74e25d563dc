"""Training's view of checkpoints: dict-level save / load for exact resume (optimizer, RNG, ...).

Everything is implemented once in :mod:`dfdetect.checkpoint` (the typed ``Checkpoint``); the training
loop keeps working with plain dicts through these names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dfdetect.checkpoint import (
    REQUIRED_KEYS,
    TRAINING_STATE_KEYS,
    Checkpoint,
    CheckpointError,
    export_checkpoint,
    read_state,
    save_state,
    versions,
)

__all__ = [
    "REQUIRED_KEYS",
    "TRAINING_STATE_KEYS",
    "CheckpointError",
    "build_model",
    "export_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "temperature",
    "versions",
]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save ``state`` (must hold at least :data:`REQUIRED_KEYS`) to ``path`` atomically."""
    return save_state(path, state)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; raises :class:`CheckpointError` with what to do on failure."""
    return read_state(path, map_location)


def build_model(state: dict[str, Any]) -> Any:
    """Rebuild the model of a loaded checkpoint dict (weights loaded, eval mode)."""
    return Checkpoint.from_state(state).build_model()


def temperature(state: dict[str, Any]) -> float:
    """Calibration temperature of a checkpoint dict."""
    return Checkpoint.from_state(state).temperature
