"""Every registered model: forward + backward on CPU with and without audio, output contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from dfdetect.models.factory import available_models, create_model, default_preprocess

B, T, SIZE, FPS = 3, 5, 64, 5.0
SMALL = {"temporal_layers": 1, "d_model": 32, "n_heads": 2, "fps": FPS, "segment_seconds": 0.5}
TINY_FREQ = {"frequency_dim": 32, "frequency_width": 8}
CONFIGS = {
    "visual": {**SMALL, "backbone": "resnet10t", "use_frequency": True, **TINY_FREQ, "num_types": 3},
    "frequency": {**SMALL, **TINY_FREQ},
    "audio": {"d_model": 32, "fps": FPS, "segment_seconds": 0.5, "audio_width": 8},  # no temporal module
    "av": {
        **SMALL,
        "backbone": "resnet10t",
        "audio_width": 8,
        "use_sync": True,
        "sync_dim": 16,
        "sync_width": 8,
        "mouth_size": 24,
    },  # fmt: skip
}
K = round(T / FPS / 0.5)  # segments, as PreprocessConfig.num_segments


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.randn(B, T, 3, SIZE, SIZE, generator=g),
        "audio": 0.1 * torch.randn(B, round(T / FPS * 16000), generator=g),
        "mouths": torch.randn(B, T, 3, 32, 32, generator=g),
    }


def test_every_registered_model_is_covered() -> None:
    elsewhere = {"aasist", "aasist-l", "clip-probe"}  # test_aasist.py, test_probe.py
    assert set(available_models()) - {"whisper-speech"} == set(CONFIGS) | elsewhere


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("audio_case", ["none", "all", "partial"])
def test_forward_backward(name: str, audio_case: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **CONFIGS[name]).train()
    x = _inputs()
    mask = torch.tensor([True, False, True]) if audio_case == "partial" else None
    audio = None if audio_case == "none" else x["audio"]
    out = model(x["frames"], audio=audio, audio_mask=mask, mouths=x["mouths"] if name == "av" else None)

    assert out["logit"].shape == (B,)
    assert out["segment_logits"].shape == (B, K)
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    if "video" in model.modalities:
        assert out["frame_logits"].shape == (B, T) and out["frame_attention"].shape == (B, T)
        torch.testing.assert_close(out["frame_attention"].sum(1), torch.ones(B))
    if "audio" in model.modalities and audio is not None:
        assert out["audio_logit"].shape == (B,)
    if "sync" in model.modalities and audio is not None:
        assert out["sync_logit"].shape == (B,) and out["frame_sync_logits"].shape == (B, T)
    if name == "visual":
        assert out["type_logits"].shape == (B, 3)
    if name in ("av", "visual", "frequency") and audio_case != "all":
        # rows without audio are scored from the video alone
        rows = [1] if audio_case == "partial" else [0, 1, 2]
        torch.testing.assert_close(out["logit"][rows], out["video_logit"][rows])
    if name == "audio" and audio is None:
        assert torch.equal(out["logit"], torch.zeros(B))  # nothing to score: neutral
        return

    loss = sum(v.float().pow(2).mean() for v in out.values())
    loss.backward()
    groups = model.parameter_groups()
    assert {"video", "audio", "fusion"} <= set(groups)
    used = [g for g in ("video", "audio", "fusion") if groups[g]]
    if audio is None:
        used = ["video"]
    for g in used:  # gradients reach the input end of every path that ran, and most parameters
        reached = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in groups[g]]
        # (timm ResNets zero-init each block's last norm: its convs get no gradient at step 0)
        assert reached[0] and sum(reached) >= 0.7 * len(reached), (g, sum(reached), len(reached))


@pytest.mark.parametrize("fusion", ["late", "concat", "cross_attention"])
def test_fusions_fall_back_to_video(fusion: str) -> None:
    torch.manual_seed(0)
    model = create_model("av", **{**CONFIGS["av"], "fusion": fusion, "use_sync": False}).eval()
    x = _inputs(1)
    out = model(x["frames"], x["audio"], torch.tensor([False, True, False]))
    torch.testing.assert_close(out["logit"][[0, 2]], out["video_logit"][[0, 2]])
    assert out["audio_logit"][0] == 0 and out["audio_logit"][2] == 0
    assert not torch.allclose(out["logit"][1], out["video_logit"][1])


def test_parameter_groups_cover_every_parameter_once() -> None:
    model = create_model("av", **{**CONFIGS["av"], "freeze": 2, "num_types": 2})
    groups = model.parameter_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(not p.requires_grad for p in groups["frozen"])
    # the frozen group stays frozen when a training stage freezes, then unfreezes, the video group
    for p in groups["video"]:
        p.requires_grad_(False)
    again = model.parameter_groups()
    assert {id(p) for p in again["video"]} == {id(p) for p in groups["video"]}
    assert {id(p) for p in again["frozen"]} == {id(p) for p in groups["frozen"]}


def test_model_attributes_and_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    model = create_model("av", **CONFIGS["av"]).eval()
    assert model.modalities == {"video", "audio", "sync"}
    assert model.cam_layer is not None
    assert create_model("audio", **CONFIGS["audio"]).cam_layer is None
    assert create_model("frequency", **CONFIGS["frequency"]).modalities == {"video", "frequency"}
    torch.manual_seed(1)
    other = create_model("av", **CONFIGS["av"]).eval()
    other.load_state_dict(model.state_dict())  # strict: same config -> same keys
    x = _inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(model(**x)["logit"], other(**x)["logit"])


def test_cam_layer_sees_per_frame_maps() -> None:
    model = create_model("visual", **CONFIGS["visual"]).eval()
    seen = []
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(_inputs()["frames"])
    handle.remove()
    assert len(seen) == 1 and seen[0][0] == B * T and len(seen[0]) == 4


def test_unknown_model_and_bad_kwargs() -> None:
    # every registered model, sorted
    known = "aasist, aasist-l, audio, av, clip-probe, frequency, visual, whisper-speech"
    with pytest.raises(KeyError, match=f"unknown model 'nope'; known: {known}"):
        create_model("nope")
    with pytest.raises(TypeError, match="fusion"):  # each family takes its own keywords only
        create_model("visual", fusion="late")
    with pytest.raises(TypeError):
        create_model("av", not_a_kwarg=1)
    with pytest.raises(TypeError, match="pretrained_path"):
        create_model("audio", pretrained_path="weights.pt")
    create_model("audio", **CONFIGS["audio"], pretrained=False, pretrained_path=None)  # build_model's keys
    with pytest.raises(ValueError, match="fusion"):
        create_model("av", **{**CONFIGS["av"], "fusion": "sum"})
    with pytest.raises(ValueError, match="audio_encoder"):
        create_model("av", **{**CONFIGS["av"], "audio_encoder": "mfcc"})
    with pytest.raises(ValueError, match="unknown timm backbone"):
        create_model("visual", backbone="resnet_does_not_exist")


def test_default_preprocess() -> None:
    assert default_preprocess("av") == {
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "size": 224,
    }  # fmt: skip
    assert default_preprocess("legacy_xception")["mean"] == (0.5, 0.5, 0.5)
    assert default_preprocess("visual", backbone="legacy_xception")["size"] == 299
    with pytest.raises(KeyError, match="unknown model or timm backbone"):
        default_preprocess("nope_net")


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "models"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_model_configs_build(path: Path) -> None:
    cfg = yaml.safe_load(path.read_text())
    name = cfg.pop("name")
    cfg["pretrained"] = False  # as checkpoint.build_model does; tests never download
    if cfg.get("audio_encoder") == "wav2vec2" and importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (optional extra dfdetect[audio])")
    model = create_model(name, **cfg)
    assert model.modalities
    if path.stem == "demo_tiny":  # small enough to ship and to train on a CPU
        assert sum(p.numel() for p in model.parameters()) * 4 < 20 * 2**20
