"""Temporal modelling over per-frame features: a pre-norm transformer + attention pooling, and the
segment pooling shared by every model (``K`` segments of ``segment_seconds`` each)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def num_segments(n_steps: int, rate: float, segment_seconds: float) -> int:
    """Segments in a window of ``n_steps`` steps at ``rate`` steps/s (= ``PreprocessConfig.num_segments``)."""
    return max(1, round(n_steps / rate / segment_seconds))


def segment_matrix(n_steps: int, k: int, device: torch.device | None = None) -> torch.Tensor:
    """``[n_steps, k]`` averaging matrix: step ``t`` belongs to segment ``floor(t * k / n_steps)``.

    Segments with no step (``k > n_steps``) take the step nearest their centre.
    """
    seg = torch.arange(k, device=device)
    if k <= n_steps:
        owner = torch.div(torch.arange(n_steps, device=device) * k, n_steps, rounding_mode="floor")
        onehot = (owner[:, None] == seg[None, :]).float()  # [n, k]
    else:
        nearest = ((seg.float() + 0.5) * n_steps / k).floor().long().clamp(max=n_steps - 1)
        onehot = (torch.arange(n_steps, device=device)[:, None] == nearest[None, :]).float()
    return onehot / onehot.sum(0, keepdim=True).clamp(min=1.0)


def segment_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of ``x [B, N, ...]`` over the steps of each of ``k`` contiguous segments -> ``[B, k, ...]``."""
    m = segment_matrix(x.shape[1], k, x.device).to(x.dtype)  # [N, k]
    return torch.einsum("bn...,nk->bk...", x, m)


class AttentionPool(nn.Module):
    """Softmax attention over steps: ``[B, T, D]`` -> pooled ``[B, D]`` and weights ``[B, T]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.score(x).squeeze(-1)  # [B, T]
        if mask is not None:
            s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        w = torch.softmax(s, dim=1)  # [B, T]
        return torch.einsum("bt,btd->bd", w, x), w


class TemporalEncoder(nn.Module):
    """Project per-frame features, add a learned positional embedding, run a pre-norm transformer
    encoder and pool the frames with attention.

    Args:
        in_dim: per-frame feature size.
        d_model: token size.
        n_layers: transformer layers (0 = no temporal mixing: projection + pooling only).
        n_heads: attention heads.
        dropout: dropout in the encoder layers.
        max_len: longest sequence with its own position (longer ones interpolate the embedding).
    """

    def __init__(
        self,
        in_dim: int,
        d_model: int = 256,
        n_layers: int = 4,
        n_heads: int = 4,
        dropout: float = 0.1,
        max_len: int = 128,
    ) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, d_model))
        self.pos = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.encoder: nn.Module | None = None
        if n_layers > 0:
            layer = nn.TransformerEncoderLayer(
                d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )  # fmt: skip
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.pool = AttentionPool(d_model)

    def positions(self, n: int) -> torch.Tensor:
        """``[1, n, D]`` positional embedding (linearly interpolated when ``n > max_len``)."""
        if n <= self.pos.shape[1]:
            return self.pos[:, :n]
        return F.interpolate(self.pos.transpose(1, 2), size=n, mode="linear").transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [B, T, in_dim]`` -> tokens ``[B, T, D]``, pooled ``[B, D]``, attention ``[B, T]``."""
        h = self.proj(x) + self.positions(x.shape[1])  # [B, T, D]
        if self.encoder is not None:
            h = self.encoder(h)
        h = self.norm(h)
        pooled, att = self.pool(h)
        return h, pooled, att
