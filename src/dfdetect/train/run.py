"""``train_from_config``: an experiment YAML -> a run directory with checkpoints and logs.

Run dir layout: ``config.yaml`` (resolved), ``checkpoints/{best,last,stage-*}.pt``, ``tb/``
(TensorBoard), ``metrics.jsonl``. Staged training (video -> audio -> fusion) freezes parameter groups
per stage; without stages the whole model trains jointly.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from dfdetect.config import (
    DataConfig,
    ExperimentConfig,
    SourceConfig,
    config_dict,
    dump_config,
    load_config,
)
from dfdetect.data.manifest import FAKE, ManifestRow, read_manifest, write_manifest
from dfdetect.io.files import atomic_write_text

log = logging.getLogger(__name__)

VAL_SEED_OFFSET = 7919  # validation pseudo-fakes are drawn apart from training ones


class TrainingError(RuntimeError):
    """The experiment cannot start (no data, no rows in a split, unknown model, ...)."""


def _splits(split: str | list[str]) -> set[str]:
    return {split} if isinstance(split, str) else set(split)


def _hash_share(group: str) -> float:
    """A fixed number in [0, 1) per group: hold-outs and subsets by group, the same on every run."""
    return zlib.crc32(group.encode()) % 10_000 / 10_000


def _source_split(row: ManifestRow, source: SourceConfig) -> str | None:
    """The split ``row`` belongs to in this experiment: renamed, held out by a hash of its group, or
    None for a train fake left out by ``fake_share``."""
    split = source.rename_splits.get(row.split, row.split)
    if split == "train" and _hash_share(row.group) < source.holdout:
        return "val"
    # the reversed group name draws independently of the hold-out above (kept: the shipped model used it)
    if split == "train" and row.label == FAKE and _hash_share(row.group[::-1]) >= source.fake_share:
        return None
    return split


def source_rows(source: SourceConfig, split: str | list[str]) -> list[ManifestRow]:
    """Rows of ``source`` in ``split`` (split renames, hold-out, method filter and limit applied)."""
    wanted = _splits(split)
    rows = [r for r in read_manifest(source.manifest_path()) if _source_split(r, source) in wanted]
    if source.methods is not None:
        keep = set(source.methods) | {"real"}
        rows = [r for r in rows if r.method in keep]
    if source.limit is not None:
        rows = rows[: source.limit]
    return rows


def write_split_manifests(data: DataConfig, run: Path) -> list[Path]:
    """Write each source's rows with the splits this experiment gives them (renames, hold-out; a train
    fake left out by ``fake_share`` gets split ``unused``) to ``run/data/<source>.csv``.

    The run dir then records exactly which files trained, validated and are held out; ``dfdetect eval
    --manifest run/data/<source>.csv --cache <prepared>/cache`` scores or calibrates on those splits.
    """
    paths, taken = [], set()
    for source in data.sources:
        name = source.manifest_path().parent.name or "source"
        while name in taken:
            name += "-2"
        taken.add(name)
        rows = [
            r.with_split(_source_split(r, source) or "unused") for r in read_manifest(source.manifest_path())
        ]
        paths.append(write_manifest(rows, run / "data" / f"{name}.csv"))
    return paths


def build_dataset(data: DataConfig, split: str | list[str], train: bool, seed: int) -> Dataset:
    """One :class:`~dfdetect.data.dataset.VideoDataset` per source, concatenated.

    Validation (``train=False``) with ``data.val_pseudofake`` draws fixed pseudo-fakes: the dataset
    runs in training mode without augmentation at a fixed epoch and its own seed.
    """
    from dfdetect.data.dataset import VideoDataset

    parts: list[Dataset] = []
    fake_val = not train and data.val_pseudofake and data.pseudofake is not None
    for source in data.sources:
        rows = source_rows(source, split)
        if not rows:
            continue
        parts.append(
            VideoDataset(
                rows,
                source.cache_path(),
                data.preprocess,
                train=train or fake_val,
                augment=data.augment if train else None,
                pseudofake=data.pseudofake if (train or fake_val) else None,
                seed=seed if train else seed + VAL_SEED_OFFSET,
                windows_per_video=(source.windows_per_video or data.windows_per_video)
                if train
                else data.val_windows_per_video,
            )
        )
    parts = [p for p in parts if len(p) > 0]  # type: ignore[arg-type]
    if not parts:
        where = ", ".join(str(s.manifest_path()) for s in data.sources) or "no sources"
        raise TrainingError(f"no usable samples in split {split!r} of {where}: run `dfdetect prepare` first")
    return parts[0] if len(parts) == 1 else _EpochConcat(parts)


class _EpochConcat(ConcatDataset):
    """ConcatDataset that forwards ``set_epoch`` to its parts."""

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)


SHARED_KEYS = ("fps", "segment_seconds", "mouth_size", "sample_rate")


def check_model_preprocess(cfg: ExperimentConfig) -> None:
    """Raise :class:`TrainingError` when the model's and the data's fps/segments/mouth size differ."""
    kwargs, pre = cfg.model.kwargs(), cfg.data.preprocess
    wrong = [
        f"model.{k}={kwargs[k]} but data.preprocess.{k}={getattr(pre, k)}"
        for k in SHARED_KEYS
        if k in kwargs and float(kwargs[k]) != float(getattr(pre, k))
    ]
    if wrong:
        raise TrainingError("model and preprocessing disagree: " + "; ".join(wrong) + " (make them equal)")


def build_model(cfg: ExperimentConfig) -> torch.nn.Module:
    """``create_model`` from the experiment's model section (segment layout from preprocessing)."""
    from dfdetect.models.factory import create_model

    check_model_preprocess(cfg)
    kwargs = cfg.model.kwargs()
    pre = cfg.data.preprocess
    kwargs.setdefault("fps", pre.fps)
    kwargs.setdefault("segment_seconds", pre.segment_seconds)
    try:
        return create_model(cfg.model.name, **kwargs)
    except (KeyError, TypeError) as e:
        raise TrainingError(f"cannot build model {cfg.model.name!r} with {kwargs}: {e}") from e


def checkpoint_meta(cfg: ExperimentConfig) -> dict[str, Any]:
    """The non-training keys of every checkpoint: model_config, preprocess, calibration, train_config."""
    model_config = {"name": cfg.model.name, **cfg.model.kwargs()}
    model_config.setdefault("fps", cfg.data.preprocess.fps)
    model_config.setdefault("segment_seconds", cfg.data.preprocess.segment_seconds)
    return {
        "model_config": model_config,
        "preprocess": cfg.data.preprocess.model_dump(mode="json"),
        "prepare": prepare_params(cfg),
        "calibration": {"temperature": 1.0},
        "train_config": config_dict(cfg),
    }


def prepare_params(cfg: ExperimentConfig) -> dict[str, Any]:
    """The ``dfdetect prepare`` settings of the training data, so scanning prepares videos alike."""
    for source in cfg.data.sources:
        path = source.cache_path().parent / "prepare_config.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")).get("config", {})
    return {}


def stages_of(cfg: ExperimentConfig) -> list:
    from dfdetect.train.loop import Stage

    return [
        Stage(s.name, s.epochs, list(s.trainable), s.lr, {"head": s.head})
        for s in cfg.train.resolved_stages()
    ]


def _prepare_run(cfg: ExperimentConfig, run_dir: str | os.PathLike | None) -> tuple[Path, ExperimentConfig]:
    """The run dir (``run_dir``, else the config's) and the config that records it; torch's threads set."""
    run = Path(run_dir) if run_dir else cfg.resolved_run_dir()
    if run_dir:
        cfg = cfg.model_copy(update={"run_dir": str(run)})
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    return run, cfg


def train(
    cfg: ExperimentConfig,
    run_dir: str | os.PathLike | None = None,
    resume: bool | None = None,
    *,
    model: torch.nn.Module | None = None,
    task: Any = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Train ``cfg`` (a video or a speech experiment); returns the run dir. ``resume``: None = resume when
    ``checkpoints/last.pt`` exists.

    ``model``, ``task`` and ``meta`` (the checkpoints' metadata) replace what ``cfg`` builds: distillation
    passes its initialised student, its :class:`~dfdetect.train.distill.DistillTask` and the student's
    metadata.
    """
    if not isinstance(cfg, ExperimentConfig):  # a speech experiment (data.kind: speech)
        from dfdetect.train.speech import train_speech

        return train_speech(cfg, run_dir, resume)
    from dfdetect.data.dataset import collate
    from dfdetect.train.loop import Trainer, seed_everything
    from dfdetect.train.task import DeepfakeTask

    run, cfg = _prepare_run(cfg, run_dir)
    seed_everything(cfg.train.seed)
    train_set = build_dataset(cfg.data, cfg.data.train_split, True, cfg.train.seed)
    val_set = build_dataset(cfg.data, cfg.data.val_split, False, cfg.train.seed)
    model = model if model is not None else build_model(cfg)
    trainer = Trainer(
        model,
        task if task is not None else DeepfakeTask(cfg.loss, cfg.train.adversarial, cfg.data.preprocess),
        train_set,
        val_set,
        collate_fn=collate,
        train_cfg=cfg.train,
        optim_cfg=cfg.optim,
        run_dir=run,
        batch_size=cfg.data.batch_size,
        val_batch_size=cfg.data.val_batch_size,
        num_workers=cfg.data.num_workers,
        checkpoint_meta=meta if meta is not None else checkpoint_meta(cfg),
    )
    if trainer.env.main:
        atomic_write_text(run / "config.yaml", dump_config(cfg))
        write_split_manifests(cfg.data, run)
        log.info("training %s: %d train / %d val samples -> %s", cfg.name, len(train_set), len(val_set), run)
    try:
        summary = trainer.fit(stages_of(cfg), resume=resume)
    finally:
        if trainer.env.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if trainer.env.main:
        best = summary["best"]
        log.info("done at step %d: best val AUC %s", summary["step"], best.get("auc"))
    return run


def load_experiment(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Any:
    """The experiment YAML at ``path`` (+ dotted overrides), validated: a speech experiment
    (:class:`~dfdetect.train.speech.SpeechExperimentConfig`, its data section says ``kind: speech``) or
    a video one (:class:`~dfdetect.config.ExperimentConfig`). Raises ``ConfigError`` naming what is wrong."""
    from dfdetect.config import apply_overrides, load_yaml_tree
    from dfdetect.train.speech import is_speech_experiment, load_speech_config

    if is_speech_experiment(apply_overrides(load_yaml_tree(path), overrides)):
        return load_speech_config(path, overrides)
    return load_config(path, overrides)


def dump_experiment(cfg: Any) -> str:
    """The resolved YAML of a video or speech experiment."""
    if isinstance(cfg, ExperimentConfig):
        return dump_config(cfg)
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def train_from_config(
    path: str | os.PathLike,
    overrides: Iterable[str] = (),
    run_dir: str | os.PathLike | None = None,
    resume: bool | None = None,
) -> Path:
    """Load an experiment YAML (+ dotted overrides) and train it; returns the run dir.

    Example:
        ``train_from_config("configs/experiments/demo.yaml", ["train.epochs=2"])``
    """
    return train(load_experiment(path, overrides), run_dir=run_dir, resume=resume)
