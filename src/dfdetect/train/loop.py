"""A generic training loop (knows nothing of deepfakes).

AMP on CUDA, gradient accumulation and clipping, DDP under ``torchrun`` (gloo on CPU, nccl on CUDA),
staged training (named parameter groups frozen per stage), validation + early stopping on val AUC,
atomic checkpoints (best / last / per stage / every ``save_every`` steps) and **exact resume**: the
model, optimizer, scheduler, scaler, RNG states and the position in the epoch are restored and the
batches already consumed are skipped, so a killed-and-resumed run ends where an uninterrupted one does.

The deepfake specifics live in a :class:`Task` (``train/task.py``).
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dfdetect.checkpoint import read_state, save_state
from dfdetect.config import OptimConfig, TrainConfig
from dfdetect.models.device import resolve_device
from dfdetect.train.logging import RunLogger, binary_metrics
from dfdetect.train.optim import build_optimizer, build_scheduler, named_groups, set_trainable

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """One training stage: which named parameter groups learn, for how many epochs, at which LR."""

    name: str
    epochs: int
    trainable: list[str] = field(default_factory=lambda: ["all"])
    lr: float | None = None
    options: dict[str, Any] = field(default_factory=dict)  # passed to Task.on_stage


class Task(Protocol):
    """What the loop needs from a task."""

    def on_stage(self, stage: Stage) -> None: ...

    def training_step(
        self, model: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the loss to minimise and numbers to log."""
        ...

    def validation_step(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        """Return ``label`` [B] and ``score`` [B] (probabilities); extra ``score/<name>`` keys allowed."""
        ...


class TrainingInterrupted(RuntimeError):
    """Raised by the ``stop_after_steps`` testing hook: the run stops like a killed process."""


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _all_gather(obj: Any, env: DistEnv) -> list[Any]:
    if env.world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


@dataclass
class Position:
    """Where training stands: stage, epoch within the stage, batch within the epoch, step, early stop."""

    stage: int = 0
    epoch: int = 0
    batch: int = 0
    step: int = 0
    best: float | None = None
    bad_epochs: int = 0
    stage_done: bool = False
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Runs stages of training over a dataset; see the module docstring.

    Args:
        model: the module (``parameter_groups()`` optional; without it the group ``all`` exists).
        task: turns batches into losses and validation scores.
        train_set / val_set: map-style datasets (``set_epoch(e)`` is called when they have it).
        collate_fn: batch collation.
        train_cfg / optim_cfg: loop and optimizer settings.
        run_dir: where ``checkpoints/`` and logs go.
        checkpoint_meta: extra keys of every checkpoint (``model_config``, ``preprocess``, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train_set: Dataset,
        val_set: Dataset | None,
        *,
        collate_fn: Callable[[list[Any]], Any] | None,
        train_cfg: TrainConfig,
        optim_cfg: OptimConfig,
        run_dir: str | Path,
        batch_size: int,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        checkpoint_meta: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.task = model, task
        self.train_set, self.val_set, self.collate_fn = train_set, val_set, collate_fn
        self.cfg, self.optim_cfg = train_cfg, optim_cfg
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers = num_workers
        self.meta = checkpoint_meta or {}
        self.device = resolve_device(train_cfg.device)
        self.env = init_distributed(self.device)
        self.use_amp = optim_cfg.amp and self.device.type == "cuda"
        self.pos = Position()
        self.logger: RunLogger | None = None
        self._wrapped: nn.Module = model

    # ------------------------------------------------------------------ public
    def fit(self, stages: list[Stage], resume: bool | None = None) -> dict[str, Any]:
        """Train all stages; resume from ``last.pt`` when ``resume`` (None = when it exists).

        Returns ``{"best": metrics, "last": metrics, "step": n, "interrupted": bool}``.
        """
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.model.to(self.device)
        state = self._load_resume(resume)
        if state is None:
            seed_everything(self.cfg.seed + self.env.rank)
        if self.cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.logger = RunLogger(self.run_dir, self.env.main, None if state is None else self.pos.step)
        interrupted = False
        try:
            for index, stage in enumerate(stages):
                if index < self.pos.stage:
                    continue
                self._run_stage(index, stage, stages, state if index == self.pos.stage else None)
                state = None
        except TrainingInterrupted:
            interrupted = True
        finally:
            self.logger.close()
        return {
            "best": self.pos.best_metrics,
            "last": self.pos.last_metrics,
            "step": self.pos.step,
            "interrupted": interrupted,
        }

    # ------------------------------------------------------------------ stages
    def _run_stage(self, index: int, stage: Stage, stages: list[Stage], state: dict | None) -> None:
        if state is not None and self.pos.stage_done:  # the checkpoint was written at this stage's end
            self.pos = Position(stage=index + 1, step=self.pos.step, last_metrics=self.pos.last_metrics)
            return
        if state is None:
            self.pos = Position(stage=index, step=self.pos.step, last_metrics=self.pos.last_metrics)
        groups = set_trainable(self.model, stage.trainable)
        self.task.on_stage(stage)
        self._wrap()
        optimizer = build_optimizer(named_groups(self.model), self.optim_cfg, stage.lr)
        total = self._steps_per_epoch() * stage.epochs
        scheduler = build_scheduler(optimizer, self.optim_cfg, total)
        scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        if state is not None:
            self._restore_optim(state, optimizer, scheduler, scaler)
        if self.env.main:
            log.info("stage %s: %d epochs, training %s", stage.name, stage.epochs, ", ".join(groups))
        first_epoch = sum(s.epochs for s in stages[:index])
        while self.pos.epoch < stage.epochs and not self.pos.stage_done:
            self._train_epoch(stage, first_epoch + self.pos.epoch, optimizer, scheduler, scaler)
            self._end_epoch(stage, first_epoch, optimizer, scheduler, scaler)

    def _wrap(self) -> None:
        self._wrapped = self.model
        if self.env.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._wrapped = DDP(self.model, device_ids=ids, find_unused_parameters=True)

    def _end_epoch(self, stage: Stage, first_epoch: int, optimizer, scheduler, scaler) -> None:
        pos = self.pos
        pos.epoch += 1
        pos.batch = 0
        last = pos.epoch >= stage.epochs
        if self.val_set is not None and (pos.epoch % self.cfg.eval_every == 0 or last):
            metrics = self.validate()
            pos.last_metrics = metrics
            self.logger.log("val", pos.step, metrics, epoch=first_epoch + pos.epoch, stage=stage.name)
            monitored = metrics.get("auc", math.nan)
            value = monitored if math.isfinite(monitored) else -math.inf
            if pos.best is None or value > pos.best:
                pos.best, pos.bad_epochs, pos.best_metrics = value, 0, metrics
                self._save("best.pt", optimizer, scheduler, scaler)
            else:
                pos.bad_epochs += 1
            if self.cfg.patience and pos.bad_epochs >= self.cfg.patience:
                if self.env.main:
                    log.info("early stop of stage %s after %d epochs", stage.name, pos.epoch)
                pos.stage_done = True
        pos.stage_done = pos.stage_done or last
        if pos.stage_done:
            self._save(f"stage-{stage.name}.pt", optimizer, scheduler, scaler)
        self._save("last.pt", optimizer, scheduler, scaler)
        self.logger.flush()

    # ------------------------------------------------------------------ data
    def _batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (deterministic in seed and epoch; same count on all ranks)."""
        sampler = DistributedSampler(
            self.train_set, num_replicas=self.env.world, rank=self.env.rank, shuffle=True, seed=self.cfg.seed
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)
        bs = self.batch_size
        n = len(indices) // bs if len(indices) >= bs else 1
        batches = [indices[i * bs : (i + 1) * bs] for i in range(n)]
        if self.cfg.steps_per_epoch:
            batches = batches[: self.cfg.steps_per_epoch * self.optim_cfg.accumulation]
        return batches

    def _steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self._batches(0)) / self.optim_cfg.accumulation))

    def _loader(self, dataset: Dataset, batches: list[list[int]], seed: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched
        )

    # ------------------------------------------------------------------ train
    def _train_epoch(self, stage: Stage, epoch: int, optimizer, scheduler, scaler) -> None:
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        batches = self._batches(epoch)
        start = self.pos.batch
        loader = self._loader(self.train_set, batches[start:], self.cfg.seed * 100003 + epoch)
        accum = self.optim_cfg.accumulation
        self._wrapped.train()
        running: dict[str, list[float]] = {}
        bar = self._bar(len(batches), start, f"{stage.name} epoch {epoch + 1}")
        for b, batch in enumerate(loader, start=start):
            boundary = (b + 1) % accum == 0 or b + 1 == len(batches)
            logs = self._forward_backward(batch, boundary, scaler, accum)
            for k, v in logs.items():
                running.setdefault(k, []).append(v)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{logs.get('loss', math.nan):.4f}")
            if boundary:
                self._optimizer_step(optimizer, scheduler, scaler)
                self.pos.batch = b + 1
                self._after_step(stage, epoch, optimizer, scheduler, scaler, running)
        if bar is not None:
            bar.close()

    def _forward_backward(self, batch: Any, boundary: bool, scaler, accum: int) -> dict[str, float]:
        import contextlib

        sync = contextlib.nullcontext()
        if self.env.world > 1 and not boundary:
            sync = self._wrapped.no_sync()
        with sync:
            with torch.autocast(self.device.type, enabled=self.use_amp):
                loss, logs = self.task.training_step(self._wrapped, batch, self.device)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {self.pos.step}: lower optim.lr")
            scaler.scale(loss / accum).backward()
        return {"loss": float(loss.detach()), **logs}

    def _optimizer_step(self, optimizer, scheduler, scaler) -> None:
        if self.optim_cfg.grad_clip:
            scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.optim_cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        self.pos.step += 1

    def _after_step(self, stage, epoch, optimizer, scheduler, scaler, running) -> None:
        step = self.pos.step
        if step % self.cfg.log_every == 0 and running:
            means = {k: float(np.mean(v)) for k, v in running.items()}
            means["lr"] = optimizer.param_groups[0]["lr"]
            self.logger.log("train", step, means, epoch=epoch + 1, stage=stage.name)
            running.clear()
        if self.cfg.save_every and step % self.cfg.save_every == 0:
            self._save("last.pt", optimizer, scheduler, scaler)
        if self.cfg.stop_after_steps and step >= self.cfg.stop_after_steps:
            raise TrainingInterrupted(f"stopped after {step} steps (train.stop_after_steps)")

    def _bar(self, total: int, start: int, desc: str):
        if not (self.cfg.progress and self.env.main):
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=start, desc=desc, leave=False, dynamic_ncols=True)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Scores of this rank's share of the validation set, gathered on every rank -> metrics."""
        assert self.val_set is not None
        model = self.model
        was_training = model.training
        model.eval()
        if hasattr(self.val_set, "set_epoch"):
            self.val_set.set_epoch(0)
        mine = list(range(self.env.rank, len(self.val_set), self.env.world))  # type: ignore[arg-type]
        bs = self.val_batch_size
        batches = [mine[i : i + bs] for i in range(0, len(mine), bs)]
        if self.cfg.val_steps:
            batches = batches[: self.cfg.val_steps]
        outputs: dict[str, list[np.ndarray]] = {}
        for batch in self._loader(self.val_set, batches, self.cfg.seed) if batches else []:
            with torch.autocast(self.device.type, enabled=self.use_amp):
                out = self.task.validation_step(model, batch, self.device)
            for k, v in out.items():
                outputs.setdefault(k, []).append(v.detach().float().cpu().numpy().reshape(-1))
        local = {k: np.concatenate(v) for k, v in outputs.items()}
        merged: dict[str, list[np.ndarray]] = {}
        for part in _all_gather(local, self.env):
            for k, v in part.items():
                merged.setdefault(k, []).append(v)
        model.train(was_training)
        return _score_metrics({k: np.concatenate(v) for k, v in merged.items()})

    # ------------------------------------------------------------------ checkpoints
    def _save(self, name: str, optimizer, scheduler, scaler) -> None:
        rng = _all_gather(rng_state(), self.env)  # collective: every rank calls _save at the same points
        if not self.env.main:
            return
        pos = self.pos
        state = {
            **self.meta,
            "model_state": self.model.state_dict(),
            "step": pos.step,
            "epoch": pos.epoch,
            "data_position": pos.batch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            "metrics": pos.last_metrics,
            "loop": {k: v for k, v in vars(pos).items() if k not in ("last_metrics",)},
        }
        save_state(self.ckpt_dir / name, state)

    def _load_resume(self, resume: bool | None) -> dict[str, Any] | None:
        path = self.ckpt_dir / "last.pt"
        if resume is False or (resume is None and not path.exists()):
            return None
        state = read_state(path, map_location="cpu")
        self.model.load_state_dict(state["model_state"])
        self.pos = Position(**state["loop"], last_metrics=state.get("metrics", {}))
        rng = state["rng"]
        set_rng_state(rng[self.env.rank] if self.env.rank < len(rng) else rng[0])
        if self.env.main:
            log.info("resumed %s at step %d (epoch %d, batch %d)", path, self.pos.step, self.pos.epoch,
                     self.pos.batch)  # fmt: skip
        return state

    def _restore_optim(self, state: dict[str, Any], optimizer, scheduler, scaler) -> None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if self.use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])


def _score_metrics(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Metrics of ``score`` vs ``label`` plus ``auc_<name>`` of every ``score/<name>``."""
    if "label" not in arrays or "score" not in arrays or len(arrays["label"]) == 0:
        return {}
    labels = arrays["label"]
    known = labels >= 0
    metrics = binary_metrics(arrays["score"][known], labels[known])
    for key, values in arrays.items():
        if key.startswith("score/"):
            metrics[f"auc_{key.split('/', 1)[1]}"] = binary_metrics(values[known], labels[known])["auc"]
        elif key not in ("label", "score"):
            metrics[key] = float(np.mean(values))
    return metrics
