"""White-box L-infinity attacks on face crops (FGSM, PGD), shared by evaluation and adversarial training.

The attacks work in **pixel space**: ``frames [B, T, 3, H, W]`` and ``mouths [B, T, 3, m, m]`` in
``[0, 1]``, before the model's normalisation ``(x - mean) / std``, so ``eps = 2/255`` means two 8-bit levels
whatever the model's mean and std. They maximise the binary cross-entropy of the true label on one output
head (``logit`` by default): fakes are pushed toward real and reals toward fake in the same batch. Other
model inputs (``audio``, ``audio_mask``) pass through untouched. The model is used as it is: callers put it
in eval mode (dropout off, batch-norm statistics frozen) while crafting.

Only torch is needed, so ``train`` and ``eval`` both import it (see ``tests/test_imports.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PIXEL_KEYS = ("frames", "mouths")
ATTACKS = ("fgsm", "pgd")


def _stats(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-channel ``[3, 1, 1]`` tensor of ``values`` (mean or std) on ``like``'s device and dtype."""
    return torch.as_tensor(tuple(values), dtype=like.dtype, device=like.device).view(3, 1, 1)


def to_pixels(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised ``[..., 3, H, W]`` model input -> pixels in ``[0, 1]``."""
    return (x * _stats(std, x) + _stats(mean, x)).clamp(0.0, 1.0)


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Pixels ``[..., 3, H, W]`` in ``[0, 1]`` -> the model's normalised input."""
    return (x - _stats(mean, x)) / _stats(std, x)


def model_batch(
    pixels: dict[str, Any],
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``model.forward`` from a pixel-space batch.

    ``frames``/``mouths`` are normalised with ``mean``/``std`` (and ``frames`` bilinearly resized to
    ``size`` when given and different: a transfer source trained at another crop size); other entries are
    passed as they are; ``None`` values are dropped.
    """
    out = {}
    for key, value in pixels.items():
        if value is None:
            continue
        if key == "frames" and size is not None and value.shape[-1] != size:
            b, t = value.shape[:2]
            flat = F.interpolate(value.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False)
            value = flat.view(b, t, *flat.shape[1:])  # [B, T, 3, size, size]
        out[key] = normalise(value, mean, std) if key in PIXEL_KEYS else value
    return out


def attack_loss(out: dict[str, torch.Tensor], target: torch.Tensor, head: str = "logit") -> torch.Tensor:
    """Summed BCE of ``out[head]`` ``[B]`` against ``target`` ``[B]`` (0 real / 1 fake; < 0 ignored)."""
    logit = out[head].float()  # [B]
    known = target >= 0
    if not bool(known.any()):
        return logit.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logit[known], target[known].float(), reduction="sum")


def pgd(
    model: nn.Module | Any,
    batch: dict[str, Any],
    target: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    size: int | None = None,
    head: str = "logit",
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Projected gradient descent (Madry et al.) on the pixel inputs of ``batch``, within ``eps`` (L-inf).

    Args:
        model: ``model(frames=..., audio=..., audio_mask=..., mouths=...) -> {head: [B], ...}``.
        batch: model inputs with ``frames`` (and ``mouths``) as pixels in ``[0, 1]``.
        target: ``[B]`` true labels (0 real, 1 fake; < 0: not attacked); their loss is maximised.
        eps: L-inf budget in pixel units (``2/255`` = two 8-bit levels). 0 returns ``batch`` unchanged.
        steps: gradient-sign steps.
        step_size: pixels per step (default ``2.5 * eps / steps``).
        mean, std, size: how ``model`` wants its frames (see :func:`model_batch`).
        head: the output whose loss is maximised.
        random_start: start from uniform noise in the eps ball (drawn from ``generator``).
        generator: CPU generator of the random start (None: torch's global RNG).

    Returns:
        A copy of ``batch`` whose ``frames``/``mouths`` are the adversarial pixels (detached, in
        ``[0, 1]``, within ``eps`` of the originals). A pixel input the head does not depend on is kept.
    """
    if eps < 0 or steps < 1:
        raise ValueError(f"an attack needs eps >= 0 and steps >= 1, got eps={eps}, steps={steps}")
    keys = [k for k in PIXEL_KEYS if batch.get(k) is not None]
    if eps == 0 or not keys:
        return dict(batch)
    alpha = float(step_size) if step_size else 2.5 * eps / steps
    clean = {k: batch[k].detach() for k in keys}
    delta = {k: _start(clean[k], eps, random_start, generator) for k in keys}
    with torch.enable_grad():
        for _ in range(steps):
            for d in delta.values():
                d.requires_grad_(True)
            adv = {**batch, **{k: clean[k] + delta[k] for k in delta}}
            loss = attack_loss(model(**model_batch(adv, mean, std, size)), target, head)
            grads = torch.autograd.grad(loss, list(delta.values()), allow_unused=True)
            for (k, d), g in zip(list(delta.items()), grads, strict=True):
                if g is None:  # the model ignores this input (e.g. mouths without a lip-sync head)
                    del delta[k]
                    continue
                step = (d.detach() + alpha * g.sign()).clamp(-eps, eps)
                delta[k] = (clean[k] + step).clamp(0.0, 1.0) - clean[k]  # stay a valid image
    return {**batch, **{k: (clean[k] + delta[k].detach()).clamp(0.0, 1.0) for k in keys if k in delta}}


def _start(x: torch.Tensor, eps: float, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Initial perturbation of ``x``: zeros, or uniform in ``[-eps, eps]`` clipped to valid pixels."""
    if not random:
        return torch.zeros_like(x)
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1
    return (x + eps * noise).clamp(0.0, 1.0) - x


def fgsm(
    model: nn.Module | Any, batch: dict[str, Any], target: torch.Tensor, *, eps: float, **kw: Any
) -> dict[str, Any]:
    """Fast gradient sign method (Goodfellow et al.): one step of size ``eps`` from the clean input.

    Same arguments and result as :func:`pgd` (``steps``, ``step_size`` and ``random_start`` are fixed).
    """
    for fixed in ("steps", "step_size", "random_start"):
        kw.pop(fixed, None)
    return pgd(model, batch, target, eps=eps, steps=1, step_size=eps, random_start=False, **kw)


def attack(kind: str, model: nn.Module | Any, batch: dict[str, Any], target: torch.Tensor, **kw: Any) -> dict:
    """:func:`fgsm` or :func:`pgd` by name."""
    if kind not in ATTACKS:
        raise ValueError(f"unknown attack {kind!r}: choose {' or '.join(ATTACKS)}")
    return (fgsm if kind == "fgsm" else pgd)(model, batch, target, **kw)
