"""Fixtures of the scan tests: a tiny checkpoint of the demo model, a detector, a prepared clip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from dfdetect.config import PrepareConfig, PreprocessConfig
from tests.conftest import ROOT, media
from tests.eval.conftest import clip, pre  # noqa: F401 - the scoring fixtures, shared with eval

DEMO_CONFIG = ROOT / "configs" / "models" / "demo_tiny.yaml"
# Small crops and short reads keep every scan in these tests at about a second.
PRE = PreprocessConfig(fps=5.0, size=64, clip_frames=8, segment_seconds=0.8, mouth_size=32)
PREPARE = PrepareConfig(fps=5.0, size=64, max_duration=4.0, detect_every=3)


def make_checkpoint(path: Path, temperature: float = 1.5, seed: int = 0) -> Path:
    """Save a randomly initialised demo model as a dfdetect checkpoint (no download)."""
    from dfdetect.checkpoint import save_state
    from dfdetect.models.factory import create_model

    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg = {**cfg, "pretrained": False, "fps": PRE.fps, "segment_seconds": PRE.segment_seconds}
    cfg.pop("pretrained_path", None)
    name = cfg.pop("name")
    torch.manual_seed(seed)
    model = create_model(name, **cfg)
    # Mouth crops must have the size the model's lip-sync head was built for (48 by default).
    prep = PRE.model_copy(update={"mouth_size": int(cfg.get("mouth_size", getattr(model, "mouth_size", 48)))})
    state = {
        "model_state": model.state_dict(),
        "model_config": {"name": name, **cfg},
        "preprocess": prep.model_dump(),
        "prepare": PREPARE.model_dump(),
        "calibration": {"temperature": temperature},
    }
    return save_state(path, state)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture(scope="session")
def detector(tiny_checkpoint: Path):
    from dfdetect.infer.pipeline import load_detector

    return load_detector(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def prepared_clip(detector):
    """A real talking-head clip prepared with the detector's settings (shared by explain tests)."""
    from dfdetect.data.prepare import prepare_clip

    return prepare_clip(
        media("real/pcavs_Audio_Source_00015.mp4"), detector.prepare_config, detector.face_detector
    )
