"""Inference-time rewrites of trained models that keep their outputs (up to float rounding).

Imports only torch: a model that does not use timm (AASIST, say) is not made to import it.
"""

from __future__ import annotations

from torch import nn

# (convolution, norm) attribute pairs of timm's EfficientNet-family modules, the norm right after the conv
_CONV_NORM = {
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    "EdgeResidual": (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
    "ConvBnAct": (("conv", "bn1"),),
}


def fold_batchnorm(model: nn.Module) -> int:
    """Fold the eval-mode batch norms of timm's EfficientNet-family blocks into the convolutions before
    them, for inference: the same outputs up to float rounding, one pass over each activation less.

    A folded norm is replaced by what follows it in timm's ``BatchNormAct2d`` (dropout, activation). Norms
    in train mode, or without running statistics, are left alone. Returns how many were folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    folded = 0
    for module in list(model.modules()):
        for conv_name, norm_name in _CONV_NORM.get(type(module).__name__, ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
                continue
            if bn.training or bn.running_mean is None:
                continue
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            acts = hasattr(bn, "act") and hasattr(bn, "drop")  # timm's BatchNormAct2d: norm, drop, act
            rest = nn.Sequential(bn.drop, bn.act) if acts else nn.Identity()
            setattr(module, norm_name, rest)
            folded += 1
    return folded
