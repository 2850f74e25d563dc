"""Audio-visual fusion (late, concat, cross-modal attention) and the lip-sync head.

Every fusion returns one logit per row; the detector falls back to the video logit for rows without
audio, so a missing modality never produces NaNs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dfdetect.models.temporal import AttentionPool

FUSIONS = ("late", "concat", "cross_attention")


class LateFusion(nn.Module):
    """Learned softmax weights over modality logits, renormalised over the modalities present.

    ``forward(logits [B, n], present [B, n] bool) -> [B]``; a row with only the video present gets
    exactly the video logit.
    """

    def __init__(self, n_modalities: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_modalities))

    def forward(self, logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.weights, dim=0)[None] * present.to(logits.dtype)  # [B, n]
        w = w / w.sum(dim=1, keepdim=True).clamp(min=1e-6)
        return (w * logits.masked_fill(~present, 0.0)).sum(dim=1)


class ConcatFusion(nn.Module):
    """MLP over the concatenated pooled video and audio embeddings -> ``[B]``."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, 1)
        )

    def forward(self, v_tokens, v_pooled, a_tokens, a_pooled) -> torch.Tensor:  # noqa: ANN001
        return self.net(torch.cat([v_pooled, a_pooled], dim=-1)).squeeze(-1)


class _CrossBlock(nn.Module):
    """Pre-norm cross attention + feed-forward: ``query`` tokens attend to ``context`` tokens."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.nq, self.nc, self.nf = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        c = self.nc(context)
        x = query + self.attn(self.nq(query), c, c, need_weights=False)[0]
        return x + self.ff(self.nf(x))


class CrossAttentionFusion(nn.Module):
    """Video tokens attend to audio tokens and vice versa; both are pooled, concatenated, classified."""

    def __init__(self, dim: int, n_heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.v2a = _CrossBlock(dim, n_heads, dropout)
        self.a2v = _CrossBlock(dim, n_heads, dropout)
        self.pool_v, self.pool_a = AttentionPool(dim), AttentionPool(dim)
        self.head = ConcatFusion(dim, dropout)

    def forward(self, v_tokens, v_pooled, a_tokens, a_pooled) -> torch.Tensor:  # noqa: ANN001
        v = self.v2a(v_tokens, a_tokens)  # [B, T, D]
        a = self.a2v(a_tokens, v_tokens)  # [B, F, D]
        return self.head(None, self.pool_v(v)[0], None, self.pool_a(a)[0])


def build_fusion(kind: str, dim: int, n_modalities: int, n_heads: int, dropout: float) -> nn.Module:
    """The fusion module named ``kind`` (one of :data:`FUSIONS`)."""
    if kind == "late":
        return LateFusion(n_modalities)
    if kind == "concat":
        return ConcatFusion(dim, dropout)
    if kind == "cross_attention":
        return CrossAttentionFusion(dim, n_heads, dropout)
    raise ValueError(f"unknown fusion {kind!r}; choose one of {', '.join(FUSIONS)}")


def lower_face(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Mouth region guess when no mouth crops are given: the lower-middle part of the face crops.

    ``frames [B, T, 3, H, W]`` -> ``[B, T, 3, size, size]``.
    """
    b, t, c, h, w = frames.shape
    region = frames[..., int(0.6 * h) : int(0.95 * h), int(0.25 * w) : int(0.75 * w)]
    return resize_frames(region, size)


def resize_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, T, C, h, w]`` -> ``[B, T, C, size, size]`` (bilinear; unchanged when already that size)."""
    b, t = x.shape[:2]
    if x.shape[-2:] == (size, size):
        return x
    y = F.interpolate(x.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False)
    return y.reshape(b, t, *y.shape[1:])


def adaptive_mean(x: torch.Tensor, n: int) -> torch.Tensor:
    """``F.adaptive_avg_pool1d(x, n)`` (same bins: ``floor(i L / n)`` to ``ceil((i + 1) L / n)``) as a
    matmul, so that a symbolic ``n`` exports (torch.export / ONNX with a dynamic time axis).

    ``x [B, C, L]`` -> ``[B, C, n]``.
    """
    length = x.shape[-1]
    i = torch.arange(n, device=x.device)
    start = torch.div(i * length, n, rounding_mode="floor")  # [n]
    end = torch.div((i + 1) * length + n - 1, n, rounding_mode="floor")  # [n], ceil
    pos = torch.arange(length, device=x.device)[:, None]  # [L, 1]
    bins = ((pos >= start[None]) & (pos < end[None])).to(x.dtype)  # [L, n]
    return x @ (bins / bins.sum(0, keepdim=True))


def _c2(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _c1(cin: int, cout: int, k: int, s: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)
    )


class SyncHead(nn.Module):
    """SyncNet-style lip-sync head (Chung & Zisserman 2016): embeddings of mouth crops and of the audio
    around each frame; their cosine similarity per frame gives the out-of-sync logit.

    Args:
        n_mels: mel bands of the log-mel input.
        dim: embedding size.
        mouth_size: side the mouth crops are resized to.
        width: channels of the first convolution.
    """

    def __init__(self, n_mels: int = 64, dim: int = 128, mouth_size: int = 48, width: int = 32) -> None:
        super().__init__()
        self.mouth_size = mouth_size
        self.visual = nn.Sequential(_c2(3, width), _c2(width, 2 * width), _c2(2 * width, 4 * width))
        self.visual_t = nn.Conv1d(4 * width, dim, 3, 1, 1)  # short-range lip motion over frames
        self.audio = nn.Sequential(_c1(n_mels, 2 * width, 5), _c1(2 * width, 4 * width, 5, 2))
        self.audio_t = nn.Conv1d(4 * width, dim, 3, 1, 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(5.0)))
        self.bias = nn.Parameter(torch.zeros(()))

    def embed(self, mouths: torch.Tensor, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mouths [B, T, 3, m, m]``, ``logmel [B, M, F]`` -> unit embeddings ``[B, T, dim]`` each."""
        b, t = mouths.shape[:2]
        m = resize_frames(mouths, self.mouth_size).flatten(0, 1)  # [B*T, 3, m, m]
        v = self.visual(m).mean(dim=(2, 3)).reshape(b, t, -1)  # [B, T, C]
        v = self.visual_t(v.transpose(1, 2)).transpose(1, 2)  # [B, T, dim]
        mel = (logmel - logmel.mean(dim=(1, 2), keepdim=True)) / (logmel.std(dim=(1, 2), keepdim=True) + 1e-5)
        a = adaptive_mean(self.audio(mel), t)  # [B, C, T]: the audio under each frame
        a = self.audio_t(a).transpose(1, 2)  # [B, T, dim]
        return F.normalize(v, dim=-1), F.normalize(a, dim=-1)

    def forward(self, mouths: torch.Tensor, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """-> ``sync_logit [B]`` and ``frame_sync_logits [B, T]`` (high = out of sync), embeddings."""
        v, a = self.embed(mouths, logmel)
        sim = (v * a).sum(-1)  # [B, T] cosine
        frame = self.bias - self.log_scale.exp() * sim  # [B, T]
        return {"sync_logit": frame.mean(dim=1), "frame_sync_logits": frame, "video_emb": v, "audio_emb": a}


def contrastive_loss(
    video_emb: torch.Tensor,
    audio_emb: torch.Tensor,
    valid: torch.Tensor | None = None,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Symmetric InfoNCE between per-frame mouth and audio embeddings of real (in-sync) samples.

    The positive of frame ``(b, t)`` is its own audio; the negatives are the audio of every other frame
    of the batch: the same clip at other times (shifted audio) and other clips (in-batch negatives).

    Args:
        video_emb: ``[B, T, D]`` unit embeddings (``SyncHead`` outputs ``sync_video_emb``).
        audio_emb: ``[B, T, D]``.
        valid: ``[B]`` bool rows to use (real samples with audio); ``None`` = all.
        temperature: softmax temperature.

    Returns:
        A scalar loss (0 with a graph when no row is valid).
    """
    if valid is not None:
        video_emb, audio_emb = video_emb[valid], audio_emb[valid]
    v, a = video_emb.flatten(0, 1), audio_emb.flatten(0, 1)  # [N, D]
    if v.shape[0] < 2:
        return (video_emb.sum() + audio_emb.sum()) * 0.0
    logits = v @ a.T / temperature  # [N, N]
    target = torch.arange(v.shape[0], device=v.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
