"""Model parts: backbone loading/freezing, mel front end, frequency bands, temporal pooling, sync head."""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import pytest
import torch

from dfdetect.models.audio import LogMel, mel_filterbank
from dfdetect.models.backbones import BackboneLoadError, FrameBackbone
from dfdetect.models.frequency import band_masks, band_split, dct2, dct_matrix, idct2, local_stats
from dfdetect.models.fusion import SyncHead, contrastive_loss
from dfdetect.models.heads import hierarchical_probs
from dfdetect.models.temporal import TemporalEncoder, num_segments, segment_pool

# --- backbones --------------------------------------------------------------------------------------


def test_pretrained_path_loads_my_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = FrameBackbone("resnet10t")
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.model.state_dict().items()}}, path)
    torch.manual_seed(1)
    dst = FrameBackbone("resnet10t", pretrained_path=path)
    assert dst.load_report is not None and not dst.load_report["missing"]
    x = torch.randn(2, 3, 64, 64)
    src.eval(), dst.eval()
    torch.testing.assert_close(src(x), dst(x))


def test_pretrained_path_reports_partial_and_rejects_bad_files(tmp_path: Path, caplog) -> None:
    state = FrameBackbone("resnet10t").model.state_dict()
    partial = {k: v for k, v in state.items() if k.startswith("layer4")}
    partial["fc.weight"] = torch.zeros(1000, 512)  # a classifier the backbone does not have
    torch.save(partial, tmp_path / "partial.pt")
    with caplog.at_level(logging.WARNING):
        bb = FrameBackbone("resnet10t", pretrained_path=tmp_path / "partial.pt")
    assert bb.load_report["unexpected"] == ["fc.weight"] and bb.load_report["missing"]
    assert "missing" in caplog.text
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(BackboneLoadError, match="cannot read pretrained_path"):
        FrameBackbone("resnet10t", pretrained_path=tmp_path / "junk.pt")
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(BackboneLoadError, match="no weight in"):
        FrameBackbone("resnet10t", pretrained_path=tmp_path / "other.pt")
    with pytest.raises(BackboneLoadError, match="does not exist"):
        FrameBackbone("resnet10t", pretrained_path=tmp_path / "missing.pt")


def test_freeze_modes() -> None:
    def n_trainable(bb: FrameBackbone) -> int:
        return sum(p.numel() for p in bb.parameters() if p.requires_grad)

    full = FrameBackbone("resnet10t")
    total = sum(p.numel() for p in full.parameters())
    assert n_trainable(full) == total
    assert n_trainable(FrameBackbone("resnet10t", freeze="all")) == 0
    last1 = FrameBackbone("resnet10t", freeze=1)  # stages: stem, layer1..layer4
    assert n_trainable(last1) == sum(p.numel() for p in last1.model.layer4.parameters())
    last2 = FrameBackbone("mobilenetv3_small_100", freeze="2")
    assert 0 < n_trainable(last2) < sum(p.numel() for p in last2.parameters())
    with pytest.raises(ValueError, match="freeze must be"):
        FrameBackbone("resnet10t", freeze="most")
    # frozen batch norms keep their running statistics in train mode
    last1.train()
    stem_bn = last1.model.bn1
    before = stem_bn.running_mean.clone()
    last1(torch.randn(2, 3, 64, 64))
    assert not stem_bn.training and torch.equal(before, stem_bn.running_mean)
    assert last1.model.layer4[0].bn1.training


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv3_small_100", "legacy_xception"])
def test_backbone_feature_maps(name: str) -> None:
    bb = FrameBackbone(name).eval()
    with torch.no_grad():
        fmap = bb.forward_features(torch.randn(1, 3, 64, 64))
    assert fmap.ndim == 4 and fmap.shape[1] == bb.num_features


# --- audio ------------------------------------------------------------------------------------------


def test_mel_filterbank_shape_and_peaks() -> None:
    fb = mel_filterbank(201, 40, 16000)
    assert fb.shape == (201, 40)
    assert (fb >= 0).all() and fb.max() <= 1.0 + 1e-6
    peaks = fb.argmax(dim=0)
    assert (peaks[1:] >= peaks[:-1]).all()  # centres increase with the band index


@pytest.mark.parametrize("freq", [300.0, 1000.0, 4000.0])
def test_log_mel_sine_lands_in_its_band(freq: float) -> None:
    sr = 16000
    t = torch.arange(sr) / sr
    mel = LogMel(sr, n_mels=64)
    spec = mel(torch.sin(2 * math.pi * freq * t)[None])  # [1, 64, frames]
    assert spec.shape[1] == 64 and spec.shape[2] == sr // 160 + 1
    band = spec[0, :, 10:-10].mean(dim=1).argmax()
    peak_hz = mel_filterbank(201, 64, sr, 20.0, sr / 2).argmax(dim=0)[band] * sr / 400
    assert abs(float(peak_hz) - freq) <= 0.1 * freq + 40


def test_wav2vec2_encoder_tiny() -> None:
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (optional extra dfdetect[audio])")
    from dfdetect.models.audio import Wav2Vec2Encoder

    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "conv_dim": (16, 16), "conv_kernel": (10, 3), "conv_stride": (5, 2),
            "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}  # fmt: skip
    enc = Wav2Vec2Encoder(freeze_layers=1, out_dim=24, pretrained=False, config=tiny)
    tokens, pooled = enc(torch.randn(2, 1600))
    assert tokens.shape[0] == 2 and tokens.shape[2] == 24 and pooled.shape == (2, 24)
    assert not any(p.requires_grad for p in enc.model.encoder.layers[0].parameters())
    assert all(p.requires_grad for p in enc.model.encoder.layers[1].parameters())


def test_wav2vec2_without_transformers_says_what_to_install() -> None:
    if importlib.util.find_spec("transformers") is not None:
        pytest.skip("transformers is installed")
    from dfdetect.models.audio import Wav2Vec2Encoder

    with pytest.raises(ImportError, match=r"dfdetect\[audio\]"):
        Wav2Vec2Encoder()


# --- frequency --------------------------------------------------------------------------------------


def test_dct_is_orthonormal_and_inverts() -> None:
    c = dct_matrix(16, dtype=torch.float64)
    torch.testing.assert_close(c @ c.T, torch.eye(16, dtype=torch.float64))
    x = torch.randn(2, 3, 16, 12, dtype=torch.float64)
    torch.testing.assert_close(idct2(dct2(x)), x)
    const = torch.ones(1, 1, 8, 8, dtype=torch.float64)  # a flat image has only the DC coefficient
    coef = dct2(const)
    assert coef[0, 0, 0, 0] == pytest.approx(8.0) and coef.abs().sum() == pytest.approx(8.0)


def test_band_split_is_an_exact_decomposition() -> None:
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    bands = band_split(x)  # [N, 3, C, H, W]
    assert bands.shape == (2, 3, 3, 32, 32)
    torch.testing.assert_close(bands.sum(dim=1), x)
    masks = band_masks(32, 32).double()
    torch.testing.assert_close(masks.sum(0), torch.ones(32, 32, dtype=torch.float64))
    for i in range(3):  # each band's spectrum lives inside its own mask
        outside = dct2(bands[:, i]) * (1 - masks[i])
        assert outside.abs().max() < 1e-9
    smooth = torch.linspace(0, 1, 32, dtype=torch.float64).expand(1, 1, 32, 32)
    energy = band_split(smooth).pow(2).sum(dim=(0, 2, 3, 4))
    assert energy[0] > 100 * energy[2]  # a smooth ramp is low-frequency


def test_local_stats_shape_and_flat_blocks() -> None:
    stats = local_stats(torch.randn(2, 1, 64, 48), block=8, n_stats=6)
    assert stats.shape == (2, 6, 8, 6)
    flat = local_stats(torch.ones(1, 1, 16, 16))
    assert flat[0, 0].min() > flat[0, 5].max()  # only the DC band has energy


# --- temporal, heads --------------------------------------------------------------------------------


def test_segments() -> None:
    assert num_segments(16, 5.0, 1.0) == 3 and num_segments(2, 5.0, 1.0) == 1
    x = torch.arange(6, dtype=torch.float32).reshape(1, 6)
    torch.testing.assert_close(segment_pool(x, 3), torch.tensor([[0.5, 2.5, 4.5]]))
    torch.testing.assert_close(segment_pool(x[:, :2], 4), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))


def test_temporal_encoder_handles_long_sequences() -> None:
    enc = TemporalEncoder(12, d_model=16, n_layers=2, n_heads=2, max_len=8).eval()
    tokens, pooled, att = enc(torch.randn(2, 20, 12))
    assert tokens.shape == (2, 20, 16) and pooled.shape == (2, 16)
    torch.testing.assert_close(att.sum(1), torch.ones(2))


def test_hierarchical_probs_sum_to_one() -> None:
    p = hierarchical_probs(torch.tensor([0.0, 3.0]), torch.randn(2, 4))
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    assert p[1, 0] == pytest.approx(1 / (1 + math.exp(3.0)), rel=1e-5)


# --- sync -------------------------------------------------------------------------------------------


def _toy_sync_batch(b: int = 6, t: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mouth brightness follows a per-clip random envelope; the audio is a 440 Hz tone with it."""
    g = torch.Generator().manual_seed(seed)
    env = torch.rand(b, t, generator=g)  # [B, T] mouth opening
    mouths = env[:, :, None, None, None].expand(b, t, 3, 24, 24) * 2 - 1
    mouths = mouths + 0.05 * torch.randn(mouths.shape, generator=g)
    sr, per_frame = 16000, 3200
    time = torch.arange(t * per_frame) / sr
    audio = torch.sin(2 * math.pi * 440 * time)[None] * env.repeat_interleave(per_frame, dim=1)
    return mouths, audio


def test_sync_head_learns_alignment_with_contrastive_loss() -> None:
    torch.manual_seed(0)
    head = SyncHead(n_mels=32, dim=16, mouth_size=24, width=8)
    mel = LogMel(16000, n_mels=32)
    mouths, audio = _toy_sync_batch()
    logmel = mel(audio)
    shifted = mel(torch.roll(audio, shifts=3 * 3200, dims=1))
    with torch.no_grad():
        head.eval()
        gap0 = (head(mouths, shifted)["sync_logit"] - head(mouths, logmel)["sync_logit"]).mean()
    assert abs(float(gap0)) < 1.0  # nothing learnt yet: aligned and shifted look alike
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = head(mouths, logmel)
        loss = contrastive_loss(out["video_emb"], out["audio_emb"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    head.eval()
    with torch.no_grad():
        aligned = head(mouths, logmel)["sync_logit"]
        off = head(mouths, shifted)["sync_logit"]
    assert (off > aligned).float().mean() >= 0.8  # high = out of sync


def test_contrastive_loss_masks_rows() -> None:
    v = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)
    assert contrastive_loss(v, v, valid=torch.tensor([False, False, False])) == 0
    perfect = contrastive_loss(v, v, temperature=0.01)
    assert perfect < contrastive_loss(v, torch.roll(v, 1, dims=1), temperature=0.01)
