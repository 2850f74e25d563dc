"""AASIST and AASIST-L (Jung et al., ICASSP 2022): spectro-temporal graph attention on raw 16 kHz waveforms.

A port of clovaai/aasist ``models/AASIST.py`` whose module tree has the official key names and shapes, so
the official checkpoints (shipped in ``dfdetect/weights/aasist/``, MIT) load with ``strict=True``.
Hyper-parameters are those of ``AASIST.conf`` / ``AASIST-L.conf``.

Two faithful quirks of the original are kept because the checkpoints were trained with them: the
residual blocks compute ``selu(bn1(x))`` and then feed ``x`` (not that result) to ``conv1`` (so ``bn1``
is loaded but unused), and the master nodes are passed un-expanded (broadcast over the batch).

dfdetect's model contract (``forward(frames=None, audio=[B,S], audio_mask=[B])`` -> ``logit [B]``,
``audio_logit [B]``, ``segment_logits [B,K]``) is met by :class:`AASIST.forward`: the waveform is cut into
the 64600-sample windows the checkpoints expect (:func:`frame_waveform`), each window is scored, and the
window logits are averaged. The official output (``logits[:, 1]`` = bona fide) becomes a *fake* logit in
one place, :func:`fake_logit`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dfdetect.constants import SAMPLE_RATE

WINDOW_SAMPLES = 64600  # ~4.04 s, the input length of the official training and evaluation
HOP_SAMPLES = WINDOW_SAMPLES // 2  # 50 % overlap between sliding windows
TILE_ELEMENTS = 1 << 21  # elements of a residual-block tile at inference (8 MB of float32)
BONA_FIDE_INDEX = 1  # official output: index 1 = bona fide (real), index 0 = spoof
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "aasist"
SOURCE = "clovaai/aasist@a04c9863f63d44471dde8a6abcb3b082b07cd1d1"

ARCHS: dict[str, dict[str, Any]] = {
    "aasist": {
        "first_conv": 128,
        "filts": (70, (1, 32), (32, 32), (32, 64), (64, 64)),
        "gat_dims": (64, 32),
        "pool_ratios": (0.5, 0.7, 0.5, 0.5),
        "temperatures": (2.0, 2.0, 100.0, 100.0),
        "weights": "AASIST.pth",
        "sha256": "51d2d9cf0738172f61e2a384ec50a54a55363240f67c971ed55a92435bc1a1c0",
    },
    "aasist-l": {
        "first_conv": 128,
        "filts": (70, (1, 32), (32, 32), (32, 24), (24, 24)),
        "gat_dims": (24, 32),
        "pool_ratios": (0.4, 0.5, 0.7, 0.5),
        "temperatures": (2.0, 2.0, 100.0, 100.0),
        "weights": "AASIST-L.pth",
        "sha256": "814331d088032bb4c3fa61cc014789eadeed464209dd094ab3a2dd6ffbdce27a",
    },
}


# -- Input handling and output convention (the one place for each) -----------------------------------------


def window_starts(n_samples: int, window: int = WINDOW_SAMPLES, hop: int = HOP_SAMPLES) -> list[int]:
    """First sample of each window over ``n_samples``: every ``hop``, plus one flush with the end.

    A clip no longer than ``window`` has one window at 0 (it is repeated to length, see
    :func:`frame_waveform`).
    """
    if hop < 1:
        raise ValueError(f"hop must be >= 1 sample, got {hop}")
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)  # the tail is always covered
    return starts


def frame_waveform(audio: torch.Tensor, window: int = WINDOW_SAMPLES, hop: int = HOP_SAMPLES) -> torch.Tensor:
    """Cut waveforms into the windows the checkpoints expect.

    Short clips are repeated (tiled) to ``window`` samples, as the official evaluation does; longer ones
    get sliding windows (:func:`window_starts`, 50 % overlap by default, the last one flush with the end).

    Args:
        audio: ``[S]`` or ``[B, S]`` mono float waveform at 16 kHz (``S >= 1``).
        window: samples per window.
        hop: samples between window starts.

    Returns:
        ``[B, K, window]`` windows (``B = 1`` for a 1-D input).
    """
    x = audio.reshape(1, -1) if audio.dim() == 1 else audio  # [B, S]
    n = x.shape[-1]
    if n == 0:
        raise ValueError("cannot score an empty waveform")
    if n < window:
        x = x.repeat(1, math.ceil(window / n))[:, :window]  # [B, window]
        n = window
    starts = torch.tensor(window_starts(n, window, hop), device=x.device)  # [K]
    index = starts[:, None] + torch.arange(window, device=x.device)  # [K, window]
    return x[:, index]  # [B, K, window]


def fake_logit(official_logits: torch.Tensor) -> torch.Tensor:
    """Official ``[N, 2]`` logits (index 1 = bona fide) -> ``[N]`` logit of *fake* (higher = synthetic).

    ``sigmoid(fake_logit) == softmax(logits)[:, 0]``, the official spoof probability.
    """
    return official_logits[:, 1 - BONA_FIDE_INDEX] - official_logits[:, BONA_FIDE_INDEX]


# -- Layers (key names follow the official module tree) ----------------------------------------------------


def sinc_bank(out_channels: int, kernel_size: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``[C, K]`` fixed band-pass sinc filters, mel-spaced edges, Hamming window (``K`` made odd)."""
    k = kernel_size + 1 if kernel_size % 2 == 0 else kernel_size
    f = int(sample_rate / 2) * np.linspace(0, 1, 512 // 2 + 1)
    mel = 2595 * np.log10(1 + f / 700)
    edges = 700 * (10 ** (np.linspace(mel.min(), mel.max(), out_channels + 1) / 2595) - 1)  # [C+1] Hz
    t = np.arange(-(k - 1) / 2, (k - 1) / 2 + 1)  # [K]
    lo, hi = edges[:-1, None], edges[1:, None]  # [C, 1]
    ideal = 2 * hi / sample_rate * np.sinc(2 * hi * t / sample_rate)
    ideal -= 2 * lo / sample_rate * np.sinc(2 * lo * t / sample_rate)
    return torch.from_numpy(np.hamming(k) * ideal).float()  # [C, K]


class SincConv(nn.Module):
    """Fixed sinc filter bank (not learned, not in the state dict), optional random band masking."""

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.register_buffer("band_pass", sinc_bank(out_channels, kernel_size, sample_rate), persistent=False)

    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        """``[B, 1, S]`` -> ``[B, C, S - K + 1]``; ``mask`` zeroes up to 20 random adjacent filters."""
        filters = self.band_pass
        if mask:
            width = int(torch.randint(0, 20, ()).item())
            first = int(torch.randint(0, filters.shape[0] - width + 1, ()).item())
            filters = filters.clone()
            filters[first : first + width] = 0
        return F.conv1d(x, filters[:, None])


class ResidualBlock(nn.Module):
    """Conv (2x3) -> BN -> SELU -> conv (2x3) + (projected) identity -> max-pool (1x3) over time."""

    def __init__(self, c_in: int, c_out: int, first: bool = False) -> None:
        super().__init__()
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)  # loaded, unused: the original discards its output
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.selu = nn.SELU(inplace=True)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.conv_downsample = (
            nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1)) if c_in != c_out else None
        )
        self.mp = nn.MaxPool2d((1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, F, T] -> [B, C', F, T // 3]
        if not self.bn2.training:
            return self._forward_eval(x)
        out = self.conv2(self.selu(self.bn2(self.conv1(x))))
        identity = self.conv_downsample(x) if self.conv_downsample is not None else x
        return self.mp(out + identity)

    def _forward_eval(self, x: torch.Tensor) -> torch.Tensor:
        """The same block; when it is large (the first block runs at full time resolution: 64 MB per
        tensor and window), computed a time tile at a time (:data:`TILE_ELEMENTS` per tile tensor), so that
        its tensors stay in the CPU's cache: 2.4x faster on these 2 cores.

        Exact: each tile reads 2 input frames either side (the reach of conv1 + conv2) and keeps only the
        frames whose whole reach lies inside it or at the clip's true edges.
        """
        if torch.compiler.is_exporting():  # one graph for any batch and length
            return self.mp(self._unpooled(x))
        n_in = x.shape[-1]
        n_out = n_in // 3  # max-pool (1, 3), floor mode
        tile = max(16, TILE_ELEMENTS // (3 * x.shape[0] * self.conv2.out_channels * (x.shape[2] + 1)))
        if n_out <= 4 * tile:
            return self.mp(self._unpooled(x))
        parts = []
        for j in range(0, n_out, tile):
            a, b = 3 * j, 3 * min(j + tile, n_out)  # pre-pool frames of this tile
            lo, hi = max(a - 2, 0), min(b + 2, n_in)
            out = self._unpooled(x[..., lo:hi])[..., a - lo : b - lo]  # [B, C', F, b - a]
            parts.append(self.mp(out))
        return torch.cat(parts, dim=-1)  # [B, C', F, n_out]

    def _unpooled(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 (with ``bn2`` folded in) -> selu -> conv2, + identity; selu and sum in place. Weights in
        channels-last order, so that even the one-channel input of the first block gives channels-last
        outputs (oneDNN's fast kernels: 1.5x on the whole model)."""
        scale = self.bn2.weight / torch.sqrt(self.bn2.running_var + self.bn2.eps)  # [C']
        weight = _channels_last(self.conv1.weight * scale[:, None, None, None])
        bias = (self.conv1.bias - self.bn2.running_mean) * scale + self.bn2.bias
        out = F.selu(F.conv2d(x, weight, bias, padding=(1, 1)), inplace=True)  # [B, C', F + 1, T]
        out = F.conv2d(out, _channels_last(self.conv2.weight), self.conv2.bias, padding=(0, 1))  # [.., F, T]
        down = self.conv_downsample
        out += F.conv2d(x, _channels_last(down.weight), down.bias, padding=(0, 1)) if down is not None else x
        return out


def _channels_last(weight: torch.Tensor) -> torch.Tensor:
    return weight.contiguous(memory_format=torch.channels_last)


def _att_vector(dim: int) -> nn.Parameter:
    w = nn.Parameter(torch.empty(dim, 1))
    nn.init.xavier_normal_(w)
    return w


class GraphAttention(nn.Module):
    """Graph attention over fully connected nodes ``[B, N, D]`` (GAT-S / GAT-T)."""

    def __init__(self, d_in: int, d_out: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_weight = _att_vector(d_out)
        self.proj_with_att = nn.Linear(d_in, d_out)
        self.proj_without_att = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU(inplace=True)
        self.temp = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, Din] -> [B, N, Dout]
        x = self.input_drop(x)
        pair = torch.tanh(self.att_proj(x[:, :, None] * x[:, None]))  # [B, N, N, Dout]
        att = torch.softmax((pair @ self.att_weight).squeeze(-1) / self.temp, dim=-1)  # [B, N, N]
        x = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return self.act(self.bn(x.flatten(0, 1)).view_as(x))


class HeteroGraphAttention(nn.Module):
    """Heterogeneous graph attention over two node types plus a master node (HS-GAL)."""

    def __init__(self, d_in: int, d_out: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(d_in, d_in)
        self.proj_type2 = nn.Linear(d_in, d_in)
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_projM = nn.Linear(d_in, d_out)
        self.att_weight11 = _att_vector(d_out)
        self.att_weight22 = _att_vector(d_out)
        self.att_weight12 = _att_vector(d_out)
        self.att_weightM = _att_vector(d_out)
        self.proj_with_att = nn.Linear(d_in, d_out)
        self.proj_without_att = nn.Linear(d_in, d_out)
        self.proj_with_attM = nn.Linear(d_in, d_out)
        self.proj_without_attM = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU(inplace=True)
        self.temp = float(temperature)

    def _attention(self, x: torch.Tensor, n1: int) -> torch.Tensor:
        """``[B, N, N]`` attention with one weight vector per (type, type) block (12 = 21)."""
        pair = torch.tanh(self.att_proj(x[:, :, None] * x[:, None]))  # [B, N, N, Dout]
        w = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)  # [Dout, 3]
        scores = pair @ w  # [B, N, N, 3]
        n = x.shape[1]
        kind = torch.full((n, n), 2, dtype=torch.long, device=x.device)
        kind[:n1, :n1], kind[n1:, n1:] = 0, 1
        picked = scores.gather(-1, kind.expand(x.shape[0], n, n)[..., None]).squeeze(-1)  # [B, N, N]
        return torch.softmax(picked / self.temp, dim=-1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, master: torch.Tensor) -> tuple:
        """``x1 [B, N1, D]``, ``x2 [B, N2, D]``, ``master [1 | B, 1, D]`` -> the three, updated."""
        n1, n2 = x1.shape[1], x2.shape[1]
        x = self.input_drop(torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1))  # [B, N, D]
        att_m = torch.tanh(self.att_projM(x * master)) @ self.att_weightM  # [B, N, 1]
        att_m = torch.softmax(att_m / self.temp, dim=1)
        master = self.proj_with_attM(att_m.transpose(1, 2) @ x) + self.proj_without_attM(master)  # [B, 1, D]
        x = self.proj_with_att(self._attention(x, n1) @ x) + self.proj_without_att(x)
        x = self.act(self.bn(x.flatten(0, 1)).view_as(x))
        return x[:, :n1], x[:, n1 : n1 + n2], master


class GraphPool(nn.Module):
    """Keep the ``k`` fraction of nodes with the highest sigmoid score, scaled by that score."""

    def __init__(self, k: float, d_in: int, p: float) -> None:
        super().__init__()
        self.k = k
        self.proj = nn.Linear(d_in, 1)
        self.drop = nn.Dropout(p=p) if p > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, max(int(N k), 1), D]
        scores = torch.sigmoid(self.proj(self.drop(h)))  # [B, N, 1]
        n = max(int(h.shape[1] * self.k), 1)
        idx = torch.topk(scores, n, dim=1).indices.expand(-1, -1, h.shape[2])
        return torch.gather(h * scores, 1, idx)


# -- The model ---------------------------------------------------------------------------------------------


class AASIST(nn.Module):
    """AASIST / AASIST-L with dfdetect's output contract (see the module docstring).

    Args:
        arch: ``"aasist"`` or ``"aasist-l"`` (hyper-parameters of the official configs).
        hop_samples: samples between sliding windows over clips longer than one window.
        freq_mask: the official ``Freq_aug`` (random sinc band masking) while training.
        max_windows: windows scored per forward chunk (bounds memory on long clips).

    Attributes:
        pretrained_cfg: timm-style preprocessing record (sample rate, window, hop, pooling, weights).
        sample_rate, modalities: as other dfdetect models (``{"audio"}``: audio only).
    """

    def __init__(
        self,
        arch: str = "aasist-l",
        hop_samples: int = HOP_SAMPLES,
        freq_mask: bool = False,
        max_windows: int = 64,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown AASIST variant {arch!r}; choose one of {', '.join(ARCHS)}")
        a = ARCHS[arch]
        filts, gat, pools, temps = a["filts"], a["gat_dims"], a["pool_ratios"], a["temperatures"]
        self.arch, self.freq_mask, self.max_windows = arch, freq_mask, max_windows
        self.conv_time = SincConv(filts[0], a["first_conv"])
        self.first_bn = nn.BatchNorm2d(1)
        self.selu = nn.SELU(inplace=True)
        self.encoder = nn.Sequential(
            *[
                nn.Sequential(ResidualBlock(*f, first=i == 0))
                for i, f in enumerate([filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]])
            ]
        )
        c = filts[-1][-1]
        self.pos_S = nn.Parameter(torch.randn(1, 23, c))  # 23 = 70 sinc bands after 3x pooling
        self.master1 = nn.Parameter(torch.randn(1, 1, gat[0]))
        self.master2 = nn.Parameter(torch.randn(1, 1, gat[0]))
        self.GAT_layer_S = GraphAttention(c, gat[0], temps[0])
        self.GAT_layer_T = GraphAttention(c, gat[0], temps[1])
        self.HtrgGAT_layer_ST11 = HeteroGraphAttention(gat[0], gat[1], temps[2])
        self.HtrgGAT_layer_ST12 = HeteroGraphAttention(gat[1], gat[1], temps[2])
        self.HtrgGAT_layer_ST21 = HeteroGraphAttention(gat[0], gat[1], temps[2])
        self.HtrgGAT_layer_ST22 = HeteroGraphAttention(gat[1], gat[1], temps[2])
        self.pool_S = GraphPool(pools[0], gat[0], 0.3)
        self.pool_T = GraphPool(pools[1], gat[0], 0.3)
        self.pool_hS1 = GraphPool(pools[2], gat[1], 0.3)
        self.pool_hT1 = GraphPool(pools[2], gat[1], 0.3)
        self.pool_hS2 = GraphPool(pools[2], gat[1], 0.3)
        self.pool_hT2 = GraphPool(pools[2], gat[1], 0.3)
        self.out_layer = nn.Linear(5 * gat[1], 2)
        self.sample_rate = SAMPLE_RATE
        self.modalities = {"audio"}
        self.pretrained_cfg = {
            "architecture": arch,
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "input": "float32 waveform in [-1, 1]",
            "window_samples": WINDOW_SAMPLES,
            "hop_samples": int(hop_samples),
            "short_clips": "repeat",
            "pooling": "mean of window fake-logits",
            "output": "logit of fake (higher = more likely synthetic)",
            "file": f"aasist/{a['weights']}",
            "sha256": a["sha256"],
            "source": SOURCE,
            "license": "MIT",
            "trained_on": "ASVspoof 2019 LA train",
        }

    @property
    def hop_samples(self) -> int:
        return int(self.pretrained_cfg["hop_samples"])

    def _hetero_branch(self, out_t, out_s, master, first, second, pool_s, pool_t) -> tuple:  # noqa: ANN001
        t, s, m = first(out_t, out_s, master)
        s, t = pool_s(s), pool_t(t)
        t_aug, s_aug, m_aug = second(t, s, m)
        return t + t_aug, s + s_aug, m + m_aug

    def front_end(self, x: torch.Tensor) -> torch.Tensor:
        """Sinc filters, 3x3 max-pool and the residual encoder: ``[N, S]`` -> ``|features| [N, C, 23, T]``
        (nearly all of the model's compute)."""
        x = self.conv_time(x[:, None], mask=self.freq_mask and self.training)  # [N, 70, S']
        x = F.max_pool2d(x.abs()[:, None], (3, 3))  # [N, 1, 23, S'/3]
        x = self.selu(self.first_bn(x)).contiguous(memory_format=torch.channels_last)
        return self.encoder(x).abs()  # [N, C, 23, T]

    def forward_official(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The official forward: ``[N, S]`` waveform -> ``(embedding [N, 5*D], logits [N, 2])``,
        logits index 1 = bona fide."""
        if torch.compiler.is_exporting() or self.encoder.training or len(x) == 1:  # export: any batch
            e = self.front_end(x)  # [N, C, 23, T]
        else:  # one window at a time: ~100 MB less per window in flight, and no page faults on them
            e = torch.cat([self.front_end(w) for w in x.split(1)])
        return self.graph_head(e)

    def graph_head(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph attention over ``|features| [N, C, 23, T]`` -> ``(embedding [N, 5*D], logits [N, 2])``."""
        out_s = self.pool_S(self.GAT_layer_S(e.amax(dim=3).transpose(1, 2) + self.pos_S))  # [N, 23k, D]
        out_t = self.pool_T(self.GAT_layer_T(e.amax(dim=2).transpose(1, 2)))  # [N, Tk, D]
        t1, s1, m1 = self._hetero_branch(
            out_t, out_s, self.master1, self.HtrgGAT_layer_ST11, self.HtrgGAT_layer_ST12,
            self.pool_hS1, self.pool_hT1,
        )  # fmt: skip
        t2, s2, m2 = self._hetero_branch(
            out_t, out_s, self.master2, self.HtrgGAT_layer_ST21, self.HtrgGAT_layer_ST22,
            self.pool_hS2, self.pool_hT2,
        )  # fmt: skip
        drop = lambda v: F.dropout(v, 0.2, self.training)  # noqa: E731
        t, s, m = torch.max(drop(t1), drop(t2)), torch.max(drop(s1), drop(s2)), torch.max(drop(m1), drop(m2))
        hidden = torch.cat([t.abs().amax(1), t.mean(1), s.abs().amax(1), s.mean(1), m.squeeze(1)], dim=1)
        return hidden, self.out_layer(F.dropout(hidden, 0.5, self.training))

    def window_logits(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` waveforms -> ``[B, K]`` fake logits of their windows (:func:`frame_waveform`)."""
        windows = frame_waveform(audio, WINDOW_SAMPLES, self.hop_samples)  # [B, K, W]
        b, k = windows.shape[:2]
        flat = windows.flatten(0, 1)  # [B*K, W]
        logits = [self.forward_official(chunk)[1] for chunk in flat.split(self.max_windows)]
        return fake_logit(torch.cat(logits)).reshape(b, k)

    def forward(
        self,
        frames: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        mouths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``audio [B, S]`` -> ``logit [B]`` (= ``audio_logit``, mean of window logits) and
        ``segment_logits [B, K]`` (one per window); rows without audio get 0 (neutral).
        ``frames`` and ``mouths`` are accepted and ignored (audio-only model)."""
        if audio is None:
            if frames is None:
                raise ValueError("AASIST needs audio [B, S]")
            zero = frames.new_zeros(frames.shape[0])
            return {"logit": zero, "audio_logit": zero, "segment_logits": zero[:, None]}
        seg = self.window_logits(audio)  # [B, K]
        if audio_mask is not None:
            seg = torch.where(audio_mask.to(seg.device).bool().reshape(-1, 1), seg, torch.zeros_like(seg))
        logit = seg.mean(dim=1)
        return {"logit": logit, "audio_logit": logit, "segment_logits": seg}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``frontend`` (first BN + residual encoder: most of the compute) and ``audio`` (graph attention
        layers, pooling and the output layer), for staged training configs."""
        front = {id(p) for m in (self.first_bn, self.encoder) for p in m.parameters()}
        return {
            "frontend": [p for p in self.parameters() if id(p) in front],
            "audio": [p for p in self.parameters() if id(p) not in front],
        }

    def train(self, mode: bool = True) -> AASIST:
        """As ``nn.Module.train``; a frozen front end (no parameter requires grad) keeps its batch-norm
        statistics (eval mode), so fine-tuning the graph layers never shifts the pretrained features."""
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.encoder.parameters()):
            self.first_bn.eval()
            self.encoder.eval()
        return self


def official_state_dict(arch: str, path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The official state dict of ``arch`` (the packaged file, or ``path``: an official ``.pth`` or a
    dict holding ``model_state``)."""
    file = Path(path) if path is not None else WEIGHTS_DIR / ARCHS[arch]["weights"]
    if not file.is_file():
        raise FileNotFoundError(
            f"AASIST weights not found: {file} (reinstall dfdetect or pass pretrained_path)"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    return state.get("model_state", state) if isinstance(state, dict) else state


def build_aasist(
    arch: str,
    pretrained: bool = False,
    pretrained_path: str | os.PathLike | None = None,
    hop_samples: int = HOP_SAMPLES,
    freq_mask: bool = False,
    max_windows: int = 64,
    sample_rate: int = SAMPLE_RATE,
    fps: float | None = None,
    segment_seconds: float | None = None,
) -> AASIST:
    """An :class:`AASIST` (eval mode when pretrained), loading the official weights strictly when
    ``pretrained`` or ``pretrained_path`` is given. ``fps``/``segment_seconds`` (set by the training and
    checkpoint code for every model) are accepted and unused; ``sample_rate`` must be 16000."""
    if int(sample_rate) != SAMPLE_RATE:
        raise ValueError(f"AASIST takes {SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}")
    model = AASIST(arch, hop_samples=hop_samples, freq_mask=freq_mask, max_windows=max_windows)
    if pretrained or pretrained_path:
        model.load_state_dict(official_state_dict(arch, pretrained_path), strict=True)
        model.eval()
    return model
