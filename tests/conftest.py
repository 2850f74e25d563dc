"""Shared fixtures: the real clips in ../shared/media and small generated inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("DFDETECT_MEDIA", ROOT.parent / "shared" / "media"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def media(rel: str) -> Path:
    """Path of a clip in ../shared/media (tests fail loudly if the folder is missing)."""
    path = MEDIA / rel
    assert path.exists(), f"missing test media {path}: run the tests with ../shared beside the repo"
    return path


@pytest.fixture(scope="session")
def media_dir() -> Path:
    assert MEDIA.is_dir(), f"missing {MEDIA}: run the tests with ../shared beside the repo"
    return MEDIA
