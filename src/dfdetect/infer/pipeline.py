"""Scan pipeline: video file -> decode + faces + audio -> model -> calibrated :class:`Prediction`.

A :class:`Detector` is built once from a checkpoint (model, temperature, preprocessing, and the
prepare parameters it was trained with) and scans any number of files. It never raises for a bad
file: the returned :class:`~dfdetect.types.Prediction` carries the status and a message instead.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.types import Clip, Prediction, Status

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ts", ".mts"}
)
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "default"


class ModelNotFoundError(LookupError):
    """No checkpoint matches the requested model name or path."""


# ---------------------------------------------------------------------------------------------
# Model lookup
# ---------------------------------------------------------------------------------------------


def models_dir() -> Path:
    """The user's models directory: ``$DFDETECT_MODELS``, else ``~/.cache/dfdetect/models``."""
    env = os.environ.get("DFDETECT_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dfdetect" / "models"


def _model_files() -> dict[str, Path]:
    """Name -> checkpoint file; the models directory wins over the packaged weights."""
    found: dict[str, Path] = {}
    for folder in (WEIGHTS_DIR, models_dir()):
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.glob("*.pt")) if p.is_file()})
    return found


def available_models() -> list[str]:
    """Names accepted by :func:`load_detector` (models directory + packaged weights), sorted."""
    return sorted(_model_files())


def resolve_model(name_or_path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Find the checkpoint file for ``name_or_path``; returns ``(path, display name)``.

    Raises:
        ModelNotFoundError: no such file or name; the message lists the available names.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.suffix == ".pt" or os.sep in text or "/" in text
    if path.is_file():
        return path, path.stem
    files = _model_files()
    if not looks_like_path and text in files:
        return files[text], text
    names = ", ".join(sorted(files)) or "none"
    if looks_like_path:
        raise ModelNotFoundError(f"checkpoint file not found: {path}")
    hint = f"put <name>.pt files in {models_dir()} (or set $DFDETECT_MODELS), or pass a checkpoint path"
    if text == DEFAULT_MODEL:
        raise ModelNotFoundError(
            f"the default model is not installed ({WEIGHTS_DIR / 'default.pt'} is missing); "
            f"available models: {names}; {hint}"
        )
    raise ModelNotFoundError(f"unknown model {text!r}; available models: {names}; {hint}")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; other values are checked and kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return device


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def expand_inputs(paths: Iterable[str | os.PathLike], recursive: bool = True) -> tuple[list[str], list[str]]:
    """Expand files, folders (their video files) and glob patterns.

    Returns:
        ``(found, missing)``: existing files in input order without duplicates, and the arguments
        that matched nothing (a missing file, an empty folder or a glob without matches).
    """
    found: dict[str, None] = {}
    missing: list[str] = []
    for item in paths:
        text = os.fspath(item)
        p = Path(text).expanduser()
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            matches = [
                q for q in sorted(p.glob(pattern)) if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS
            ]
        elif p.is_file():
            matches = [p]
        elif glob.has_magic(text):
            hits = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            matches = [Path(h) for h in hits if Path(h).is_file()]
        else:
            matches = []
        if not matches:
            missing.append(text)
        found.update({str(m): None for m in matches})
    return list(found), missing


# ---------------------------------------------------------------------------------------------
# Configs from a checkpoint
# ---------------------------------------------------------------------------------------------


def _fields(model: type, values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in model.model_fields}


def preprocess_from_state(state: dict[str, Any]) -> PreprocessConfig:
    """The :class:`PreprocessConfig` recorded in a checkpoint (unknown keys ignored)."""
    return PreprocessConfig(**_fields(PreprocessConfig, dict(state.get("preprocess") or {})))


def prepare_from_state(state: dict[str, Any], max_duration: float | None = None) -> PrepareConfig:
    """The prepare parameters a checkpoint was trained with, else defaults matching its preprocessing."""
    train = state.get("train_config") or {}
    data = (train.get("data") or {}) if isinstance(train, dict) else {}
    recorded = state.get("prepare") or (data.get("prepare") if isinstance(data, dict) else None)
    if isinstance(recorded, dict) and recorded:
        cfg = PrepareConfig(**_fields(PrepareConfig, recorded))
    else:
        pre = preprocess_from_state(state)
        cfg = PrepareConfig(fps=pre.fps, size=pre.size, margin=pre.margin, sample_rate=pre.sample_rate)
    if max_duration is not None:
        cfg = cfg.model_copy(update={"max_duration": max_duration})
    return cfg


# ---------------------------------------------------------------------------------------------
# Detector
# ---------------------------------------------------------------------------------------------


class Detector:
    """A loaded model that scans videos into calibrated, explained :class:`Prediction` objects.

    Args:
        state: a loaded checkpoint dict (:func:`dfdetect.train.checkpoint.load_checkpoint`).
        name: model name shown in predictions and reports.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        thresholds: ``(low, high)``: p_fake <= low is real, >= high is fake, between is uncertain.
        aggregation: how window scores become a track score (see :mod:`dfdetect.eval.aggregate`).
        max_duration: seconds read from each video (default: the checkpoint's prepare setting).
    """

    def __init__(
        self,
        state: dict[str, Any],
        name: str = "",
        device: str = "auto",
        thresholds: tuple[float, float] = (0.35, 0.65),
        aggregation: str = "mean",
        max_duration: float | None = None,
    ) -> None:
        from dfdetect.train.checkpoint import build_model, temperature

        low, high = float(thresholds[0]), float(thresholds[1])
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"thresholds must satisfy 0 <= low <= high <= 1, got {thresholds}")
        self.device = resolve_device(device)
        self.model = build_model(state).to(self.device)
        self.name = name or str(state.get("model_config", {}).get("name", "model"))
        self.model_config = dict(state.get("model_config", {}))
        self.preprocess = preprocess_from_state(state)
        self.prepare_config = prepare_from_state(state, max_duration)
        self.temperature = temperature(state)
        self.thresholds = (low, high)
        self.aggregation = aggregation
        self._face_detector: Any = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs: Any) -> Detector:
        """Load the checkpoint at ``path`` (see :func:`load_detector` for names)."""
        from dfdetect.train.checkpoint import load_checkpoint

        kwargs.setdefault("name", Path(path).stem)
        return cls(load_checkpoint(path, map_location="cpu"), **kwargs)

    @property
    def face_detector(self) -> Any:
        """The face detector of the prepare config, created once per :class:`Detector`."""
        if self._face_detector is None:
            from dfdetect.faces.detect import detector_from_config

            self._face_detector = detector_from_config(self.prepare_config, device=self.device)
        return self._face_detector

    def scan(
        self,
        path: str | os.PathLike,
        explain: bool = False,
        explain_dir: str | os.PathLike | None = None,
        thumbnails: bool = False,
    ) -> Prediction:
        """Scan one video; never raises for a bad file (the status and message say what happened).

        Args:
            path: the video file.
            explain: add Grad-CAM heatmaps, attention and sync curves to ``extras["explain"]``.
            explain_dir: write explanation images there (paths in extras) instead of inline base64.
            thumbnails: add a thumbnail per face track to ``extras["thumbnails"]`` (implied by explain).

        Returns:
            The :class:`Prediction`, with ``timings`` in seconds per stage.
        """
        path = os.fspath(path)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        try:
            clip = self._prepare(path, timings)
        except Exception as e:  # noqa: BLE001 - a bad file becomes a status, never a crash
            return self._failure(path, e, timings, start)
        try:
            pred = self._score(clip, timings)
            if explain and pred.p_fake is not None:
                pred = self._explain(clip, pred, timings, explain_dir)
            if (explain or thumbnails) and clip.faces:
                from dfdetect.infer.explain import thumbnail_extras

                pred = dataclasses.replace(
                    pred, extras={**pred.extras, "thumbnails": thumbnail_extras(clip, explain_dir)}
                )
        except Exception as e:  # noqa: BLE001
            return self._failure(path, e, timings, start)
        timings["total"] = time.perf_counter() - start
        return dataclasses.replace(pred, timings=_ordered(timings), model=self.name)

    def scan_many(
        self,
        paths: Iterable[str | os.PathLike],
        explain: bool = False,
        explain_dir: str | os.PathLike | None = None,
        progress: bool = True,
        thumbnails: bool = False,
    ) -> Iterator[Prediction]:
        """Scan files, folders and glob patterns one by one (a tqdm bar on stderr).

        Arguments that match nothing yield an ``unreadable`` prediction saying so.
        """
        from tqdm import tqdm

        found, missing = expand_inputs(paths)
        for text in missing:
            yield Prediction(
                path=text,
                status=Status.UNREADABLE,
                message="no such file, or no video files matched; check the path or pattern",
                model=self.name,
            )
        bar = tqdm(found, desc="scan", unit="video", disable=not progress, dynamic_ncols=True)
        for item in bar:
            bar.set_postfix_str(Path(item).name[-40:])
            sub = Path(explain_dir) / _safe_stem(item) if explain_dir is not None else None
            yield self.scan(item, explain=explain, explain_dir=sub, thumbnails=thumbnails)

    # -- stages ----------------------------------------------------------------------------------

    def _prepare(self, path: str, timings: dict[str, float]) -> Clip:
        """prepare_clip with the stage seconds (decode, detect, track_crop, audio) merged into ``timings``."""
        from dfdetect.data.prepare import prepare_clip

        t = time.perf_counter()
        stages: dict[str, float] = {}
        try:
            return prepare_clip(path, self.prepare_config, detector=self.face_detector, timings=stages)
        finally:
            timings.update({k: float(v) for k, v in stages.items() if k != "total"})
            timings["prepare"] = time.perf_counter() - t

    def _score(self, clip: Clip, timings: dict[str, float]) -> Prediction:
        from dfdetect.eval.scoring import score_clip

        t = time.perf_counter()
        pred = score_clip(
            self.model,
            clip,
            self.preprocess,
            temperature=self.temperature,
            aggregation=self.aggregation,
            device=self.device,
            thresholds=self.thresholds,
        )
        timings["model"] = time.perf_counter() - t
        extras = {"duration": clip.info.duration, **pred.extras}
        return dataclasses.replace(pred, extras=extras)

    def _explain(
        self, clip: Clip, pred: Prediction, timings: dict[str, float], out_dir: str | os.PathLike | None
    ) -> Prediction:
        from dfdetect.infer.explain import explain_clip

        t = time.perf_counter()
        explanation = explain_clip(
            self.model,
            clip,
            self.preprocess,
            prediction=pred,
            temperature=self.temperature,
            device=self.device,
        )
        extras = {**pred.extras, "explain": explanation.to_extras(out_dir)}
        timings["explain"] = time.perf_counter() - t
        return dataclasses.replace(pred, extras=extras)

    def _failure(self, path: str, err: Exception, timings: dict[str, float], start: float) -> Prediction:
        from dfdetect.io.video import MediaError

        timings["total"] = time.perf_counter() - start
        timings = _ordered(timings)
        if isinstance(err, MediaError):
            status, message = Status(err.status), str(err)
        else:
            log.warning("scan of %s failed", path, exc_info=err)
            status, message = Status.ERROR, f"unexpected {type(err).__name__}: {err}"
        return Prediction(path=path, status=status, message=message, timings=timings, model=self.name)


_STAGES = ("decode", "detect", "track_crop", "audio", "prepare", "model", "explain", "total")


def _ordered(timings: dict[str, float]) -> dict[str, float]:
    """Stage seconds in pipeline order, rounded to 0.1 ms."""
    keys = [k for k in _STAGES if k in timings] + [k for k in timings if k not in _STAGES]
    return {k: round(float(timings[k]), 4) for k in keys}


def _safe_stem(path: str) -> str:
    stem = Path(path).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "video"


def load_detector(
    name_or_path: str | os.PathLike | None = None, device: str = "auto", **kwargs: Any
) -> Detector:
    """Load a :class:`Detector` by checkpoint path, model name, or ``None`` for the default model.

    Raises:
        ModelNotFoundError: unknown name or missing file (the message lists the available names).
        dfdetect.train.checkpoint.CheckpointError: the file is not a readable dfdetect checkpoint.
    """
    path, name = resolve_model(name_or_path)
    kwargs.setdefault("name", name)
    return Detector.from_checkpoint(path, device=device, **kwargs)
