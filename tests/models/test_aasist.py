"""AASIST / AASIST-L: shipped weights, strict loading, windowing, output convention, parity checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from dfdetect.models import aasist as A
from dfdetect.models.factory import create_model

SPEECH = Path(__file__).resolve().parents[3] / "shared" / "data" / "speech"
README_SHA256 = {  # ../shared/weights/README.md
    "AASIST.pth": "51d2d9cf0738172f61e2a384ec50a54a55363240f67c971ed55a92435bc1a1c0",
    "AASIST-L.pth": "814331d088032bb4c3fa61cc014789eadeed464209dd094ab3a2dd6ffbdce27a",
}


def test_shipped_files_match_the_published_checksums() -> None:
    for name, sha in README_SHA256.items():
        assert hashlib.sha256((A.WEIGHTS_DIR / name).read_bytes()).hexdigest() == sha
    assert (
        "MIT" in (A.WEIGHTS_DIR / "LICENSE").read_text()
        or "Permission" in (A.WEIGHTS_DIR / "LICENSE").read_text()
    )
    assert "NAVER" in (A.WEIGHTS_DIR / "NOTICE").read_text()


@pytest.mark.parametrize("name", ["aasist", "aasist-l"])
def test_every_official_tensor_loads_strictly(name: str) -> None:
    model = create_model(name, pretrained=True)
    official = torch.load(A.WEIGHTS_DIR / A.ARCHS[name]["weights"], map_location="cpu", weights_only=True)
    mine = model.state_dict()
    assert set(mine) == set(official)
    for key, value in official.items():
        assert torch.equal(mine[key], value), key
    assert not model.training
    assert model.pretrained_cfg["sample_rate"] == 16000 and model.pretrained_cfg["window_samples"] == 64600


def test_aasist_l_has_85k_parameters() -> None:
    assert sum(p.numel() for p in create_model("aasist-l").parameters()) == 85306


def test_window_starts_and_framing() -> None:
    assert A.window_starts(1000) == [0]
    assert A.window_starts(64600) == [0]
    assert A.window_starts(64601) == [0, 1]
    starts = A.window_starts(160000)
    assert starts[:3] == [0, 32300, 64600] and starts[-1] == 160000 - 64600
    short = torch.arange(10, dtype=torch.float32)
    framed = A.frame_waveform(short)  # repeated, as the official evaluation
    assert framed.shape == (1, 1, 64600) and torch.equal(framed[0, 0, 10:20], short)
    long = torch.randn(2, 100000)
    framed = A.frame_waveform(long, hop=40000)
    assert framed.shape == (2, 2, 64600)
    assert torch.equal(framed[1, 1], long[1, -64600:])


def test_fake_logit_is_the_official_spoof_probability() -> None:
    logits = torch.tensor([[2.0, -1.0], [-3.0, 4.0]])  # index 1 = bona fide
    assert torch.allclose(torch.sigmoid(A.fake_logit(logits)), torch.softmax(logits, 1)[:, 0])
    assert A.fake_logit(logits)[1] < 0  # bona fide -> low fake logit


def test_sinc_bank_matches_the_closed_form() -> None:
    bank = A.sinc_bank(70, 128)
    assert bank.shape == (70, 129)
    f = 8000 * np.linspace(0, 1, 257)
    mel = 2595 * np.log10(1 + f / 700)
    edges = 700 * (10 ** (np.linspace(mel.min(), mel.max(), 71) / 2595) - 1)
    # centre tap: Hamming = 1 and sinc(0) = 1 -> (2 f_hi - 2 f_lo) / sr
    expect = (2 * edges[1:] - 2 * edges[:-1]) / 16000
    assert np.allclose(bank[:, 64].numpy(), expect, rtol=1e-5)
    assert torch.allclose(bank, bank.flip(1))  # symmetric (linear phase)


def test_graph_attention_matches_a_naive_loop() -> None:
    torch.manual_seed(0)
    layer = A.GraphAttention(4, 3, temperature=2.0).eval()
    x = torch.randn(2, 5, 4)
    got = layer(x)
    want = torch.empty(2, 5, 3)
    for b in range(2):
        score = torch.empty(5, 5)
        for i in range(5):
            for j in range(5):
                score[i, j] = torch.tanh(layer.att_proj(x[b, i] * x[b, j])) @ layer.att_weight[:, 0] / 2.0
        att = torch.softmax(score, dim=1)
        h = layer.proj_with_att(att @ x[b]) + layer.proj_without_att(x[b])
        bn = layer.bn
        want[b] = torch.nn.functional.selu(
            (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        )
    assert torch.allclose(got, want, atol=1e-5)


def test_graph_pool_keeps_the_top_scored_nodes() -> None:
    pool = A.GraphPool(0.5, 2, 0.0)
    with torch.no_grad():
        pool.proj.weight.copy_(torch.tensor([[1.0, 0.0]]))
        pool.proj.bias.zero_()
    h = torch.tensor([[[0.0, 1.0], [3.0, 2.0], [-1.0, 5.0], [2.0, 0.0]]])
    out = pool(h)  # keeps int(4 * 0.5) = 2 nodes: x0 = 3 then 2, scaled by sigmoid(x0)
    want = torch.stack(
        [h[0, 1] * torch.sigmoid(torch.tensor(3.0)), h[0, 3] * torch.sigmoid(torch.tensor(2.0))]
    )
    assert torch.allclose(out[0], want)


def _speech_clip(seconds: float) -> torch.Tensor:
    path = SPEECH / "real" / "tortoise-tts" / "voices__angie__1.wav"
    if not path.is_file():
        pytest.skip(f"speech data not found at {path}")
    from dfdetect.io.audio import load_audio

    audio, _ = load_audio(path, 16000, start=1.0, max_duration=seconds)
    return torch.from_numpy(audio)


def test_real_clip_contract_and_determinism() -> None:
    torch.manual_seed(0)
    model = create_model("aasist-l", pretrained=True)
    audio = _speech_clip(3.0)  # shorter than a window: repeated to 64600 samples
    with torch.no_grad():
        out = model(audio=torch.stack([audio, audio]), audio_mask=torch.tensor([True, False]))
        _, official = model.forward_official(A.frame_waveform(audio)[:, 0])  # [1, 2], index 1 = bona fide
        again = model(audio=audio[None])
    assert out["logit"].shape == (2,) and out["segment_logits"].shape == (2, 1)
    assert torch.equal(out["audio_logit"], out["logit"])
    assert torch.allclose(A.fake_logit(official), out["logit"][:1], atol=1e-5)  # one conversion, same model
    assert torch.allclose(again["logit"], out["logit"][:1], atol=1e-5)  # deterministic, batch-independent
    assert out["logit"][1] == 0 and torch.all(out["segment_logits"][1] == 0)  # no audio: neutral
    assert torch.isfinite(official).all() and official.abs().max() < 50


def test_long_clips_are_windowed_and_mean_pooled(monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model("aasist-l", hop_samples=40000)
    # stand-in for the network: window mean as the spoof logit, 0 for bona fide
    monkeypatch.setattr(
        model, "forward_official", lambda x: (x, torch.stack([x.mean(1), torch.zeros(len(x))], 1))
    )
    audio = torch.cat([torch.zeros(64600), torch.ones(64600)])[None]  # windows at 0, 40000, 64600
    out = model(audio=audio)
    want = torch.tensor([0.0, 40000 / 64600, 1.0])  # the middle window holds 40000 ones
    assert torch.allclose(out["segment_logits"][0], want)
    assert torch.allclose(out["logit"], want.mean()[None])


def test_frames_only_gives_neutral_logits() -> None:
    out = create_model("aasist-l")(frames=torch.zeros(3, 2, 3, 8, 8))
    assert out["logit"].shape == (3,) and torch.all(out["logit"] == 0)


def test_trains_and_rebuilds_from_a_checkpoint(tmp_path: Path) -> None:
    from dfdetect.checkpoint import Checkpoint, read_state, save_state
    from dfdetect.train.optim import set_trainable

    model = create_model("aasist-l", pretrained=True, fps=5.0, segment_seconds=1.0)
    assert set(set_trainable(model, ["audio"])) == {"audio"}
    model.train()
    assert not model.encoder.training and model.GAT_layer_S.training  # frozen front end keeps its BN
    out = model(audio=0.05 * torch.randn(1, 64600))
    out["logit"].sum().backward()
    assert model.out_layer.weight.grad is not None and model.encoder[0][0].conv1.weight.grad is None
    path = save_state(
        tmp_path / "a.pt",
        {"model_state": model.state_dict(), "model_config": {"name": "aasist-l", "fps": 5.0},
         "preprocess": {"sample_rate": 16000}},
    )  # fmt: skip
    rebuilt = Checkpoint.from_state(read_state(path)).build_model()
    assert all(
        torch.equal(a, b)
        for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values(), strict=True)
    )


def _block_reference(block: A.ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """The block as the official code computes it (separate batch norm, out-of-place sum)."""
    out = block.conv2(torch.nn.functional.selu(block.bn2(block.conv1(x))))
    identity = block.conv_downsample(x) if block.conv_downsample is not None else x
    return block.mp(out + identity)


@pytest.mark.parametrize("tile_elements", [A.TILE_ELEMENTS, 3 * 8 * 5 * 16])
def test_inference_block_equals_the_official_formula(monkeypatch: pytest.MonkeyPatch, tile_elements) -> None:
    torch.manual_seed(0)
    monkeypatch.setattr(A, "TILE_ELEMENTS", tile_elements)  # small: 16 pooled frames a tile, many tiles
    block = A.ResidualBlock(1, 8, first=True)
    with torch.no_grad():
        block.bn2.running_mean.uniform_(-0.5, 0.5)
        block.bn2.running_var.uniform_(0.5, 2.0)
        block.bn2.weight.uniform_(0.5, 1.5)
    block.eval()
    x = torch.randn(2, 1, 4, 3 * 16 * 7 + 2).contiguous(memory_format=torch.channels_last)  # ragged end
    with torch.no_grad():
        got = block(x)
        want = _block_reference(block, x)
    assert got.shape == want.shape == (2, 8, 4, 16 * 7)
    assert torch.allclose(got, want, atol=1e-5)


def test_inference_front_end_is_window_by_window_and_exact() -> None:
    model = create_model("aasist-l", pretrained=True)
    audio = torch.cat([_speech_clip(3.0), _speech_clip(3.0).flip(0)])[None]  # 6 s: 2 windows
    with torch.no_grad():
        fast = model(audio=audio)["segment_logits"][0]  # eval: window by window, tiled first block
        windows = A.frame_waveform(audio)[0]  # [2, 64600]
        x = model.conv_time(windows[:, None])  # the official front end, both windows in one batch
        x = model.selu(model.first_bn(torch.nn.functional.max_pool2d(x.abs()[:, None], (3, 3))))
        for seq in model.encoder:
            x = _block_reference(seq[0], x)
        want = A.fake_logit(model.graph_head(x.abs())[1])
    assert fast.shape == want.shape == (2,)
    assert torch.allclose(fast, want, atol=1e-4)
