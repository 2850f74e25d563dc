"""Speech fine-tuning: an audio-only model (``aasist-l``) on a speech labels CSV, with the generic loop.

``python -m dfdetect.train.speech configs/experiments/speech.yaml [key=value ...] [--run-dir DIR]``

The experiment YAML has the sections of a ``dfdetect train`` experiment (``model``, ``train``, ``loss``,
``optim``, includes and dotted overrides alike) and a ``data`` section of its own
(:class:`SpeechDataConfig`): the video pipeline's prepared caches do not apply to audio-only files.
Splits are speaker-disjoint (the CSV's ``speaker`` column is the group, see ``data/sources/folder.py``);
every file is decoded to 16 kHz mono and re-encoded through one codec. Resume, logs and checkpoints are
those of :class:`~dfdetect.train.loop.Trainer`; checkpoints rebuild the model like any other.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
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
from dfdetect.constants import SAMPLE_RATE
from dfdetect.data.manifest import ManifestRow

log = logging.getLogger(__name__)


class SpeechDataConfig(StrictModel):
    """Where the speech files are, how they are split, and how they become model inputs."""

    labels: str = Field(..., description="labels CSV (path,label,generator,speaker,...) or a folder")
    seed: int = Field(0, description="seed of the speaker-disjoint split")
    val: float = Field(0.15, ge=0, le=1, description="fraction of speakers for validation")
    test: float = Field(0.3, ge=0, le=1, description="fraction of speakers held out for testing")
    codec: str = Field("opus", description="the one codec every file goes through (opus, mp3, aac, none)")
    bitrate: int = Field(48000, gt=0)
    window: int = Field(64600, gt=0, description="samples per training sample (the model's window)")
    max_seconds: float = Field(30.0, gt=0, description="seconds decoded per file")
    p_noise: float = Field(0.3, ge=0, le=1)
    snr_db: tuple[float, float] = (10.0, 40.0)
    p_band: float = Field(0.2, ge=0, le=1, description="8 kHz telephone band augmentation")
    p_gain: float = Field(0.3, ge=0, le=1)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    windows_per_clip: int = Field(2, ge=1, description="training crops per file and epoch")
    val_windows_per_clip: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    val_batch_size: int | None = None

    def speech_config(self):  # noqa: ANN201
        from dfdetect.data.speech import SpeechConfig

        keys = {f.name for f in dataclasses.fields(SpeechConfig)}
        return SpeechConfig(**{k: v for k, v in self.model_dump().items() if k in keys})


class SpeechExperimentConfig(StrictModel):
    """A speech fine-tuning run (saved resolved as ``run_dir/config.yaml``)."""

    name: str = "speech"
    run_dir: str | None = None
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="aasist-l"))
    data: SpeechDataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)


def load_speech_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> SpeechExperimentConfig:
    """Load a speech experiment YAML (includes resolved, dotted overrides applied, validated)."""
    data = apply_overrides(load_yaml_tree(path), overrides)
    try:
        return SpeechExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid speech config {path}: {e}") from None


def speech_splits(data: SpeechDataConfig) -> dict[str, list[ManifestRow]]:
    """Speaker-disjoint ``train``/``val``/``test`` rows of the labels CSV (deterministic in ``seed``)."""
    from dfdetect.data.sources import scan_source

    rows = scan_source("folder", data.labels, seed=data.seed, val=data.val, test=data.test)
    return {s: [r for r in rows if r.split == s] for s in ("train", "val", "test")}


def checkpoint_meta(cfg: SpeechExperimentConfig) -> dict[str, Any]:
    """Keys that make every checkpoint self-describing (model_config, preprocess, calibration, config)."""
    d = cfg.data
    state = speech_checkpoint({}, cfg.model.name, cfg.model.kwargs(), d.codec, d.bitrate)
    state.pop("model_state")
    state.pop("metrics")
    state["train_config"] = cfg.model_dump(mode="json")
    return state


def train_speech(
    cfg: SpeechExperimentConfig, run_dir: str | os.PathLike | None = None, resume: bool | None = None
) -> Path:
    """Fine-tune ``cfg.model`` on the speech data; returns the run dir (``checkpoints/{best,last}.pt``)."""
    import yaml

    from dfdetect.data.dataset import collate
    from dfdetect.data.speech import SpeechDataset
    from dfdetect.io.files import atomic_write_text
    from dfdetect.models.factory import create_model
    from dfdetect.train.loop import Trainer, seed_everything
    from dfdetect.train.run import stages_of
    from dfdetect.train.task import DeepfakeTask

    run = Path(run_dir or cfg.run_dir or Path("runs") / cfg.name)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    splits = speech_splits(cfg.data)
    sc = cfg.data.speech_config()
    train_set = SpeechDataset(splits["train"], sc, True, cfg.train.seed, cfg.data.windows_per_clip)
    val_set = SpeechDataset(splits["val"], sc, False, cfg.train.seed, cfg.data.val_windows_per_clip)
    model = create_model(cfg.model.name, **cfg.model.kwargs())
    meta = checkpoint_meta(cfg)  # model_config has pretrained=False: the checkpoint's weights rebuild it
    trainer = Trainer(
        model, DeepfakeTask(cfg.loss), train_set, val_set, collate_fn=collate, train_cfg=cfg.train,
        optim_cfg=cfg.optim, run_dir=run, batch_size=cfg.data.batch_size,
        val_batch_size=cfg.data.val_batch_size, num_workers=0, checkpoint_meta=meta,
    )  # fmt: skip
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    log.info(
        "speech training %s: %d train / %d val samples -> %s", cfg.name, len(train_set), len(val_set), run
    )
    summary = trainer.fit(stages_of(cfg), resume=resume)  # type: ignore[arg-type]
    log.info("done at step %d: best val AUC %s", summary["step"], summary["best"].get("auc"))
    return run


def speech_checkpoint(
    model_state: dict[str, torch.Tensor],
    name: str = "aasist-l",
    model_kwargs: dict[str, Any] | None = None,
    codec: str = "opus",
    bitrate: int = 48000,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A self-describing checkpoint dict for a speech model (``dfdetect.checkpoint`` rebuilds it like
    any other: ``create_model(name, **model_config)`` + ``model_state``). Window, hop and sample rate
    travel with the model (``model.pretrained_cfg``); ``preprocess`` records the sample rate and the one
    codec of training and evaluation."""
    from dfdetect.models.aasist import WINDOW_SAMPLES

    return {
        "model_state": model_state,
        "model_config": {"name": name, **(model_kwargs or {}), "pretrained": False},
        "preprocess": {  # the scan core's audio windows (clip_frames / fps seconds) = one model window
            "sample_rate": SAMPLE_RATE,
            "clip_frames": 16,
            "fps": 16 * SAMPLE_RATE / WINDOW_SAMPLES,
            "segment_seconds": WINDOW_SAMPLES / SAMPLE_RATE,
            "size": 32,  # blank frames of an audio-only model: as small as allowed
            "mouth_size": 16,
            "window_samples": WINDOW_SAMPLES,
            "codec": codec,
            "bitrate": bitrate,
            "kind": "audio",
        },
        "calibration": {"temperature": 1.0},
        "metrics": metrics or {},
        "train_config": train_config or {},
    }


def export_speech_model(
    dst: str | os.PathLike, src: str | os.PathLike | None = None, metrics: dict[str, Any] | None = None
) -> Path:
    """Write the shipped speech model: the official AASIST-L weights (``src=None``) or the weights of a
    fine-tuning checkpoint ``src``, as a self-describing checkpoint without training state."""
    from dfdetect.models.aasist import official_state_dict
    from dfdetect.train.checkpoint import load_checkpoint, save_checkpoint

    if src is None:
        state = speech_checkpoint(official_state_dict("aasist-l"), metrics=metrics)
        state["train_config"] = {"source": "official AASIST-L weights (ASVspoof 2019 LA train)"}
    else:
        run = load_checkpoint(src)
        cfg = run["model_config"]
        kwargs = {k: v for k, v in cfg.items() if k not in ("name", "pretrained")}
        pre = run.get("preprocess", {})
        state = speech_checkpoint(
            run["model_state"], cfg["name"], kwargs, pre.get("codec", "opus"), pre.get("bitrate", 48000),
            metrics or run.get("metrics"), run.get("train_config"),
        )  # fmt: skip
    return save_checkpoint(dst, state)


def main(argv: list[str] | None = None) -> int:
    """``python -m dfdetect.train.speech CONFIG [key=value ...] [--run-dir DIR] [--resume|--no-resume]``."""
    p = argparse.ArgumentParser(prog="python -m dfdetect.train.speech", description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--run-dir", default=None)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="resume", action="store_const", const=True, default=None)
    g.add_argument("--no-resume", dest="resume", action="store_const", const=False)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = load_speech_config(args.config, args.overrides)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    print(train_speech(cfg, args.run_dir, args.resume))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
