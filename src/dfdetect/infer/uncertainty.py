"""Stochastic passes of a model over windows already built: Monte-Carlo dropout, else test-time augmentation.

The scan core (:func:`dfdetect.infer.score.forward_passes`) builds each batch of window tensors once and
calls :func:`stochastic_outputs` for the ``N`` extra passes, so the passes share decoding, face detection,
cropping and tensor building: only the model reruns. What varies between passes:

- ``dropout`` (Monte-Carlo dropout): every ``nn.Dropout``-family module with ``p > 0`` is put in train
  mode for the pass (BatchNorm and everything else stay in eval mode). PyTorch's fused inference path of
  ``nn.TransformerEncoderLayer`` skips its dropout modules, so it is switched off during the passes
  (``torch.backends.mha.set_fastpath_enabled``). Attention-weight dropout (``nn.MultiheadAttention``'s
  ``dropout`` argument) is not a module and stays off.
- ``tta`` (test-time augmentation, for models without active dropout): cheap, label-preserving changes
  of the inputs: horizontal flip of the face and mouth crops (every other pass), a down-and-up rescale
  (factor 0.8-1.0: resolution loss as in re-uploads), a small brightness/contrast jitter (±4 %, ±7 %),
  and for audio a gain of 0.7-1.0 and a polarity inversion (inaudible).

Passes are seeded (pass index, batch index), so a scan with uncertainty is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("auto", "dropout", "tta")


@dataclass(frozen=True)
class PassPlan:
    """How to run the stochastic passes: ``n`` passes with ``method`` (``dropout`` or ``tta``)."""

    n: int
    method: str
    seed: int = 0


def dropout_modules(model: Any) -> list[Any]:
    """The model's ``nn.Dropout``-family modules with ``p > 0`` (empty for a model without dropout)."""
    from torch import nn

    modules = getattr(model, "modules", None)
    if modules is None:
        return []
    return [m for m in modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


def plan_passes(model: Any, n: int, method: str = "auto", seed: int = 0) -> PassPlan | None:
    """The :class:`PassPlan` of ``n`` passes (None when ``n`` is 0).

    ``auto`` is Monte-Carlo dropout when the model has dropout, else test-time augmentation.

    Raises:
        ValueError: ``n`` is negative or 1 (a spread needs at least 2 passes), ``method`` is unknown, or
            ``dropout`` is asked of a model without dropout.
    """
    if n == 0:
        return None
    if n < 2:
        raise ValueError(f"uncertainty needs at least 2 passes (a spread of one is meaningless), got {n}")
    if method not in METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; choose one of {', '.join(METHODS)}")
    has_dropout = bool(dropout_modules(model))
    if method == "dropout" and not has_dropout:
        raise ValueError("this model has no dropout: use the 'tta' (test-time augmentation) method")
    if method == "auto":
        method = "dropout" if has_dropout else "tta"
    return PassPlan(int(n), method, int(seed))


@contextmanager
def dropout_active(model: Any) -> Iterator[None]:
    """Dropout modules in train mode (and the transformer fast path off) inside the block; restored after."""
    import torch

    modules = dropout_modules(model)
    modes = [m.training for m in modules]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        for m in modules:
            m.train(True)
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)
        torch.backends.mha.set_fastpath_enabled(fastpath)


def tta_params(n: int, seed: int = 0) -> list[dict[str, float]]:
    """Augmentation of each of ``n`` passes: ``flip`` (0/1), ``scale``, ``contrast``, ``brightness``,
    ``gain``, ``invert`` (0/1). Pass 0 is flipped, pass 1 not, and so on."""
    rng = np.random.default_rng(seed + 1)
    return [
        {
            "flip": float(i % 2 == 0),
            "scale": float(rng.uniform(0.8, 1.0)),
            "contrast": float(rng.uniform(0.93, 1.07)),
            "brightness": float(rng.uniform(-0.04, 0.04)),
            "gain": float(rng.uniform(0.7, 1.0)),
            "invert": float(rng.random() < 0.5),
        }
        for i in range(n)
    ]


def _image_tta(x: Any, aug: dict[str, float], mean: Any, std: Any) -> Any:
    """One augmentation of normalised crops ``x`` [B, T, 3, H, W] (same shape back)."""
    import torch.nn.functional as F

    b, t, c, h, w = x.shape
    if aug["flip"]:
        x = x.flip(-1)
    pixels = x * std + mean  # [B, T, 3, H, W] in [0, 1]
    if aug["scale"] < 0.999:
        flat = pixels.reshape(b * t, c, h, w)
        size = (max(8, round(h * aug["scale"])), max(8, round(w * aug["scale"])))
        small = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
        pixels = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).reshape(
            b, t, c, h, w
        )
    pixels = ((pixels - 0.5) * aug["contrast"] + 0.5 + aug["brightness"]).clamp(0.0, 1.0)
    return (pixels - mean) / std


def augment(x: dict[str, Any], aug: dict[str, float], pre: Any) -> dict[str, Any]:
    """The model inputs ``x`` (``frames``, ``mouths``, ``audio``, ``audio_mask``) under ``aug``."""
    import torch

    frames = x["frames"]
    mean = torch.tensor(pre.mean, dtype=frames.dtype, device=frames.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=frames.dtype, device=frames.device).view(1, 1, 3, 1, 1)
    out = dict(x)
    out["frames"] = _image_tta(frames, aug, mean, std)  # [B, T, 3, H, W]
    if x["mouths"].numel():
        out["mouths"] = _image_tta(x["mouths"], aug, mean, std)  # [B, T, 3, m, m]
    out["audio"] = x["audio"] * aug["gain"] * (-1.0 if aug["invert"] else 1.0)  # [B, S]
    return out


def _fork_rng(device: Any) -> Any:
    import torch

    on_cuda = getattr(device, "type", str(device)).startswith("cuda")
    return torch.random.fork_rng(devices=[device] if on_cuda else [])


def stochastic_outputs(
    model: Any, call: Any, x: dict[str, Any], plan: PassPlan, batch: int, pre: Any
) -> list:
    """The model's outputs on one batch ``x`` for each pass of ``plan``.

    Args:
        model: the model (in eval mode).
        call: ``call(model, x) -> outputs`` (the scan core's forward of one batch).
        x: the batch's model inputs, built once for every pass.
        plan: the passes.
        batch: index of the batch (seeds the dropout masks).
        pre: the checkpoint's preprocessing (mean/std of the crops, for ``tta``).

    Returns:
        ``plan.n`` outputs of ``call``, one per pass.
    """
    import torch

    outs = []
    if plan.method == "dropout":
        with dropout_active(model), _fork_rng(x["frames"].device):
            for i in range(plan.n):
                torch.manual_seed(plan.seed * 1_000_003 + i * 10_007 + batch)
                outs.append(call(model, x))
        return outs
    for aug in tta_params(plan.n, plan.seed):
        outs.append(call(model, augment(x, aug, pre)))
    return outs
