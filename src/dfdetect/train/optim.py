"""AdamW over named parameter groups + per-iteration LR schedules (torch.optim.lr_scheduler)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

from dfdetect.config import OptimConfig


def named_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's ``parameter_groups()`` when it has them, else one group ``all``.

    Parameters not listed in any group are added to ``fusion`` (or ``all``) so nothing is forgotten.
    """
    if not hasattr(model, "parameter_groups"):
        return {"all": list(model.parameters())}
    groups = {k: list(v) for k, v in model.parameter_groups().items()}
    seen = {id(p) for ps in groups.values() for p in ps}
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.setdefault("fusion", []).extend(rest)
    return groups


def set_trainable(model: nn.Module, trainable: Iterable[str]) -> list[str]:
    """Freeze every parameter, then unfreeze the named groups (``all`` or a missing group API = all).

    Returns the group names actually trainable. Raises ``ValueError`` when a name is unknown.
    """
    groups = named_groups(model)
    wanted = set(trainable)
    if "all" in wanted or set(groups) == {"all"}:
        wanted = set(groups)
    unknown = wanted - set(groups)
    if unknown:
        raise ValueError(f"unknown parameter groups {sorted(unknown)}; the model has {sorted(groups)}")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in wanted:
        for p in groups[name]:
            p.requires_grad_(True)
    return sorted(wanted)


def build_optimizer(
    groups: Mapping[str, list[nn.Parameter]], cfg: OptimConfig, lr: float | None = None
) -> torch.optim.AdamW:
    """AdamW with one decay and one no-decay (biases, norms: 1-D tensors) group per named group.

    Frozen parameters (``requires_grad=False``) are left out.
    """
    lr = lr or cfg.lr
    param_groups = []
    for name, params in groups.items():
        live = [p for p in params if p.requires_grad]
        decay = [p for p in live if p.ndim > 1]
        no_decay = [p for p in live if p.ndim <= 1]
        if decay:
            param_groups.append({"params": decay, "weight_decay": cfg.weight_decay, "name": name})
        if no_decay:
            param_groups.append({"params": no_decay, "weight_decay": 0.0, "name": f"{name}/no_decay"})
    if not param_groups:
        raise ValueError("no trainable parameters: check the stage's 'trainable' groups")
    return torch.optim.AdamW(param_groups, lr=lr, betas=cfg.betas)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> LRScheduler:
    """Per-iteration schedule: linear warm-up then cosine / cosine with warm restarts / constant.

    Args:
        total_steps: optimizer steps of the whole (stage's) training, warm-up included.
    """
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    main_steps = max(total_steps - warmup, 1)
    base_lr = optimizer.param_groups[0]["lr"]
    eta_min = base_lr * cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=eta_min)
    elif cfg.schedule == "cosine_restarts":
        main = CosineAnnealingWarmRestarts(optimizer, T_0=cfg.T_0, T_mult=cfg.T_mult, eta_min=eta_min)
    else:
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, schedulers=[ramp, main], milestones=[warmup])
