"""Greedy model soup (Wortsman et al. 2022) of checkpoints fine-tuned from the same pretrained weights.

Each checkpoint is scored on the experiment's validation set, exactly as training validates (the ``val``
split of the data config, with its seeded pseudo-fakes; window AUC). Going from the best to the worst,
a checkpoint joins the soup (the uniform average of the members' weights) only when the soup's
validation AUC does not drop. Test sets are never looked at. Writes the soup with the first member's
metadata (preprocessing, config; no calibration: fit it afterwards on the calibration split).

    python bench/soup.py --config configs/experiments/default.yaml runs/gpu-A/best-half.pt \
        runs/gpu-C/best-half.pt runs/gpu-D/best-half.pt --out runs/soup/soup.pt
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dfdetect.checkpoint import Checkpoint
from dfdetect.config import load_config
from dfdetect.data.dataset import collate
from dfdetect.metrics import auc
from dfdetect.train.run import build_dataset
from dfdetect.train.task import DeepfakeTask


@torch.no_grad()
def val_auc(model: torch.nn.Module, dataset, task: DeepfakeTask, batch_size: int = 32) -> float:
    model.eval()
    labels, scores = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        out = task.validation_step(model, batch, torch.device("cpu"))
        labels.append(out["label"].numpy())
        scores.append(out["score"].numpy())
    return auc(np.concatenate(labels), np.concatenate(scores))


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of state dicts (integer buffers such as batch counters: the first's)."""
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
        for k, v in states[0].items()
    }


def greedy(states: list[dict], score, names: list[str]) -> tuple[list[int], float]:
    """Greedy soup: members (indices) and the soup's validation AUC; prints every step."""
    singles = [score(s) for s in states]
    order = np.argsort(singles)[::-1]
    members, best = [int(order[0])], singles[order[0]]
    steps = [{"checkpoint": names[i], "val_auc": singles[i]} for i in range(len(states))]
    for i in order[1:]:
        trial = score(average([states[j] for j in [*members, int(i)]]))
        steps.append({"try": [names[j] for j in [*members, int(i)]], "val_auc": trial})
        if trial >= best:
            members, best = [*members, int(i)], trial
    print(json.dumps({"steps": steps, "members": [names[j] for j in members], "val_auc": best}, indent=1))
    return members, best


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--config", required=True, help="the experiment the checkpoints were trained with")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    dataset = build_dataset(cfg.data, cfg.data.val_split, False, cfg.train.seed)
    task = DeepfakeTask(cfg.loss, cfg.train.adversarial, cfg.data.preprocess)
    ckpts = [Checkpoint.load(p) for p in args.checkpoints]
    model = ckpts[0].build_model()
    states = [{k: v.float() if v.is_floating_point() else v for k, v in c.model_state.items()} for c in ckpts]

    def score(state: dict[str, torch.Tensor]) -> float:
        model.load_state_dict(state)
        return val_auc(model, dataset, task)

    members, best = greedy(states, score, args.checkpoints)
    chosen = [args.checkpoints[j] for j in members]
    soup = replace(
        ckpts[members[0]],
        model_state=average([states[j] for j in members]),
        calibration={"temperature": 1.0},
        metrics={"val_auc_soup": best, "soup_members": chosen},
    ).exported(half=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    soup.save(args.out)
    print(f"soup of {len(members)} -> {args.out}")


if __name__ == "__main__":
    main()
