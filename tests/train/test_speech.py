"""Speech fine-tuning: the shipped config validates, checkpoints rebuild the model."""

from __future__ import annotations

from pathlib import Path

import torch

from dfdetect.train.speech import checkpoint_meta, load_speech_config, speech_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_speech_config_loads_with_overrides() -> None:
    cfg = load_speech_config(ROOT / "configs/experiments/speech.yaml", ["data.codec=mp3", "train.seed=3"])
    assert cfg.model.name == "aasist-l" and cfg.model.kwargs()["pretrained"] is True
    assert cfg.data.codec == "mp3" and cfg.train.seed == 3
    assert cfg.train.stages[0].trainable == ["audio"]
    meta = checkpoint_meta(cfg)
    assert meta["model_config"]["pretrained"] is False and meta["preprocess"]["codec"] == "mp3"


def test_speech_checkpoint_rebuilds_the_model(tmp_path: Path) -> None:
    from dfdetect.models.factory import create_model
    from dfdetect.train.checkpoint import build_model, load_checkpoint, save_checkpoint

    model = create_model("aasist-l", pretrained=True)
    state = speech_checkpoint(model.state_dict(), "aasist-l", {"hop_samples": 16000}, metrics={"eer": 0.1})
    rebuilt = build_model(load_checkpoint(save_checkpoint(tmp_path / "s.pt", state)))
    assert rebuilt.hop_samples == 16000 and not rebuilt.training
    from dfdetect.checkpoint import Checkpoint

    pre = Checkpoint.from_state(state).preprocess  # the scan core cuts audio into exactly one window
    assert pre.audio_samples == 64600 and pre.num_segments == 1 and pre.sample_rate == 16000
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
