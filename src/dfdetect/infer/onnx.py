"""Scanning on onnxruntime: a detector exported by ``dfdetect export --onnx`` behind the torch model's
call contract.

An exported file describes itself like a checkpoint does: the ONNX ``metadata_props`` entry
:data:`META_KEY` holds JSON with the checkpoint's model config, preprocessing, prepare settings,
calibration, companions (the speech model), metrics and versions, plus the graph's inputs, outputs and
shape limits (see :mod:`dfdetect.infer.onnx_export`). :class:`OnnxModel` reads it back into a
:class:`~dfdetect.checkpoint.Checkpoint` without weights, so ``load_detector("model.onnx")`` and
``dfdetect scan --model model.onnx`` need nothing else.

The model's forward runs in onnxruntime and takes numpy arrays (``numpy_inputs``): with the YuNet face
detector, silero-vad's ONNX model and a speech companion that is ONNX too, a scan imports no torch at all
(``docs/onnx.md``). ONNX graphs have no gradients and no training mode: Grad-CAM heatmaps (``--explain``)
and dropout-based uncertainty need the ``.pt`` checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.checkpoint import Checkpoint, CheckpointError

log = logging.getLogger(__name__)
META_KEY = "dfdetect"
FORMAT = 1  # version of the metadata layout
INPUTS = ("frames", "audio", "audio_mask", "mouths")  # names of the graph inputs (the forward's arguments)
NO_GRADIENTS = (
    "an ONNX model has no gradients: Grad-CAM heatmaps need the .pt checkpoint "
    "(scan with --model model.pt); attention and sync curves are still given"
)


def is_onnx(path: str | os.PathLike) -> bool:
    """True for a path that names an ONNX file (by its suffix)."""
    return Path(path).suffix.lower() == ".onnx"


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for a dfdetect ``device`` (``cpu``, ``cuda[:N]``, ``auto``): CUDA
    when asked for and this onnxruntime has it (``onnxruntime-gpu``), else the CPU (with a warning)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        log.warning("device %s: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); "
                    "running the ONNX model on the CPU", device)  # fmt: skip
    return ["CPUExecutionProvider"]


def parse_metadata(props: dict[str, str], where: str) -> dict[str, Any]:
    """The dfdetect metadata of an ONNX file from its ``metadata_props`` (validated)."""
    if META_KEY not in props:
        raise CheckpointError(
            f"{where} is an ONNX file without dfdetect metadata: export it with "
            "`dfdetect export model.pt --onnx model.onnx`"
        )
    try:
        meta = json.loads(props[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: unreadable dfdetect metadata ({e}); export it again") from e
    if int(meta.get("format", 0)) > FORMAT:
        raise CheckpointError(
            f"{where} was exported by a newer dfdetect (metadata format {meta.get('format')}, this one "
            f"reads {FORMAT}): upgrade dfdetect"
        )
    for key in ("checkpoint", "inputs", "outputs", "modalities"):
        if key not in meta:
            raise CheckpointError(f"{where}: dfdetect metadata lacks {key!r}; export it again")
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The dfdetect metadata stored in the ONNX file at ``path`` (weights not loaded)."""
    onnx = _require("onnx")
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"cannot read ONNX file {path}: {e}") from e
    return parse_metadata({p.key: p.value for p in proto.metadata_props}, str(path))


def _require(module: str) -> Any:
    """Import ``module`` (onnx, onnxruntime), or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise CheckpointError(f"ONNX models need {module} ({e}): pip install 'dfdetect[scale]'") from e


def _array(x: Any, dtype: type) -> np.ndarray:
    """A torch tensor or array-like as a contiguous numpy array of ``dtype``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


class OnnxModel:
    """A dfdetect detector exported to ONNX, run by onnxruntime.

    Called like the torch model, ``model(frames [B,T,3,H,W], audio=[B,S], audio_mask=[B], mouths=...)``
    (mouths ``[B,T,3,m,m]``) returns a dict of the exported heads (``logit [B]``, ``segment_logits [B,K]``,
    ...): torch tensors when ``frames`` is a torch tensor (what the scan core passes), else numpy arrays.

    Args:
        path: the ``.onnx`` file written by ``dfdetect export --onnx``.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when onnxruntime has its provider).
        threads: intra-op threads (default: ``$OMP_NUM_THREADS``, else onnxruntime's choice).

    Attributes:
        checkpoint: the :class:`Checkpoint` the file describes (no weights: ``build_model`` is not possible).
        meta: the whole metadata record; modalities: what the model looks at.
    """

    differentiable = False  # explain: no Grad-CAM (see explain_note)
    cam_layer = None
    numpy_inputs = True  # the scan core builds numpy batches for it (no torch)
    _noted = False

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no constant-folding notes on stderr
        threads = threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS") or 0)
        options.intra_op_num_threads, options.inter_op_num_threads = max(0, threads), 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see models/tower.py
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=providers_for(device))
        except Exception as e:
            raise CheckpointError(f"cannot load ONNX model {path}: {e}") from e
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = parse_metadata(props, str(path))
        self.checkpoint = Checkpoint.from_state({"model_state": {}, **self.meta["checkpoint"]}, path)
        self.modalities: set[str] = set(self.meta["modalities"])
        self.preprocess_cfg = self.checkpoint.preprocess.model_dump()
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.limits: dict[str, list[int]] = dict(self.meta.get("limits") or {})

    def __repr__(self) -> str:
        return (
            f"OnnxModel({str(self.path)!r}, {self.checkpoint.name}, providers={self.session.get_providers()})"
        )

    @property
    def explain_note(self) -> str:
        """Why explanations of this model have no heatmaps (logged as a warning the first time)."""
        if not self._noted:
            log.warning("%s: %s", self.path.name, NO_GRADIENTS)
            self._noted = True
        return NO_GRADIENTS

    def eval(self) -> OnnxModel:
        """No-op (an exported graph is always in inference mode)."""
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        """Refuses training mode: dropout and batch statistics are baked out of the graph."""
        if mode:
            raise CheckpointError(
                f"{self.path} is an ONNX export: it has no training mode (dropout is baked out), so training "
                "and dropout-based uncertainty need the .pt checkpoint"
            )
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        """No-op: the execution provider is chosen when the model is loaded (``device``)."""
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """No-op (no gradients)."""

    def feed(self, frames: Any, audio: Any = None, audio_mask: Any = None, mouths: Any = None) -> dict:
        """The onnxruntime input dict of one batch (numpy), checked against the exported limits."""
        x = _array(frames, np.float32)  # [B, T, 3, H, W]
        b, t = x.shape[:2]
        lo, hi = self.limits.get("time", [1, None])
        if t < lo or (hi is not None and t > hi):
            raise ValueError(f"{self.path.name} takes windows of {lo}..{hi} frames, got {t}")
        tower = self.meta.get("tower")
        if tower:  # the graph is the head of a frozen tower: run the tower first (models/tower.py)
            from dfdetect.models.tower import tower_features

            return {"features": tower_features(tower["encoder"], tower["feature"], x)}
        feed = {"frames": x}
        if "audio" in self.inputs:
            present = audio is not None
            a = _array(audio, np.float32) if present else np.zeros((b, 0), np.float32)  # [B, S]
            mask = _array(audio_mask, bool).reshape(b) if audio_mask is not None else np.full(b, present)
            need, most = (self.limits.get("samples") or [1, None])[:2]
            if a.shape[1] < int(need):  # shorter than the graph handles: silence after it
                a = np.pad(a, ((0, 0), (0, int(need) - a.shape[1])))
            if most is not None and a.shape[1] > int(most):
                raise ValueError(
                    f"{self.path.name} takes audio windows of {need}..{most} samples, got {a.shape[1]}"
                )
            feed["audio"], feed["audio_mask"] = a, mask
        if "mouths" in self.inputs:
            if mouths is None:
                raise ValueError(f"{self.path.name} has a lip-sync head: pass the mouth crops (mouths=...)")
            feed["mouths"] = _array(mouths, np.float32)  # [B, T, 3, m, m]
        return {k: v for k, v in feed.items() if k in self.inputs}

    def __call__(self, frames: Any, audio: Any = None, audio_mask: Any = None, mouths: Any = None) -> dict:
        """Run one batch of windows (see the class docstring); a graph exported for one window at a time
        (``limits["batch"] == [1, 1]``) runs them in turn."""
        feed = self.feed(frames, audio, audio_mask, mouths)
        n = len(next(iter(feed.values())))
        if (self.limits.get("batch") or [1, None])[1] == 1 and n > 1:
            rows = [self.session.run(self.outputs, {k: v[i : i + 1] for k, v in feed.items()})
                    for i in range(n)]  # fmt: skip
            outs = [np.concatenate(parts) for parts in zip(*rows, strict=True)]
        else:
            outs = self.session.run(self.outputs, feed)
        result = dict(zip(self.outputs, outs, strict=True))
        if hasattr(frames, "detach"):  # the scan core works on torch tensors: hand them back as such
            import torch

            return {k: torch.from_numpy(v) for k, v in result.items()}
        return result


@dataclass(frozen=True)
class OnnxCheckpoint(Checkpoint):
    """The :class:`Checkpoint` an exported ONNX file describes (from its metadata; no weights):
    :meth:`build_model` loads the graph into onnxruntime, so a :class:`~dfdetect.infer.pipeline.Detector`
    built from it scans like one built from the ``.pt``."""

    runtime = "onnxruntime"  # what runs the model (a torch checkpoint's is torch)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = None) -> OnnxCheckpoint:
        """Read the metadata of the ONNX file at ``path`` (``map_location`` ignored).

        The metadata is read by loading the graph into onnxruntime on the CPU (importing ``onnx`` costs
        more than that: ~1 s here); :meth:`build_model` then hands out that session for a CPU device.
        """
        if not Path(path).is_file():
            raise CheckpointError(f"ONNX model not found: {path}")
        model = OnnxModel(path, device="cpu")
        _LOADED[_key(path)] = model
        ckpt = model.checkpoint
        return cls(**{f: getattr(ckpt, f) for f in ckpt.__dataclass_fields__})

    def build_model(self, device: str | Any = "cpu") -> OnnxModel:
        """An :class:`OnnxModel` of the file on ``device`` (an onnxruntime execution provider)."""
        loaded = _LOADED.pop(_key(self.path), None)
        if loaded is not None and providers_for(str(device)) == ["CPUExecutionProvider"]:
            return loaded
        return OnnxModel(self.path, device=str(device))


_LOADED: dict[str, OnnxModel] = {}  # sessions opened by OnnxCheckpoint.load, until build_model takes them


def _key(path: str | os.PathLike) -> str:
    return os.fspath(Path(path).resolve())


def resolve_onnx_device(device: str = "auto") -> str:
    """A dfdetect ``device`` for an onnxruntime model, without torch: ``auto`` -> ``cuda`` when this
    onnxruntime has its CUDA provider, else ``cpu``; other values are kept (:func:`providers_for` falls
    back to the CPU with a warning)."""
    if device != "auto":
        return device
    ort = _require("onnxruntime")
    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """:meth:`Checkpoint.load`, or :meth:`OnnxCheckpoint.load` for an ``.onnx`` file."""
    return OnnxCheckpoint.load(path) if is_onnx(path) else Checkpoint.load(path)
