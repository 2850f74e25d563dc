"""Model families (issue 19): each registered family takes only its own keywords, carries a pretrained config
that the preprocessing defaults come from, and the shipped checkpoints rebuild exactly as before the split."""

from __future__ import annotations

import pytest
import torch

from dfdetect.checkpoint import Checkpoint
from dfdetect.config import PreprocessConfig
from dfdetect.constants import IMAGENET_MEAN, IMAGENET_STD
from dfdetect.infer.lookup import WEIGHTS_DIR
from dfdetect.models.factory import available_models, create_model, default_preprocess, pretrained_cfg
from dfdetect.models.pretrained import PretrainedCfg

SMALL = {"d_model": 32, "fps": 4.0, "segment_seconds": 0.5}
VIDEO = {**SMALL, "temporal_layers": 1, "n_heads": 2, "frequency_dim": 16, "frequency_width": 8}
FAMILIES = {  # name -> (small keywords, a keyword of another family it must refuse)
    "visual": ({**VIDEO, "backbone": "resnet10t"}, "fusion"),
    "frequency": (VIDEO, "backbone"),
    "audio": ({**SMALL, "audio_width": 8}, "temporal_layers"),
    "av": ({**VIDEO, "frame_encoder": "frequency", "audio_width": 8, "mouth_size": 24}, "not_a_kwarg"),
    "aasist-l": ({}, "backbone"),
}


def test_every_registered_model_has_a_pretrained_config() -> None:
    for name in available_models():
        cfg = pretrained_cfg(name)
        assert isinstance(cfg, PretrainedCfg), name
        assert default_preprocess(name) == {"mean": cfg.mean, "std": cfg.std, "size": cfg.size}
        PreprocessConfig(**{k: v for k, v in cfg.preprocess().items() if k in PreprocessConfig.model_fields})


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_family_refuses_keywords_it_does_not_take(name: str) -> None:
    kwargs, foreign = FAMILIES[name]
    with pytest.raises(TypeError, match=foreign):
        create_model(name, **kwargs, **{foreign: 1})


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_the_built_model_carries_its_pretrained_config(name: str) -> None:
    kwargs, _ = FAMILIES[name]
    model = create_model(name, **kwargs)
    cfg = pretrained_cfg(name, **kwargs)
    assert {k: model.pretrained_cfg[k] for k in ("mean", "std", "size", "fps", "sample_rate")} == {
        "mean": cfg.mean, "std": cfg.std, "size": cfg.size, "fps": cfg.fps, "sample_rate": cfg.sample_rate,
    }  # fmt: skip
    if name != "aasist-l":  # a window detector's segment layout is its config's
        assert (model.fps, model.segment_seconds) == (cfg.fps, cfg.segment_seconds) == (4.0, 0.5)


def test_the_config_follows_the_family_keywords() -> None:
    xception = pretrained_cfg("visual", backbone="legacy_xception", fps=2.0)
    assert (xception.mean, xception.size, xception.fps) == ((0.5, 0.5, 0.5), 299, 2.0)
    assert pretrained_cfg("av", frame_encoder="frequency", backbone="legacy_xception").mean == IMAGENET_MEAN
    assert pretrained_cfg("av", mouth_size=32).preprocess()["mouth_size"] == 32  # the lip-sync head's crops
    assert "mouth_size" not in pretrained_cfg("visual").preprocess()  # no lip-sync head: not fixed
    audio = pretrained_cfg("audio", sample_rate=8000)
    assert (audio.kind, audio.sample_rate, audio.std) == ("audio", 8000, IMAGENET_STD)


def test_shipped_checkpoints_preprocess_as_their_models_configs() -> None:
    """What each shipped checkpoint records is its model's pretrained config (where that fixes it)."""
    for file, keys in {
        "v2.pt": ("mean", "std", "fps", "segment_seconds", "sample_rate"),  # 160 px: trained smaller
        "aasist-l.pt": ("fps", "segment_seconds", "clip_frames", "size", "mouth_size", "sample_rate"),
        "default.pt": ("mean", "std", "size", "fps", "clip_frames", "segment_seconds"),
    }.items():
        ckpt = Checkpoint.load(WEIGHTS_DIR / file)
        cfg = pretrained_cfg(ckpt.name, **{k: v for k, v in ckpt.model_config.items() if k != "name"})
        recorded = ckpt.preprocess.model_dump()
        for key in keys:
            assert recorded[key] == pytest.approx(cfg.preprocess()[key]), (file, key)
    speech = Checkpoint.load(WEIGHTS_DIR / "aasist-l.pt").preprocess_extra
    assert speech["window_samples"] == pretrained_cfg("aasist-l").window_samples == 64600


def test_speech_checkpoints_take_their_preprocessing_from_the_model() -> None:
    from dfdetect.data.speech import SpeechConfig
    from dfdetect.train.speech import preprocess_for

    pre = preprocess_for("aasist-l", {}, SpeechConfig(codec="mp3"))
    assert pre == {**pretrained_cfg("aasist-l").preprocess(), "codec": "mp3", "bitrate": pre["bitrate"]}
    whisper = preprocess_for("whisper-speech", {}, SpeechConfig(feature_seconds=6.0))
    assert (whisper["window_samples"], whisper["clip_frames"], whisper["codec"]) == (96000, 1, "none")


def test_v2_loads_strictly_and_scores_as_before_the_split() -> None:
    """Logits of the shipped v2 detector on a seeded window, recorded with the pre-split DeepfakeDetector."""
    ckpt = Checkpoint.load(WEIGHTS_DIR / "v2.pt")
    model = ckpt.build_model()  # load_state_dict is strict
    assert type(model).__name__ == "VisualDetector"
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 5, 3, 160, 160, generator=g)  # [B, T, 3, H, W]
    with torch.no_grad():
        out = model(frames)
    expected = {
        "logit": [2.340364, 2.344197],
        "segment_logits": [[2.370485], [2.378287]],
        "frame_logits": [[0.012278, 0.00582, 0.006845, 0.016177, 0.023515],
                         [0.002047, 0.027571, 0.014805, 0.02298, 0.030806]],
        "frame_attention": [[0.199238, 0.199037, 0.202578, 0.200813, 0.198333],
                            [0.202607, 0.196792, 0.199586, 0.202481, 0.198534]],
    }  # fmt: skip
    assert list(out) == ["video_logit", "frame_logits", "frame_attention", "logit", "segment_logits"]
    for key, value in expected.items():
        torch.testing.assert_close(out[key], torch.tensor(value), atol=1e-5, rtol=1e-5, msg=key)
