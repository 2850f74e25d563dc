"""Optimizer groups, stage freezing and LR schedule shapes."""

from __future__ import annotations

import math

import pytest
import torch

from dfdetect.config import OptimConfig
from dfdetect.train.optim import build_optimizer, build_scheduler, named_groups, set_trainable

from .standins import TinyAV


def _lrs(cfg: OptimConfig, steps: int) -> list[float]:
    opt = build_optimizer({"all": list(torch.nn.Linear(2, 2).parameters())}, cfg)
    sched = build_scheduler(opt, cfg, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine():
    lrs = _lrs(OptimConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.0), 20)
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # monotone decay after warm-up
    # closed form of the cosine part: lr_k = 0.5 (1 + cos(pi k / 16)) for k = 0..15
    assert lrs[4 + 8] == pytest.approx(0.5, abs=1e-6)
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)), abs=1e-6)


def test_cosine_restarts_and_constant():
    lrs = _lrs(OptimConfig(lr=1.0, warmup_steps=0, schedule="cosine_restarts", T_0=5, min_lr_ratio=0.0), 15)
    assert lrs[0] == lrs[5] == lrs[10] == pytest.approx(1.0)
    assert lrs[4] < 0.1 and lrs[9] < 0.1
    assert _lrs(OptimConfig(lr=0.5, warmup_steps=2, schedule="constant"), 6)[2:] == pytest.approx([0.5] * 4)


def test_groups_no_decay_and_freezing():
    model = TinyAV()
    assert set(named_groups(model)) == {"video", "audio", "fusion"}
    assert set_trainable(model, ["video"]) == ["video"]
    opt = build_optimizer(named_groups(model), OptimConfig(weight_decay=0.1), lr=0.01)
    names = {g["name"]: g for g in opt.param_groups}
    assert set(names) == {"video", "video/no_decay"}
    assert names["video/no_decay"]["weight_decay"] == 0.0 and names["video"]["weight_decay"] == 0.1
    assert all(g["lr"] == 0.01 for g in opt.param_groups)
    assert not any(p.requires_grad for p in model.fusion.parameters())
    assert set_trainable(model, ["all"]) == ["audio", "fusion", "video"]
    with pytest.raises(ValueError, match="unknown parameter groups"):
        set_trainable(model, ["lips"])
    set_trainable(model, ["fusion"])
    for p in model.fusion.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(named_groups(model), OptimConfig())
