"""Output heads: binary (fake logit), manipulation type (hierarchical), frame and segment logits."""

from __future__ import annotations

import torch
from torch import nn

from dfdetect.models.temporal import segment_pool


class BinaryHead(nn.Module):
    """``[B, D]`` -> fake logit ``[B]`` (high = fake)."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class TypeHead(nn.Module):
    """Manipulation type given fake: ``[B, D]`` -> ``type_logits [B, M]``.

    Hierarchical use: the binary head decides real vs fake; this head's softmax is the type
    distribution *given* fake (train it on fake samples only), see :func:`hierarchical_probs`.
    """

    def __init__(self, dim: int, num_types: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_types < 1:
            raise ValueError(f"num_types must be >= 1, got {num_types}")
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_types))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hierarchical_probs(logit: torch.Tensor, type_logits: torch.Tensor) -> torch.Tensor:
    """``[B, 1 + M]`` probabilities: real, then each type (``p_fake * p(type | fake)``); rows sum to 1."""
    p_fake = torch.sigmoid(logit)[:, None]  # [B, 1]
    return torch.cat([1 - p_fake, p_fake * torch.softmax(type_logits, dim=-1)], dim=-1)


class SegmentHead(nn.Module):
    """Tokens ``[B, N, D]`` -> per-step logits ``[B, N]`` and per-segment logits ``[B, K]`` (the steps of
    each segment mean-pooled, then classified)."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.step = nn.Linear(dim, 1)
        self.segment = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 1))

    def forward(self, tokens: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        steps = self.step(tokens).squeeze(-1)  # [B, N]
        segments = self.segment(segment_pool(tokens, k)).squeeze(-1)  # [B, K]
        return steps, segments
