"""Pydantic configuration models, YAML loading with dotted overrides, and the resolved-config dump.

Every config is validated (unknown keys are errors, so a typo never passes silently).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dfdetect.constants import DEFAULT_FPS, IMAGENET_MEAN, IMAGENET_STD, SAMPLE_RATE


@dataclass(frozen=True)
class PreparedDir:
    """The layout of a ``dfdetect prepare`` output folder: the one place that spells it.

    ``manifest.csv`` (one row per video), ``cache/`` (one entry per video), ``prepare_report.jsonl``
    (one status line per video and run) and ``prepare_config.json`` (the source and settings).
    """

    root: Path

    MANIFEST: ClassVar[str] = "manifest.csv"
    CACHE: ClassVar[str] = "cache"
    REPORT: ClassVar[str] = "prepare_report.jsonl"
    CONFIG: ClassVar[str] = "prepare_config.json"

    @property
    def manifest(self) -> Path:
        return Path(self.root) / self.MANIFEST

    @property
    def cache(self) -> Path:
        return Path(self.root) / self.CACHE

    @property
    def report(self) -> Path:
        return Path(self.root) / self.REPORT

    @property
    def config(self) -> Path:
        return Path(self.root) / self.CONFIG

    @classmethod
    def of_manifest(cls, manifest: str | os.PathLike) -> PreparedDir:
        """The prepared folder a manifest lives in."""
        return cls(Path(manifest).resolve().parent)

    @classmethod
    def of_cache(cls, cache_dir: str | os.PathLike) -> PreparedDir:
        """The prepared folder a cache folder lives in."""
        return cls(Path(cache_dir).parent)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PrepareConfig(StrictModel):
    """How videos are turned into cache entries (stored in every entry's ``params``)."""

    fps: float = Field(DEFAULT_FPS, gt=0, description="frames sampled per second of video")
    size: int = Field(224, ge=32, description="side of the square face crop, pixels")
    margin: float = Field(1.3, ge=1.0, description="crop side = margin x face box side")
    align: bool = Field(False, description="rotate crops so the eyes are level (5-point alignment)")
    max_duration: float | None = Field(60.0, gt=0, description="seconds read from each video (None = all)")
    max_frames: int | None = Field(None, gt=0, description="sampled frames read from each video")
    detector: str = "mtcnn"
    detect_every: int = Field(
        5, ge=1, description="run the detector on every n-th sampled frame, track between"
    )
    detect_size: int = Field(640, ge=64, description="longest side of the frame given to the detector")
    max_faces: int = Field(3, ge=1, description="face tracks kept per video, ranked by size x duration")
    min_face_size: int = Field(40, ge=8, description="smallest face kept, pixels of the original frame")
    min_score: float = Field(0.9, ge=0, le=1, description="lowest detection confidence kept")
    min_blur: float = Field(0.0, ge=0, description="lowest variance-of-Laplacian of a kept track (0 = off)")
    min_track_frames: int = Field(3, ge=1, description="shortest track kept, sampled frames")
    sample_rate: int = Field(SAMPLE_RATE, description="audio sample rate (mono)")


class PreprocessConfig(StrictModel):
    """How cached clips become model inputs; saved in every checkpoint so scanning matches training."""

    fps: float = Field(DEFAULT_FPS, gt=0, description="frame rate given to the model (<= the cache's fps)")
    size: int = Field(224, ge=32, description="side of the face crop given to the model")
    margin: float = Field(1.3, ge=1.0, description="crop margin the cache was made with (recorded)")
    clip_frames: int = Field(16, ge=1, description="frames per model window (T)")
    segment_seconds: float = Field(1.0, gt=0, description="length of one segment score")
    mouth_size: int = Field(64, ge=16, description="side of the mouth crop for lip-sync heads")
    sample_rate: int = SAMPLE_RATE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def window_seconds(self) -> float:
        return self.clip_frames / self.fps

    @property
    def audio_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def num_segments(self) -> int:
        return max(1, round(self.window_seconds / self.segment_seconds))


class AugmentConfig(StrictModel):
    """Train-time augmentations (each applied with its probability ``p_*``; 0 disables)."""

    p_color: float = Field(0.5, ge=0, le=1)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    p_crop: float = Field(0.5, ge=0, le=1)
    crop_scale: tuple[float, float] = (0.85, 1.0)
    p_flip: float = Field(0.5, ge=0, le=1)
    p_blur: float = Field(0.1, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    p_jpeg: float = Field(0.3, ge=0, le=1)
    jpeg_quality: tuple[int, int] = (40, 95)
    p_resize: float = Field(0.0, ge=0, le=1, description="downscale and upscale back (low-res uploads)")
    resize_scale: tuple[float, float] = (0.4, 0.9)
    p_h264: float = Field(0.0, ge=0, le=1, description="re-encode the window as H.264 (libx264)")
    h264_crf: tuple[int, int] = (18, 36)
    p_audio_shift: float = Field(0.3, ge=0, le=1)
    audio_shift_seconds: float = 0.04  # small shifts that keep audio-visual sync plausible
    p_audio_noise: float = Field(0.3, ge=0, le=1)
    snr_db: tuple[float, float] = (10.0, 40.0)
    p_audio_gain: float = Field(0.3, ge=0, le=1)
    gain_db: tuple[float, float] = (-6.0, 6.0)


class PseudoFakeConfig(StrictModel):
    """On-the-fly pseudo-fakes made from real clips (SBI, audio-visual desync, audio swap)."""

    p_fake: float = Field(0.5, ge=0, le=1, description="share of real samples turned into pseudo-fakes")
    only_real: bool = Field(False, description="drop the dataset's own fakes; learn from reals only")
    sbi_weight: float = Field(1.0, ge=0, description="relative frequency of self-blended images")
    desync_weight: float = Field(0.5, ge=0, description="relative frequency of audio shifted out of sync")
    swap_weight: float = Field(0.5, ge=0, description="relative frequency of audio from another clip")
    min_desync_seconds: float = Field(0.4, gt=0, description="smallest audio shift of a desync fake")
    max_desync_seconds: float = Field(2.0, gt=0)
    partial_p: float = Field(
        0.0, ge=0, le=1, description="share of SBI / desync fakes made over a random contiguous span only"
    )
    partial_span: tuple[float, float] = Field(
        (0.2, 0.7), description="shortest and longest span of a partial fake, share of the window's frames"
    )


# --------------------------------------------------------------------------------------------------
# Experiment configs (training): model + data + train + loss + optim, loaded from YAML with includes.
# --------------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A config file is missing, malformed, or has a wrong/unknown key (the message names it)."""


class ModelConfig(BaseModel):
    """``create_model(name, **kwargs)``: the name plus any model keyword (checked by the model itself)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = Field("av", description="registered model name (visual, frequency, audio, av, ...)")

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``create_model`` (everything but ``name``)."""
        return dict(self.model_extra or {})


class SourceConfig(StrictModel):
    """One prepared dataset: a ``dfdetect prepare`` output dir, or an explicit manifest + cache pair."""

    prepared: str | None = Field(None, description="dir holding manifest.csv and cache/")
    manifest: str | None = None
    cache: str | None = None
    methods: list[str] | None = Field(None, description="keep only these methods (and 'real')")
    limit: int | None = Field(None, gt=0, description="keep at most this many rows per split (debugging)")
    rename_splits: dict[str, str] = Field(
        default_factory=dict, description="use this source's splits under other names, e.g. {val: test}"
    )
    holdout: float = Field(
        0.0, ge=0, lt=1, description="share of this source's train groups moved to val (seeded by group)"
    )
    windows_per_video: int | None = Field(
        None, ge=1, description="training windows per video and epoch (default: data.windows_per_video)"
    )
    fake_share: float = Field(
        1.0, gt=0, le=1, description="share of this source's train fakes used (kept by a hash of the group)"
    )

    @model_validator(mode="after")
    def _one_location(self) -> SourceConfig:
        if self.prepared is None and (self.manifest is None or self.cache is None):
            raise ValueError("give either 'prepared: DIR' or both 'manifest: FILE' and 'cache: DIR'")
        return self

    def manifest_path(self) -> Path:
        return Path(self.manifest) if self.manifest else PreparedDir(Path(self.prepared or ".")).manifest

    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else PreparedDir(Path(self.prepared or ".")).cache


class DataConfig(StrictModel):
    """Which prepared data trains and validates a model, and how samples are made from it."""

    sources: list[SourceConfig] = Field(default_factory=list)
    test_sources: list[SourceConfig] = Field(
        default_factory=list, description="held-out data for `dfdetect eval` (empty = the sources)"
    )
    train_split: str | list[str] = "train"
    val_split: str | list[str] = "val"
    test_split: str | list[str] = "test"
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    augment: AugmentConfig | None = Field(default_factory=AugmentConfig)
    pseudofake: PseudoFakeConfig | None = None
    val_pseudofake: bool = Field(
        False, description="also make (deterministic) pseudo-fakes in validation (needed for only_real)"
    )
    batch_size: int = Field(8, ge=1)
    val_batch_size: int | None = Field(None, ge=1, description="defaults to batch_size")
    num_workers: int = Field(2, ge=0)
    windows_per_video: int = Field(1, ge=1, description="training samples drawn per video and epoch")
    val_windows_per_video: int = Field(1, ge=1)


class StageConfig(StrictModel):
    """One stage of staged training: which parameter groups learn, for how long, on which output."""

    name: str
    epochs: int = Field(1, ge=1)
    trainable: list[str] = Field(default_factory=lambda: ["video", "audio", "fusion"])
    lr: float | None = Field(None, gt=0, description="learning rate of this stage (None = optim.lr)")
    head: Literal["logit", "video_logit", "audio_logit"] = Field(
        "logit", description="model output trained by the classification terms and monitored in validation"
    )


class LossConfig(StrictModel):
    """Weights of the loss terms (0 disables a term)."""

    video: float = Field(1.0, ge=0, description="BCE of the window logit")
    segment: float = Field(0.5, ge=0, description="BCE of per-segment logits")
    label_smoothing: float = Field(0.05, ge=0, lt=1)
    temporal: float = Field(0.0, ge=0, description="consistency of adjacent segment/frame logits")
    focal: float = Field(0.0, ge=0, description="focal loss on the window logit")
    focal_gamma: float = Field(2.0, ge=0)
    focal_alpha: float = Field(-1.0, description="focal alpha (-1 = no class weighting)")
    modality: float = Field(0.0, ge=0, description="video/audio logit disagreement where labels agree")
    sync: float = Field(0.0, ge=0, description="sync contrastive term on sync_logit")
    modality_heads: float = Field(
        0.0, ge=0, description="BCE of video_logit/audio_logit against video_label/audio_label"
    )
    pos_weight: float | None = Field(None, gt=0, description="weight of the fake class in BCE terms")


class OptimConfig(StrictModel):
    """AdamW + per-iteration LR schedule with linear warm-up."""

    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "cosine_restarts", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    T_0: int = Field(500, ge=1, description="cosine_restarts: steps of the first cycle")
    T_mult: int = Field(1, ge=1, description="cosine_restarts: cycle length multiplier")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="final LR = lr x min_lr_ratio")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm (None = off)")
    accumulation: int = Field(1, ge=1, description="batches per optimizer step")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")


class AdversarialConfig(StrictModel):
    """Adversarial training: PGD examples (``dfdetect.models.adversarial``) mixed into every batch."""

    ratio: float = Field(0.5, ge=0, le=1, description="share of each batch replaced by its PGD version")
    eps: float = Field(2 / 255, gt=0, le=1, description="L-inf budget in pixels of [0, 1] (2/255 = 0.00784)")
    steps: int = Field(3, ge=1, description="PGD steps per batch")
    step_size: float | None = Field(None, gt=0, description="pixels per step (None = 2.5 x eps / steps)")


class TrainConfig(StrictModel):
    """How long and how training runs (joint when ``stages`` is empty)."""

    epochs: int = Field(10, ge=1, description="epochs of joint training (when no stages)")
    stages: list[StageConfig] = Field(default_factory=list)
    patience: int | None = Field(5, ge=1, description="early stopping: epochs without val AUC gain")
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    eval_every: int = Field(1, ge=1, description="validate every n epochs (and at each stage end)")
    log_every: int = Field(20, ge=1, description="log train losses every n optimizer steps")
    save_every: int | None = Field(200, ge=1, description="write last.pt every n optimizer steps")
    steps_per_epoch: int | None = Field(None, ge=1, description="cap batches per epoch (None = all)")
    val_steps: int | None = Field(None, ge=1, description="cap validation batches (None = all)")
    stop_after_steps: int | None = Field(
        None, ge=1, description="testing hook: stop abruptly (like a kill) after n optimizer steps"
    )
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process (None = torch's)")
    progress: bool = True
    adversarial: AdversarialConfig | None = Field(None, description="PGD adversarial training (None = off)")

    def resolved_stages(self) -> list[StageConfig]:
        return self.stages or [StageConfig(name="joint", epochs=self.epochs)]


class ExperimentConfig(StrictModel):
    """Everything one training run needs; saved resolved as ``run_dir/config.yaml``."""

    name: str = "experiment"
    run_dir: str | None = Field(None, description="output dir (default runs/<name>)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


INCLUDE_KEYS = ("defaults", "include")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into a copy of ``base`` (mappings merge key by key; anything else replaces)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _include_items(spec: Any, path: Path) -> list[tuple[str | None, str]]:
    """``defaults`` as ``[file, {section: file}, ...]`` or ``{section: file}`` -> (section, file) pairs."""
    items = list(spec.items()) if isinstance(spec, dict) else spec
    if not isinstance(items, list):
        raise ConfigError(f"{path}: 'defaults' must be a list or a mapping of section: file")
    pairs: list[tuple[str | None, str]] = []
    for item in items:
        if isinstance(item, str):
            pairs.append((None, item))
        elif isinstance(item, tuple):
            pairs.append((str(item[0]), str(item[1])))
        elif isinstance(item, dict) and len(item) == 1:
            ((section, file),) = item.items()
            pairs.append((str(section), str(file)))
        else:
            raise ConfigError(
                f"{path}: bad 'defaults' entry {item!r} (use 'file.yaml' or 'section: file.yaml')"
            )
    return pairs


def load_yaml_tree(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML file and resolve its ``defaults:``/``include:`` references (relative to the file).

    An included file is merged at the root, or mounted under ``section`` for ``{section: file}``;
    the including file's own keys win over what it includes.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"include cycle: {' -> '.join(str(p) for p in (*_seen, path))}")
    data = _read_yaml(path)
    merged: dict[str, Any] = {}
    for key in INCLUDE_KEYS:
        spec = data.pop(key, None)
        if spec is None:
            continue
        for section, file in _include_items(spec, path):
            sub = load_yaml_tree(path.parent / file, (*_seen, path))
            merged = deep_merge(merged, {section: sub} if section else sub)
    return deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML; list items addressed by index)."""
    import yaml

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {key}: {part!r} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(f"override {key}: {'.'.join(parts[:i])} is not a mapping")
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        got = f" (got {e['input']!r})" if e["type"] != "missing" and not isinstance(e["input"], dict) else ""
        lines.append(f"  {loc}: {e['msg']}{got}")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a raw mapping; raises :class:`ConfigError` naming every wrong key."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        message = _format_errors(e, source)
        section = data.get("data") if isinstance(data, dict) else None
        if isinstance(section, dict) and "labels" in section:  # a speech data section
            message += f"\n(a speech experiment: `dfdetect train --config {source}` reads it)"
        if isinstance(data, dict) and "distill" in data:
            message += f"\n(a distillation experiment: run `dfdetect distill --config {source}`)"
        raise ConfigError(message) from None


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML (with its includes), apply dotted overrides, validate.

    Example:
        ``load_config("configs/experiments/demo.yaml", ["train.epochs=3", "model.backbone=resnet50"])``
    """
    data = apply_overrides(load_yaml_tree(path), overrides)
    return validate_config(data, str(path))


def config_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as plain JSON/YAML-ready data."""
    return cfg.model_dump(mode="json")


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (loads back to an equal config)."""
    import yaml

    return yaml.safe_dump(config_dict(cfg), sort_keys=False, default_flow_style=None)
