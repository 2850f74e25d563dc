"""Greedy model soup (Wortsman et al. 2022) of checkpoints fine-tuned from the same pretrained weights.

Each checkpoint is scored on the experiment's validation set exactly as training validates (the ``val``
split of the data config with its seeded pseudo-fakes; window AUC). From the best to the worst, a checkpoint
joins the soup (the uniform average of the members' weights) only when the soup's validation AUC does not
drop. Test sets are never looked at. The soup keeps the first member's metadata (preprocessing, config) and
no calibration: fit the temperature afterwards on held-out data (``dfdetect eval --calibrate``).

    dfdetect soup --config runs/A/config.yaml runs/A/checkpoints/best.pt runs/B/checkpoints/best.pt \\
        --out runs/soup/soup.pt
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


@dataclass
class SoupResult:
    """The members chosen (checkpoint paths), the soup's validation AUC, and every step tried."""

    members: list[str]
    val_auc: float
    steps: list[dict[str, Any]] = field(default_factory=list)


def average(states: Sequence[State]) -> State:
    """The uniform average of state dicts (integer buffers such as batch counters: the first's)."""
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
        for k, v in states[0].items()
    }


def greedy(states: Sequence[State], score: Callable[[State], float], names: Sequence[str]) -> SoupResult:
    """Greedy soup: start from the best single state, add each next-best one while the score holds."""
    singles = [score(s) for s in states]
    order = [int(i) for i in np.argsort(singles)[::-1]]
    members, best = [order[0]], singles[order[0]]
    steps: list[dict[str, Any]] = [
        {"checkpoint": names[i], "val_auc": singles[i]} for i in range(len(states))
    ]
    for i in order[1:]:
        trial = score(average([states[j] for j in [*members, i]]))
        steps.append({"try": [names[j] for j in [*members, i]], "val_auc": trial})
        if trial >= best:
            members, best = [*members, i], trial
    return SoupResult([names[j] for j in members], best, steps)


@torch.no_grad()
def val_auc(model: torch.nn.Module, dataset: Any, task: Any, batch_size: int = 32) -> float:
    """Window AUC of ``model`` on ``dataset``, through the task's own validation step (CPU)."""
    from dfdetect.data.dataset import collate
    from dfdetect.metrics import auc

    model.eval()
    labels, scores = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        out = task.validation_step(model, batch, torch.device("cpu"))
        labels.append(out["label"].numpy())
        scores.append(out["score"].numpy())
    return auc(np.concatenate(labels), np.concatenate(scores))


def make_soup(
    config: str | os.PathLike, checkpoints: Sequence[str | os.PathLike], out: str | os.PathLike
) -> SoupResult:
    """Score ``checkpoints`` on the validation split of the experiment ``config``, write the greedy soup
    (float16, training state stripped) to ``out`` atomically, and return what was chosen."""
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.config import load_config
    from dfdetect.train.run import build_dataset
    from dfdetect.train.task import DeepfakeTask

    cfg = load_config(config)
    dataset = build_dataset(cfg.data, cfg.data.val_split, False, cfg.train.seed)
    task = DeepfakeTask(cfg.loss, cfg.train.adversarial, cfg.data.preprocess)
    ckpts = [Checkpoint.load(p) for p in checkpoints]
    model = ckpts[0].build_model()
    states = [{k: v.float() if v.is_floating_point() else v for k, v in c.model_state.items()} for c in ckpts]

    def score(state: State) -> float:
        model.load_state_dict(state)
        return val_auc(model, dataset, task)

    names = [str(p) for p in checkpoints]
    result = greedy(states, score, names)
    first = ckpts[names.index(result.members[0])]
    soup = replace(
        first,
        model_state=average([states[names.index(m)] for m in result.members]),
        calibration={"temperature": 1.0},
        metrics={"val_auc_soup": result.val_auc, "soup_members": result.members},
    ).exported(half=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    soup.save(out)
    log.info("soup of %d checkpoint(s), val AUC %.4f -> %s", len(result.members), result.val_auc, out)
    return result
