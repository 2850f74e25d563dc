"""The torch device a model runs on, resolved once for training and scanning alike."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = the process's CUDA device when CUDA is available, else the CPU; a bare ``cuda`` gets the
    process's index too (``LOCAL_RANK`` under torchrun; ``torch.cuda.set_device`` needs one).

    Raises:
        ValueError: CUDA was asked for and is not available (the message says what to pass instead).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
