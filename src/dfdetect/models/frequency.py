"""Frequency branch in the spirit of F3Net (Qian et al. 2020).

- **FAD** (frequency-aware decomposition): the 2-D DCT of each crop is split into low / mid / high
  bands (disjoint masks on ``i + j``), each band is brought back to pixels with the inverse DCT (the
  three band images sum back to the input exactly), plus a learnable per-band filter residual.
- **LFS** (local frequency statistics): the log-magnitude DCT of 8x8 blocks of the grey crop, averaged
  into ``n_stats`` bands per block.
- Two small CNNs over both, pooled and concatenated -> one embedding per frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BAND_EDGES = (1 / 2.82, 1 / 2)  # F3Net's low/mid and mid/high cut-offs, as fractions of the crop side


def dct_matrix(
    n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``C [n, n]``: ``C @ x`` is the DCT of ``x``, ``C.T @ X`` its inverse."""
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]  # frequency
    i = torch.arange(n, dtype=torch.float64, device=device)[None, :]  # sample
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II over the last two dims of ``x [..., H, W]`` (orthonormal)."""
    ch = dct_matrix(x.shape[-2], x.device, x.dtype)
    cw = ch if x.shape[-1] == x.shape[-2] else dct_matrix(x.shape[-1], x.device, x.dtype)
    return ch @ x @ cw.T


def idct2(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2`."""
    ch = dct_matrix(x.shape[-2], x.device, x.dtype)
    cw = ch if x.shape[-1] == x.shape[-2] else dct_matrix(x.shape[-1], x.device, x.dtype)
    return ch.T @ x @ cw


def band_masks(h: int, w: int, edges: tuple[float, ...] = BAND_EDGES) -> torch.Tensor:
    """``[len(edges) + 1, h, w]`` disjoint 0/1 masks on the DCT plane by ``(i/h + j/w) / 2``
    (low frequencies first); they sum to all ones."""
    d = (torch.arange(h)[:, None] / h + torch.arange(w)[None, :] / w) / 2  # [h, w] in [0, 1)
    bounds = (0.0, *edges, math.inf)
    return torch.stack(
        [((d >= lo) & (d < hi)).float() for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    )


def band_split(x: torch.Tensor, edges: tuple[float, ...] = BAND_EDGES) -> torch.Tensor:
    """Split images ``x [N, C, H, W]`` into frequency bands ``[N, n_bands, C, H, W]`` (sum = ``x``)."""
    masks = band_masks(x.shape[-2], x.shape[-1], edges).to(x.device, x.dtype)  # [n, H, W]
    coef = dct2(x)  # [N, C, H, W]
    lower = idct2(coef[:, None] * masks[None, :-1, None])  # [N, n-1, C, H, W]
    highest = x - lower.sum(dim=1)  # the DCT is orthonormal: the bands sum to x
    return torch.cat([lower, highest[:, None]], dim=1)


def local_stats(gray: torch.Tensor, block: int = 8, n_stats: int = 6, eps: float = 1e-4) -> torch.Tensor:
    """LFS: ``gray [N, 1, H, W]`` -> ``[N, n_stats, H//block, W//block]`` mean log-magnitude DCT of
    each block in ``n_stats`` bands of ``i + j``."""
    n, _, h, w = gray.shape
    hb, wb = h // block, w // block
    x = gray[:, :, : hb * block, : wb * block]
    blocks = x.reshape(n, hb, block, wb, block).permute(0, 1, 3, 2, 4)  # [N, hb, wb, b, b]
    mag = torch.log(dct2(blocks).abs() + eps)  # [N, hb, wb, b, b]
    d = torch.arange(block)[:, None] + torch.arange(block)[None, :]  # [b, b] in 0 .. 2b-2
    band = torch.div(d * n_stats, 2 * block - 1, rounding_mode="floor")  # [b, b] in 0 .. n_stats-1
    onehot = F.one_hot(band.flatten(), n_stats).to(mag.dtype).to(mag.device)  # [b*b, n_stats]
    onehot = onehot / onehot.sum(0, keepdim=True)
    stats = mag.reshape(n, hb, wb, block * block) @ onehot  # [N, hb, wb, n_stats]
    return stats.permute(0, 3, 1, 2)


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class FrequencyBranch(nn.Module):
    """Per-frame frequency embedding: ``[N, 3, H, W]`` -> ``[N, out_dim]``.

    Args:
        out_dim: embedding size (half from the FAD CNN, half from the LFS CNN).
        width: channels of the first FAD convolution.
        n_stats: LFS bands per 8x8 block.
    """

    def __init__(self, out_dim: int = 256, width: int = 32, n_stats: int = 6) -> None:
        super().__init__()
        n_bands = len(BAND_EDGES) + 1
        self.n_stats = n_stats
        self.band_gain = nn.Parameter(torch.zeros(n_bands))  # learnable per-band filter (F3Net style)
        half = out_dim // 2
        self.fad = nn.Sequential(
            _conv(3 * n_bands, width, 2), _conv(width, 2 * width, 2),
            _conv(2 * width, 4 * width, 2), _conv(4 * width, half, 2),
        )  # fmt: skip
        self.lfs = nn.Sequential(
            nn.BatchNorm2d(n_stats), _conv(n_stats, 2 * width, 1), _conv(2 * width, half, 2)
        )
        self.out_dim = 2 * half
        self.cam_layer = self.fad[-1]  # spatial map of the crop's bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, 3, H, W]`` (normalised crops) -> ``[N, out_dim]``."""
        bands = band_split(x.float())  # [N, 3, C, H, W] exact decomposition
        gain = 1.0 + torch.tanh(self.band_gain).to(bands.dtype)  # [3] in (0, 2)
        bands = bands * gain[None, :, None, None, None]
        fad = self.fad(bands.flatten(1, 2).to(x.dtype)).mean(dim=(2, 3))  # [N, half]
        gray = x.float().mean(dim=1, keepdim=True)  # [N, 1, H, W]
        lfs = self.lfs(local_stats(gray, n_stats=self.n_stats).to(x.dtype)).mean(dim=(2, 3))  # [N, half]
        return torch.cat([fad, lfs], dim=1)
