"""Checkpoints (DESIGN.md, "Checkpoint"): a checkpoint alone rebuilds the model and its preprocessing.

:class:`Checkpoint` is the one place that reads a checkpoint dict. It loads, validates, saves and
rebuilds everything a checkpoint describes: the model (with its preprocessing attached as
``model.preprocess_cfg``, timm's ``pretrained_cfg`` style), the :class:`PreprocessConfig`, the
:class:`PrepareConfig` of the data it was trained on, the calibration temperature and the versions.

On-disk keys: ``model_state, model_config, preprocess, prepare, calibration, companions, train_config, step,
epoch, metrics, versions`` plus training state (``optimizer, scheduler, scaler, rng, data_position, loop``)
kept as-is for exact resume. Written atomically. torch is imported only when a file is read or written.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dfdetect._version import __version__
from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.io.files import atomic_write

REQUIRED_KEYS = ("model_state", "model_config", "preprocess")
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "scaler", "rng", "data_position", "loop")
_TYPED_KEYS = ("model_state", "model_config", "preprocess", "prepare", "calibration", "companions")
_TYPED_KEYS += ("train_config", "step", "epoch", "metrics", "versions")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or lacks what is needed to rebuild its model."""


def versions() -> dict[str, str]:
    """Versions recorded in every saved checkpoint."""
    import timm
    import torch

    return {
        "dfdetect": __version__,
        "torch": str(torch.__version__),  # a plain str: torch-free readers can unpickle it
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def _fields(model: type, values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in model.model_fields}


def _companions(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """Validated ``companions``: ``{"speech": {"model": name or path, "p0": optional float in [0, 1)}}``."""
    out = {}
    for kind, spec in dict(value or {}).items():
        if kind != "speech" or not isinstance(spec, dict) or not str(spec.get("model") or ""):
            expected = "{'speech': {'model': NAME, 'p0': optional float}}"
            raise CheckpointError(f"{where}: companions must be {expected}, got {value!r}")
        p0 = spec.get("p0")
        if p0 is not None and not 0.0 <= float(p0) < 1.0:
            raise CheckpointError(f"{where}: companions.speech.p0 must be in [0, 1), got {p0}")
        out[kind] = {**spec, "model": str(spec["model"]), **({} if p0 is None else {"p0": float(p0)})}
    return out


def _recorded_prepare(state: dict[str, Any]) -> dict[str, Any] | None:
    """The prepare settings a checkpoint records (top level, else inside its train config)."""
    if isinstance(state.get("prepare"), dict) and state["prepare"]:
        return state["prepare"]
    train = state.get("train_config") or {}
    data = train.get("data") if isinstance(train, dict) else None
    recorded = data.get("prepare") if isinstance(data, dict) else None
    return recorded if isinstance(recorded, dict) and recorded else None


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint. Build with :meth:`load` or :meth:`from_state`; write with :meth:`save`.

    Attributes:
        model_state: the model's ``state_dict``.
        model_config: ``{"name": registry name, **create_model kwargs}``.
        preprocess: how cached clips become model inputs (fps, size, mean, std, sample rate, ...).
        prepare: how videos become clips; the recorded settings, else defaults matching ``preprocess``.
        temperature: calibration temperature (``p = sigmoid(logit / T)``).
        calibration: the whole calibration record (temperature, ECE report, what it was fitted on; a
            speech model also its ``real_voice_ceiling``, see :attr:`real_voice_ceiling`).
        companions: models that score other modalities of a scan with this one, with their fusion
            parameters: ``{"speech": {"model": "aasist-l", "p0": 0.6}}`` (``p0`` optional, else the speech
            checkpoint's own ceiling). Set with :meth:`with_speech` / :func:`attach_speech`.
        preprocess_extra: preprocess keys :class:`PreprocessConfig` does not type (a speech model's
            ``codec``/``bitrate``), written back unchanged.
        train_config, step, epoch, metrics, versions: training facts, kept for reports.
        training_state: optimizer / scheduler / scaler / RNG / data position (empty once exported).
        path: the file it was read from, if any.
    """

    model_state: dict[str, Any]
    model_config: dict[str, Any]
    preprocess: PreprocessConfig
    prepare: PrepareConfig
    calibration: dict[str, Any] = field(default_factory=lambda: {"temperature": 1.0})
    companions: dict[str, dict[str, Any]] = field(default_factory=dict)
    preprocess_extra: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] | None = None
    step: int | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back unchanged
    path: Path | None = None

    # -- reading -----------------------------------------------------------------------------------

    @classmethod
    def from_state(cls, state: dict[str, Any], path: str | os.PathLike | None = None) -> Checkpoint:
        """Validate a checkpoint dict and type it. Raises :class:`CheckpointError` saying what is wrong."""
        where = str(path) if path is not None else "checkpoint"
        missing = [k for k in REQUIRED_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{where} is not a dfdetect checkpoint (missing {missing})")
        config = dict(state["model_config"] or {})
        if not config.get("name"):
            raise CheckpointError(f"{where}: model_config has no model name")
        try:
            raw_pre = dict(state["preprocess"] or {})
            pre = PreprocessConfig(**_fields(PreprocessConfig, raw_pre))
            recorded = _recorded_prepare(state)
            if recorded is not None:
                prep = PrepareConfig(**_fields(PrepareConfig, recorded))
            else:
                same = {k: getattr(pre, k) for k in ("fps", "size", "margin", "sample_rate")}
                prep = PrepareConfig(**same)
        except ValueError as e:
            raise CheckpointError(f"{where}: invalid preprocessing settings: {e}") from e
        calibration = dict(state.get("calibration") or {})
        calibration["temperature"] = float(calibration.get("temperature", 1.0))
        if not calibration["temperature"] > 0:
            raise CheckpointError(f"{where}: calibration temperature must be > 0")
        return cls(
            model_state=state["model_state"],
            model_config=config,
            preprocess=pre,
            prepare=prep,
            calibration=calibration,
            companions=_companions(state.get("companions"), where),
            preprocess_extra={k: v for k, v in raw_pre.items() if k not in PreprocessConfig.model_fields},
            train_config=state.get("train_config"),
            step=state.get("step"),
            epoch=state.get("epoch"),
            metrics=dict(state.get("metrics") or {}),
            versions=dict(state.get("versions") or {}),
            training_state={k: state[k] for k in TRAINING_STATE_KEYS if k in state},
            extra={k: v for k, v in state.items() if k not in _TYPED_KEYS + TRAINING_STATE_KEYS},
            path=Path(path) if path is not None else None,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu") -> Checkpoint:
        """Read and validate the checkpoint file at ``path``."""
        return cls.from_state(read_state(path, map_location), path)

    # -- what it describes ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Registry name of the model (``model_config["name"]``)."""
        return str(self.model_config["name"])

    @property
    def runtime(self) -> str:
        """What runs the model: ``torch``, or ``numpy`` for a family that imports no torch (its
        ``PretrainedCfg.runtime``; an unregistered name counts as torch)."""
        from dfdetect.models.factory import MODELS, pretrained_cfg

        return pretrained_cfg(self.name).runtime if self.name in MODELS else "torch"

    @property
    def temperature(self) -> float:
        return float(self.calibration["temperature"])

    @property
    def real_voice_ceiling(self) -> float | None:
        """A speech model's score that only 5 % of held-out real voices exceed (None if not measured)."""
        value = self.calibration.get("real_voice_ceiling")
        return None if value is None else float(value)

    @property
    def input_codec(self) -> tuple[str, int] | None:
        """``(codec, bitrate)`` every audio input goes through before this model (speech models), or None."""
        codec = self.preprocess_extra.get("codec")
        if not codec or codec == "none":
            return None
        return str(codec), int(self.preprocess_extra.get("bitrate") or 48000)

    def build_model(self, device: str | Any = "cpu") -> Any:
        """Rebuild the model: weights loaded, eval mode, on ``device``, ``preprocess_cfg`` attached."""
        from dfdetect.models.factory import create_model

        cfg = dict(self.model_config)
        name = cfg.pop("name")
        cfg["pretrained"] = False  # the weights come from the checkpoint
        cfg.pop("pretrained_path", None)
        try:
            model = create_model(name, **cfg)
            model.load_state_dict(self.model_state)
        except (KeyError, TypeError, RuntimeError) as e:
            where = self.path or "checkpoint"
            raise CheckpointError(f"{where}: cannot rebuild model {name!r}: {e}") from e
        model.preprocess_cfg = self.preprocess.model_dump()
        return model.eval().to(device)

    def prepare_config(self, max_duration: float | None = None) -> PrepareConfig:
        """The prepare settings, with ``max_duration`` overridden when given."""
        if max_duration is None:
            return self.prepare
        return self.prepare.model_copy(update={"max_duration": max_duration})

    # -- writing ------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The plain dict that :meth:`save` writes (the inverse of :meth:`from_state`)."""
        state: dict[str, Any] = {
            **self.extra,
            "model_state": self.model_state,
            "model_config": dict(self.model_config),
            "preprocess": {**self.preprocess_extra, **self.preprocess.model_dump()},
            "prepare": self.prepare.model_dump(),
            "calibration": dict(self.calibration),
            **({"companions": {k: dict(v) for k, v in self.companions.items()}} if self.companions else {}),
            "train_config": self.train_config,
            "metrics": dict(self.metrics),
            **({"versions": dict(self.versions)} if self.versions else {}),
            **self.training_state,
        }
        state.update({k: v for k, v in (("step", self.step), ("epoch", self.epoch)) if v is not None})
        return state

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically to ``path`` (current versions recorded when it has none)."""
        return save_state(path, self.to_state())

    def with_temperature(self, temperature: float, info: dict[str, Any] | None = None) -> Checkpoint:
        """A copy calibrated with ``temperature`` (``info``, e.g. an ECE report, kept beside it)."""
        if not temperature > 0:
            raise CheckpointError(f"temperature must be > 0, got {temperature}")
        calibration = {**self.calibration, **(info or {}), "temperature": float(temperature)}
        return replace(self, calibration=calibration)

    def with_speech(self, speech: str | None = "aasist-l", p0: float | None = None) -> Checkpoint:
        """A copy whose scans also score the speech of a video with the speech model ``speech`` (a model name
        or checkpoint path; None removes the companion). ``p0``: real-voice ceiling used by the fusion
        (default: the speech checkpoint's ``calibration["real_voice_ceiling"]``, read when scanning)."""
        companions = {k: v for k, v in self.companions.items() if k != "speech"}
        if speech is not None:
            spec = {"model": str(speech), **({} if p0 is None else {"p0": float(p0)})}
            companions.update(_companions({"speech": spec}, str(self.path or "checkpoint")))
        return replace(self, companions=companions)

    def with_real_voice_ceiling(self, p0: float, info: dict[str, Any] | None = None) -> Checkpoint:
        """A speech model's copy that records its real-voice ceiling ``p0`` (and how it was measured)."""
        if not 0.0 <= p0 < 1.0:
            raise CheckpointError(f"real_voice_ceiling must be in [0, 1), got {p0}")
        extra = {"real_voice_ceiling_info": dict(info)} if info else {}
        return replace(self, calibration={**self.calibration, "real_voice_ceiling": float(p0), **extra})

    def exported(self, half: bool = False) -> Checkpoint:
        """A copy without the training state: what ships (a third of the size). ``half`` stores the
        floating-point weights in float16 (half the size again); they load back into the float32 model."""
        state = self.model_state
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        return replace(self, training_state={}, model_state=state)


def _read_without_torch(path: Path) -> dict[str, Any] | None:
    """A checkpoint that holds no tensors (a frozen-encoder model's numpy head) read without importing
    torch: ``torch.save`` wrote a zip whose ``data.pkl`` is then a plain pickle. None for anything else."""
    import pickle
    import zipfile

    class _Plain(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module.split(".")[0] == "torch":
                raise pickle.UnpicklingError("holds torch objects")
            return super().find_class(module, name)

        def persistent_load(self, pid: Any) -> Any:  # a tensor storage
            raise pickle.UnpicklingError("holds tensors")

    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl")]
            if len(names) != 1 or any("/data/" in n for n in z.namelist()):
                return None
            with z.open(names[0]) as f:
                return _Plain(f).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, OSError, AttributeError, ImportError, EOFError):
        return None


def read_state(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint file as a dict (training resumes from it); checked like :meth:`Checkpoint.load`.
    A checkpoint without tensors is read without importing torch (see :func:`_read_without_torch`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = _read_without_torch(path)
    if state is not None:
        return _checked(state, path)
    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}; is it a dfdetect .pt file?") from e
    return _checked(state, path)


def _checked(state: Any, path: Path) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a dfdetect checkpoint (not a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a dfdetect checkpoint (missing {missing})")
    return state


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save a checkpoint dict (at least :data:`REQUIRED_KEYS`) atomically, recording current versions."""
    import torch

    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint state lacks {missing}")
    state = {"versions": versions(), "calibration": {"temperature": 1.0}, **state}
    return atomic_write(path, lambda tmp: torch.save(state, tmp), suffix=".pt")


def attach_speech(
    path: str | os.PathLike,
    speech: str | None = "aasist-l",
    p0: float | None = None,
    dst: str | os.PathLike | None = None,
) -> Path:
    """Declare the speech companion of the video checkpoint at ``path`` and write it (to ``dst``, default
    in place; training state kept). ``speech=None`` removes it. See :meth:`Checkpoint.with_speech`."""
    return Checkpoint.load(path).with_speech(speech, p0).save(dst if dst is not None else path)


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, half: bool = False) -> Path:
    """Write a copy of ``src`` without the training state (optimizer, scheduler, RNG, ...); ``half``:
    weights stored in float16."""
    return Checkpoint.load(src).exported(half).save(dst)
