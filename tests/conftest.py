"""Shared fixtures: the real clips in ../shared/media, small generated inputs, one prepared demo set."""

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


N_TRAIN, N_VAL = 5, 3  # videos of the demo_data splits


@pytest.fixture(scope="session")
def demo_data(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 PC-AVS + 2 VideoReTalking real clips (4 s each) prepared with the real pipeline.

    A labels CSV fixes the splits: 5 train videos, 3 held-back val videos. Returns the prepare dir.
    """
    import torch

    from dfdetect.config import PrepareConfig
    from dfdetect.data.prepare import prepare_source

    torch.set_num_threads(1)
    real = media_dir / "real"
    clips = sorted(real.glob("pcavs_*.mp4"))[:6] + sorted(real.glob("videoretalking_face_*.mp4"))[:2]
    assert len(clips) == N_TRAIN + N_VAL, f"expected 8 real clips in {real}"
    root = tmp_path_factory.mktemp("demo-data")
    lines = ["path,label,split,group"]
    for i, clip in enumerate(clips):
        lines.append(f"{clip},0,{'val' if i % 3 == 1 else 'train'},{clip.stem}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = root / "prepared"
    summary = prepare_source(
        "folder",
        root / "labels.csv",
        out,
        PrepareConfig(max_duration=4.0, size=112),
        workers=1,
        progress=False,
    )
    assert summary.done == len(clips), summary
    return out
