"""Speech experiments under ``dfdetect train``: audio-only models on speech files (no video caches).

``dfdetect train --config configs/experiments/speech_whisper.yaml [key=value ...]``

A speech experiment has the sections of any experiment (``model``, ``train``, ``loss``, ``optim``, includes
and dotted overrides alike) and a speech ``data`` section (:class:`~dfdetect.data.speech.SpeechConfig`,
``kind: speech``): labelled speech files (a labels CSV, split by speaker) and/or prepared catalogue
manifests (``dfdetect prepare catalog``: split by generator family and real source). Two kinds of model:

- a frozen-encoder judge (``whisper-speech``): its head is fitted on cached pooled features in seconds
  (:mod:`dfdetect.train.speech_head`);
- a waveform model (``aasist-l``): fine-tuned end to end by the generic :class:`~dfdetect.train.loop.Trainer`.

Either way the run dir holds ``config.yaml`` and ``checkpoints/best.pt`` written by
:mod:`dfdetect.checkpoint`, a self-describing audio-only checkpoint the scan core loads like any other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from dfdetect.config import (
    ConfigError,
    LossConfig,
    ModelConfig,
    OptimConfig,
    StrictModel,
    TrainConfig,
    apply_overrides,
    load_yaml_tree,
)
from dfdetect.data.speech import SpeechConfig, speech_splits

log = logging.getLogger(__name__)

FROZEN_ENCODER_MODELS = ("whisper-speech",)


class HeadFitConfig(StrictModel):
    """How a frozen-encoder model's head is fitted (chosen on ``val`` only)."""

    c_grid: list[float] = Field(default_factory=lambda: [0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
    hidden_grid: list[int] = Field(default_factory=lambda: [0], description="0: logistic regression")
    epochs: int = Field(60, ge=1, description="MLP epochs (full batch)")
    val_variants: list[str] = Field(
        default_factory=lambda: ["clean", "mp3_64k", "telephone_8k"], description="val AUC averaged over"
    )
    val_per_family: int | None = Field(
        None, ge=1, description="val files per generator family and real source (default: data.per_family)"
    )
    mix_grid: list[float] = Field(
        default_factory=list,
        description="average a head on data.labels' files with one on the catalogue's, the first weighing "
        "each value (chosen on val; logistic heads only); empty: one head on all training files",
    )
    ceiling_quantile: float = Field(
        0.95, gt=0, lt=1, description="real-voice ceiling: quantile of real voices the head never trained on"
    )
    ceiling_folds: int = Field(
        5, ge=2, description="folds by source that score the training reals out of fold"
    )


class SpeechExperimentConfig(StrictModel):
    """A speech training run (saved resolved as ``run_dir/config.yaml``)."""

    name: str = "speech"
    run_dir: str | None = None
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="aasist-l"))
    data: SpeechConfig
    fit: HeadFitConfig = Field(default_factory=HeadFitConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


def is_speech_experiment(data: Any) -> bool:
    """True for a raw experiment mapping whose data section is a speech one (``kind: speech``, or the
    ``labels`` key of earlier speech configs)."""
    section = data.get("data") if isinstance(data, dict) else None
    return isinstance(section, dict) and (section.get("kind") == "speech" or "labels" in section)


def load_speech_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> SpeechExperimentConfig:
    """Load a speech experiment YAML (includes resolved, dotted overrides applied, validated)."""
    data = apply_overrides(load_yaml_tree(path), overrides)
    try:
        return SpeechExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid speech config {path}: {e}") from None


def preprocess_for(model_name: str, model_kwargs: dict[str, Any], data: SpeechConfig) -> dict[str, Any]:
    """The checkpoint's ``preprocess``: the model's pretrained config (``models.factory.pretrained_cfg``),
    whose window the scan core's audio window is.

    A frozen-encoder model takes ``data.feature_seconds`` windows side by side (``clip_frames=1``: the
    scan's step is one window, no overlap) and no codec; a waveform model its own windows (AASIST: 64600
    samples, at 50 % overlap) through the experiment's one codec."""
    from dfdetect.models.factory import pretrained_cfg

    cfg = pretrained_cfg(model_name, **model_kwargs)
    codec = data.codec
    if model_name in FROZEN_ENCODER_MODELS:
        cfg, codec = cfg.with_window(float(data.feature_seconds)), "none"
    return {**cfg.preprocess(), "codec": codec, "bitrate": data.bitrate}


def speech_checkpoint(
    model_state: dict[str, Any],
    name: str = "aasist-l",
    model_kwargs: dict[str, Any] | None = None,
    codec: str = "opus",
    bitrate: int = 48000,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    data: SpeechConfig | None = None,
) -> dict[str, Any]:
    """A self-describing checkpoint dict for a speech model (``dfdetect.checkpoint`` rebuilds it like
    any other: ``create_model(name, **model_config)`` + ``model_state``); ``preprocess`` from
    :func:`preprocess_for` (``codec``/``bitrate`` override the data section's)."""
    data = data or SpeechConfig(codec=codec, bitrate=bitrate)
    pre = preprocess_for(name, model_kwargs or {}, data)
    if name not in FROZEN_ENCODER_MODELS:
        pre |= {"codec": codec, "bitrate": bitrate}
    return {
        "model_state": model_state,
        "model_config": {"name": name, **(model_kwargs or {}), "pretrained": False},
        "preprocess": pre,
        "calibration": {"temperature": 1.0},
        "metrics": metrics or {},
        "train_config": train_config or {},
    }


def checkpoint_meta(cfg: SpeechExperimentConfig) -> dict[str, Any]:
    """Keys that make every checkpoint self-describing (model_config, preprocess, calibration, config)."""
    d = cfg.data
    state = speech_checkpoint({}, cfg.model.name, cfg.model.kwargs(), d.codec, d.bitrate, data=d)
    state.pop("model_state")
    state.pop("metrics")
    state["train_config"] = cfg.model_dump(mode="json")
    return state


def train_speech(
    cfg: SpeechExperimentConfig, run_dir: str | os.PathLike | None = None, resume: bool | None = None
) -> Path:
    """Train ``cfg``; returns the run dir (``checkpoints/best.pt``, ``config.yaml``)."""
    import yaml

    from dfdetect.io.files import atomic_write_text

    run = Path(run_dir or cfg.resolved_run_dir())
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if cfg.model.name in FROZEN_ENCODER_MODELS:
        from dfdetect.train.speech_head import fit_speech_head

        return fit_speech_head(cfg, run, speech_splits(cfg.data), checkpoint_meta(cfg))
    return _train_waveform_model(cfg, run, resume)


def _train_waveform_model(cfg: SpeechExperimentConfig, run: Path, resume: bool | None) -> Path:
    """Fine-tune a waveform model (``aasist-l``) with the generic loop on random crops of the files."""
    import torch

    from dfdetect.data.dataset import collate
    from dfdetect.data.speech import SpeechDataset
    from dfdetect.models.factory import create_model
    from dfdetect.train.loop import Stage, Trainer, seed_everything
    from dfdetect.train.task import DeepfakeTask

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    splits = speech_splits(cfg.data)
    d = cfg.data
    train_set = SpeechDataset(splits["train"], d, True, cfg.train.seed, d.windows_per_clip)
    val_set = SpeechDataset(splits["val"], d, False, cfg.train.seed, d.val_windows_per_clip)
    model = create_model(cfg.model.name, **cfg.model.kwargs())
    trainer = Trainer(
        model, DeepfakeTask(cfg.loss), train_set, val_set, collate_fn=collate, train_cfg=cfg.train,
        optim_cfg=cfg.optim, run_dir=run, batch_size=d.batch_size, val_batch_size=d.val_batch_size,
        num_workers=0, checkpoint_meta=checkpoint_meta(cfg),
    )  # fmt: skip
    log.info(
        "speech training %s: %d train / %d val samples -> %s", cfg.name, len(train_set), len(val_set), run
    )
    stages = [
        Stage(s.name, s.epochs, list(s.trainable), s.lr, {"head": s.head})
        for s in cfg.train.resolved_stages()
    ]
    summary = trainer.fit(stages, resume=resume)
    log.info("done at step %d: best val AUC %s", summary["step"], summary["best"].get("auc"))
    return run


def export_speech_model(
    dst: str | os.PathLike, src: str | os.PathLike | None = None, metrics: dict[str, Any] | None = None
) -> Path:
    """Write a shippable speech model: the official AASIST-L weights (``src=None``) or a training
    checkpoint ``src`` without its training state (:meth:`dfdetect.checkpoint.Checkpoint.exported`)."""
    from dfdetect.checkpoint import Checkpoint

    if src is not None:
        ckpt = Checkpoint.load(src).exported()
        return (
            ckpt.save(dst)
            if metrics is None
            else Checkpoint.from_state({**ckpt.to_state(), "metrics": metrics}).save(dst)
        )
    from dfdetect.models.aasist import official_state_dict

    state = speech_checkpoint(official_state_dict("aasist-l"), metrics=metrics)
    state["train_config"] = {"source": "official AASIST-L weights (ASVspoof 2019 LA train)"}
    return Checkpoint.from_state(state).save(dst)
