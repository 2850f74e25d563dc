"""Knowledge distillation: a small student learns a trained teacher's calibrated scores.

The student trains in the ordinary loop (``train/loop.py``: resume, logs, progress, checkpoints) with a
:class:`DistillTask` instead of the deepfake task. Every batch is the training dataset's own (real clips,
the SBI pseudo-fakes it makes on the fly, the dataset's fakes), cut with the **teacher's** preprocessing;
the teacher scores it, ``p = sigmoid(logit / (T * tau))`` with its calibration temperature ``T``, and the
student sees the same windows resized to its own input size. The loss is

    soft * tau^2 * BCE(student logit, p)  +  segment * tau^2 * BCE(student segments, teacher segments)
    + hard * (the deepfake task's loss terms on the known labels)

BCE against a soft target is the binary KL divergence plus a constant (the target's entropy). The result
is an ordinary self-describing checkpoint (``RUN/student.pt``) with the student's preprocessing, the
teacher's prepare settings and speech companion, and temperature ``1 / tau`` (the student learned
``logit / (T * tau)``, so its calibrated score is the teacher's).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dfdetect.checkpoint import Checkpoint
from dfdetect.config import (
    ConfigError,
    ExperimentConfig,
    LossConfig,
    PreprocessConfig,
    StrictModel,
    apply_overrides,
    config_dict,
    deep_merge,
    load_yaml_tree,
    validate_config,
)
from dfdetect.io.files import atomic_write_text
from dfdetect.train import losses
from dfdetect.train.loop import Stage
from dfdetect.train.task import DeepfakeTask, model_inputs, to_device

log = logging.getLogger(__name__)

STUDENT_FILE = "student.pt"  # the exported student in the run dir


class DistillConfig(StrictModel):
    """The ``distill:`` section of a distillation experiment (the rest is an ordinary experiment)."""

    teacher: str | None = Field(None, description="teacher checkpoint (path or packaged model name)")
    size: int | None = Field(None, ge=32, description="student input size (None = the teacher's)")
    soft: float = Field(1.0, ge=0, description="weight of BCE/KL on the teacher's window probability")
    segment: float = Field(0.5, ge=0, description="weight of BCE/KL on the teacher's segment probabilities")
    hard: float = Field(0.5, ge=0, description="weight of the deepfake task's terms on known labels")
    tau: float = Field(1.0, gt=0, description="distillation temperature (softens the teacher's scores)")
    init_from_teacher: bool = Field(True, description="copy the teacher's weights where names match")
    half: bool = Field(False, description="store the exported student's weights in float16")


# ------------------------------------------------------------------------------------------------ config


def _teacher_path(teacher: str) -> Path:
    """The teacher's checkpoint file (a packaged model name is resolved by the CLI)."""
    path = Path(teacher)
    if not path.is_file():
        raise ConfigError(f"teacher checkpoint not found: {path} (give a .pt file or a packaged model name)")
    return path


def _data_item(item: str, cache: str | None, teacher_sources: list[dict]) -> dict[str, Any]:
    """One ``--data`` entry that is a prepared dir or a manifest CSV -> a source mapping."""
    path = Path(item)
    if path.is_dir():
        return {"prepared": str(path)}
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"--data {item}: give a data YAML, a prepared dir or a manifest .csv")
    same = [s for s in teacher_sources if _source_name(s) == path.stem]
    if cache is None and (path.parent / "cache").is_dir():
        cache = str(path.parent / "cache")
    if cache is None and same:  # RUN/data/<source>.csv of the teacher's run: the source's cache
        cache = str(Path(same[0].get("cache") or Path(same[0]["prepared"]) / "cache"))
    if cache is None:
        raise ConfigError(
            f"--data {item}: no cache/ beside it and no teacher source {path.stem!r}: give --cache"
        )
    source: dict[str, Any] = {"manifest": str(path), "cache": cache}
    if same and same[0].get("windows_per_video"):
        source["windows_per_video"] = same[0]["windows_per_video"]
    return source


def _source_name(source: dict) -> str:
    where = source.get("prepared") or Path(str(source.get("manifest", ""))).parent
    return Path(str(where)).name


def data_tree(items: Sequence[str], caches: Sequence[str], teacher: Checkpoint) -> dict[str, Any]:
    """The ``data`` section from ``--data`` entries: one data YAML, or prepared dirs / manifest CSVs whose
    sample settings (augmentation, pseudo-fakes, batch size...) come from the teacher's training data.

    ``caches`` pair, in order, with the CSVs that have no ``cache/`` beside them and no source of the
    teacher's run named like them (``RUN/data/<source>.csv`` finds ``<prepared>/<source>/cache``).
    """
    yamls = [i for i in items if Path(i).suffix.lower() in (".yaml", ".yml")]
    if yamls:
        if len(items) > 1:
            raise ConfigError("--data: give one data YAML, or prepared dirs / manifest CSVs (not both)")
        return load_yaml_tree(yamls[0])
    base = dict((teacher.train_config or {}).get("data") or {})
    teacher_sources = list(base.pop("sources", None) or [])
    base.pop("test_sources", None)
    pending = list(caches)
    sources = []
    for item in items:
        path = Path(item)
        needs = path.suffix.lower() == ".csv" and not (path.parent / "cache").is_dir()
        needs = needs and not any(_source_name(s) == path.stem for s in teacher_sources)
        sources.append(_data_item(item, pending.pop(0) if needs and pending else None, teacher_sources))
    return {**base, "sources": sources}


def distill_config(
    teacher: str | None = None,
    student: str | None = None,
    data: Sequence[str] = (),
    caches: Sequence[str] = (),
    config: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
) -> tuple[ExperimentConfig, DistillConfig]:
    """Assemble a distillation run: a base experiment YAML (``config``, with a ``distill:`` section)
    and/or the teacher, the student model YAML and the data; then dotted overrides (``distill.tau=2``).

    Raises:
        ConfigError: a missing or wrong part (the message names it).
    """
    tree = load_yaml_tree(config) if config else {"name": "distill"}
    if teacher:
        tree = deep_merge(tree, {"distill": {"teacher": str(teacher)}})
    if student:
        tree["model"] = load_yaml_tree(student)
    teacher_name = (tree.get("distill") or {}).get("teacher")
    if not teacher_name:
        raise ConfigError("no teacher: give --teacher CHECKPOINT (or distill.teacher in the config)")
    if data:
        tree["data"] = data_tree(data, caches, Checkpoint.load(_teacher_path(str(teacher_name))))
    tree = apply_overrides(tree, overrides)
    section = tree.pop("distill", None) or {}
    try:
        dcfg = DistillConfig(**section)
    except ValueError as e:
        raise ConfigError(f"distill section: {e}") from None
    return validate_config(tree, str(config or "distill")), dcfg


# ------------------------------------------------------------------------------------------------ model


def student_preprocess(
    teacher: PreprocessConfig, cfg: ExperimentConfig, size: int | None
) -> PreprocessConfig:
    """The teacher's preprocessing (same windows) with the student's input size and normalisation."""
    from dfdetect.models.factory import default_preprocess

    norm = default_preprocess(cfg.model.name, **cfg.model.kwargs())
    return teacher.model_copy(update={"size": size or teacher.size, "mean": norm["mean"], "std": norm["std"]})


def adapt_frames(frames: torch.Tensor, src: PreprocessConfig, dst: PreprocessConfig) -> torch.Tensor:
    """Frames normalised for ``src`` -> resized to ``dst.size`` and normalised for ``dst``.

    Args:
        frames: ``[B, T, 3, H, W]`` (or ``[B, T, 3, m, m]`` mouths, kept at their size when ``dst.size``
            is None).
    """
    dev, dt = frames.device, frames.dtype
    mean_s, std_s = (torch.tensor(v, device=dev, dtype=dt).view(3, 1, 1) for v in (src.mean, src.std))
    mean_d, std_d = (torch.tensor(v, device=dev, dtype=dt).view(3, 1, 1) for v in (dst.mean, dst.std))
    same_norm = tuple(src.mean) == tuple(dst.mean) and tuple(src.std) == tuple(dst.std)
    b, t = frames.shape[:2]
    x = frames if same_norm else frames * std_s + mean_s  # [B, T, 3, H, W] in [0, 1] when renormalised
    if x.shape[-1] != dst.size:
        x = F.interpolate(x.flatten(0, 1), size=(dst.size, dst.size), mode="bilinear", antialias=True,
                          align_corners=False).reshape(b, t, 3, dst.size, dst.size)  # fmt: skip
    return x if same_norm else (x - mean_d) / std_d


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, int]:
    """Copy the teacher's tensors into the student where the names match: whole where the shapes are
    equal, the leading block where the student's tensor is smaller in every dimension (e.g. the temporal
    input projection when the student drops the frequency branch, whose features come after the
    backbone's). Returns counts of ``copied``, ``sliced`` and ``kept`` (left as built) tensors."""
    own, theirs = student.state_dict(), teacher.state_dict()
    counts = {"copied": 0, "sliced": 0, "kept": 0}
    new = {}
    for name, value in own.items():
        src = theirs.get(name)
        if src is None or src.ndim != value.ndim:
            counts["kept"] += 1
        elif src.shape == value.shape:
            new[name], counts["copied"] = src.clone(), counts["copied"] + 1
        elif all(s >= v for s, v in zip(src.shape, value.shape, strict=True)):
            new[name] = src[tuple(slice(0, n) for n in value.shape)].clone()
            counts["sliced"] += 1
        else:
            counts["kept"] += 1
    student.load_state_dict(new, strict=False)
    log.info("student initialised from the teacher: %s", counts)
    return counts


# ------------------------------------------------------------------------------------------------ task


class DistillTask:
    """The loop's task for distillation (see the module docstring).

    Args:
        teacher: the teacher model (eval mode; never trained).
        temperature: the teacher's calibration temperature ``T``.
        cfg: the distillation weights and ``tau``.
        loss: the deepfake task's loss weights, used for the hard-label terms.
        teacher_pre / student_pre: the preprocessing the batches come with / the student expects.
    """

    def __init__(
        self,
        teacher: nn.Module,
        temperature: float,
        cfg: DistillConfig,
        loss: LossConfig,
        teacher_pre: PreprocessConfig,
        student_pre: PreprocessConfig,
    ) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.scale = float(temperature) * cfg.tau  # teacher logit / scale = the soft target's logit
        self.cfg, self.hard = cfg, DeepfakeTask(loss)
        self.teacher_pre, self.student_pre = teacher_pre, student_pre

    def on_stage(self, stage: Stage) -> None:
        self.hard.on_stage(stage)

    @torch.no_grad()
    def targets(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """The teacher's soft targets: ``logit`` [B] and ``segment_logits`` [B, K] as probabilities."""
        self.teacher.to(device).eval()
        out = self.teacher(**model_inputs(batch))
        return {
            k: torch.sigmoid(out[k].float() / self.scale) for k in ("logit", "segment_logits") if k in out
        }

    def student_inputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The batch's model inputs with frames (and mouths) made for the student's preprocessing."""
        inputs = model_inputs(batch)
        inputs["frames"] = adapt_frames(inputs["frames"], self.teacher_pre, self.student_pre)
        if "mouths" in inputs:
            keep = self.student_pre.model_copy(update={"size": inputs["mouths"].shape[-1]})
            inputs["mouths"] = adapt_frames(inputs["mouths"], self.teacher_pre, keep)
        return inputs

    def soft_terms(
        self, out: dict[str, torch.Tensor], soft: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Unweighted BCE of the student's logits against the teacher's probabilities (x tau^2)."""
        t2 = self.cfg.tau**2
        terms = {"soft": t2 * losses.bce(out["logit"].float(), soft["logit"])}
        seg, t_seg = out.get("segment_logits"), soft.get("segment_logits")
        if self.cfg.segment and seg is not None and t_seg is not None and seg.shape == t_seg.shape:
            terms["soft_segment"] = t2 * losses.bce(seg.float(), t_seg)  # [B, K]
        return terms

    def training_step(
        self, model: nn.Module, batch: dict[str, Any], device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Teacher targets, student forward, weighted soft + hard loss and what to log."""
        batch = to_device(batch, device)
        soft = self.targets(batch, device)
        out = model(**self.student_inputs(batch))
        terms = self.soft_terms(out, soft)
        weights = {"soft": self.cfg.soft, "soft_segment": self.cfg.segment}
        if self.cfg.hard:
            hard_w = self.hard.weights()
            for name, value in self.hard.compute_losses(out, batch).items():
                terms[name], weights[name] = value, self.cfg.hard * hard_w[name]
        loss = sum((weights[k] * v for k, v in terms.items()), start=out["logit"].sum() * 0.0)
        logs = {f"loss_{k}": float(v.detach()) for k, v in terms.items()}
        with torch.no_grad():
            p = torch.sigmoid(out["logit"].float())  # [B]
            logs["agree"] = float(((p > 0.5) == (soft["logit"] > 0.5)).float().mean())
            logs["gap"] = float((p - soft["logit"]).abs().mean())
        return loss, logs

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: dict[str, Any], device: torch.device) -> dict:
        """``label``/``score`` of the student, ``score/teacher`` (-> ``auc_teacher``), and per sample
        ``agree`` (same side of 0.5 as the teacher) and ``gap`` (|p_student - p_teacher|)."""
        batch = to_device(batch, device)
        soft = self.targets(batch, device)
        out = model(**self.student_inputs(batch))
        p = torch.sigmoid(out["logit"].float() * self.cfg.tau)  # calibrated: its temperature is 1 / tau
        p_teacher = torch.sigmoid(torch.logit(soft["logit"].clamp(1e-6, 1 - 1e-6)) * self.cfg.tau)
        return {
            "label": batch["label"].float(),
            "score": p,
            "score/teacher": p_teacher,
            "agree": ((p > 0.5) == (p_teacher > 0.5)).float(),
            "gap": (p - p_teacher).abs(),
        }


# ------------------------------------------------------------------------------------------------ run


def distill(
    cfg: ExperimentConfig,
    dcfg: DistillConfig,
    run_dir: str | os.PathLike | None = None,
    resume: bool | None = None,
) -> Path:
    """Distil ``dcfg.teacher`` into the model of ``cfg`` on ``cfg.data``; returns the exported student
    checkpoint ``RUN/student.pt`` (from ``checkpoints/best.pt``, the best validation AUC).

    The datasets use the teacher's preprocessing (``cfg.data.preprocess`` is replaced by it); the model
    config must agree with it on fps and segment length.
    """
    from dfdetect.train.loop import seed_everything
    from dfdetect.train.run import build_model, checkpoint_meta, train

    if not dcfg.teacher:
        raise ConfigError("no teacher checkpoint: set distill.teacher or give --teacher")
    teacher = Checkpoint.load(_teacher_path(dcfg.teacher))
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"preprocess": teacher.preprocess})})
    run = Path(run_dir) if run_dir else cfg.resolved_run_dir()
    student_pre = student_preprocess(teacher.preprocess, cfg, dcfg.size)
    seed_everything(cfg.train.seed)
    model = build_model(cfg)
    teacher_model = teacher.build_model()
    if dcfg.init_from_teacher:
        init_from_teacher(model, teacher_model)
    meta = checkpoint_meta(cfg)
    meta["preprocess"] = student_pre.model_dump(mode="json")
    meta["prepare"] = teacher.prepare.model_dump(mode="json")
    meta["calibration"] = {"temperature": 1.0 / dcfg.tau, "fitted_on": f"distilled from {dcfg.teacher}"}
    meta["train_config"] = {**meta["train_config"], "distill": dcfg.model_dump(mode="json")}
    if teacher.companions:
        meta["companions"] = {k: dict(v) for k, v in teacher.companions.items()}
    task = DistillTask(teacher_model, teacher.temperature, dcfg, cfg.loss, teacher.preprocess, student_pre)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "distill.yaml", _dump({"distill": dcfg.model_dump(mode="json")}))
    train(cfg, run_dir=run, resume=resume, model=model, task=task, meta=meta)
    best = run / "checkpoints" / "best.pt"
    source = best if best.is_file() else run / "checkpoints" / "last.pt"
    out = Checkpoint.load(source).exported(dcfg.half).save(run / STUDENT_FILE)
    log.info("student checkpoint: %s (from %s)", out, source.name)
    return out


def _dump(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def experiment_dict(cfg: ExperimentConfig, dcfg: DistillConfig) -> dict[str, Any]:
    """The whole resolved distillation config (experiment + ``distill`` section)."""
    return {**config_dict(cfg), "distill": dcfg.model_dump(mode="json")}
