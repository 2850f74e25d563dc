"""``dfdetect export model.pt --onnx model.onnx``: a checkpoint's detector as one self-describing ONNX file.

What is exported: the whole forward the scan core calls (frame encoder, frequency branch, temporal
module, audio branch and lip-sync head where the model has them, fusion, heads) with dynamic ``batch``,
``time`` (frames per window) and ``samples`` (audio per window) axes, in float32 (a float16 checkpoint
is exported in float32). Outputs: the heads the scan core reads (:data:`dfdetect.infer.score.HEADS`)
that the model has.

Exporter: torch.onnx's dynamo exporter (``torch.export`` + onnxscript, opset :data:`OPSET`). The legacy
TorchScript exporter cannot take these models with a dynamic time axis: its tracer turns sizes into
tensors, so the segment count ``round(T / fps / segment_seconds)`` fails (``Tensor`` has no
``__round__``), and the log-mel front end uses a complex STFT it cannot export. ``torch.export`` keeps
the time axis symbolic; the one missing translation, Python's ``round`` of a symbolic size, is given
here (:func:`_round`, ONNX ``Round`` is half-to-even like Python's). timm's ``tf_efficientnet_lite*``
(TF "same" padding) exports as is: its padding depends on the crop size only, which is fixed.

The metadata (``metadata_props[dfdetect]``, JSON) is described in :mod:`dfdetect.infer.onnx`. After
export the graph is run once in onnxruntime on fresh inputs of two shapes and compared with torch; the
largest difference is recorded (``check``) and the export fails above :data:`TOLERANCE`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect._version import __version__
from dfdetect.checkpoint import Checkpoint, CheckpointError
from dfdetect.infer.onnx import FORMAT, INPUTS, META_KEY, OnnxModel, read_metadata
from dfdetect.io.files import atomic_write

OPSET = 18
TOLERANCE = 1e-3  # largest |onnxruntime - torch| accepted on the export check (logits are ~1e-6 apart)
MAX_BATCH = 4096


class OnnxExportError(CheckpointError):
    """The model could not be exported to ONNX, or the exported graph disagrees with torch."""


def _round(x: Any, ndigits: Any = None) -> Any:
    """ONNX translation of ``builtins.round`` on a symbolic float (a size): int64 ``Round`` (half to even)."""
    from onnxscript import INT64
    from onnxscript import opset18 as op

    return op.Cast(op.Round(x), to=INT64.dtype)


def _graph(model: Any, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Any:
    """An ``nn.Module`` whose outputs are the tuple ``outputs`` (``inputs``: a prefix of :data:`INPUTS`)."""
    from torch import nn

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, frames: Any, audio: Any = None, audio_mask: Any = None, mouths: Any = None
        ) -> tuple:
            out = self.model(frames, audio=audio, audio_mask=audio_mask, mouths=mouths)
            return tuple(out[k] for k in outputs)

    return Graph().eval()


def _summary(err: Exception) -> str:
    """The useful part of an exporter error (torch.onnx wraps the cause in a page of advice)."""
    text = str(err)
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1].split("(Refer to the full stack trace", 1)[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: " + " ".join(lines[:4])


def _inputs(model: Any, ckpt: Checkpoint, batch: int, frames: int, seed: int) -> dict[str, Any]:
    """Random normalised inputs of the model's shape: ``batch`` windows of ``frames`` frames."""
    import torch

    pre = ckpt.preprocess
    g = torch.Generator().manual_seed(seed)
    x: dict[str, Any] = {"frames": torch.randn(batch, frames, 3, pre.size, pre.size, generator=g)}
    if "audio" in model.modalities:
        samples = max(1, round(frames / pre.fps * pre.sample_rate))
        x["audio"] = 0.1 * torch.randn(batch, samples, generator=g)  # [B, S]
        x["audio_mask"] = torch.arange(batch) % 2 == 0  # [B]: rows with and without audio
    if "sync" in model.modalities:
        x["mouths"] = torch.randn(batch, frames, 3, pre.mouth_size, pre.mouth_size, generator=g)
    return x


def _example_frames(model: Any, ckpt: Checkpoint) -> int:
    """Frames of the example window: at least two segments (no size-1 specialisation), within limits."""
    pre = ckpt.preprocess
    two_segments = math.ceil(2 * pre.fps * pre.segment_seconds) + 1
    return min(max(pre.clip_frames, two_segments), _max_frames(model))


def _max_frames(model: Any) -> int:
    """Longest window the temporal module takes without interpolating its positions."""
    temporal = getattr(model, "temporal", None)
    return int(temporal.pos.shape[1]) if temporal is not None else 1024


def _dynamic_shapes(names: tuple[str, ...], model: Any) -> tuple[dict[int, Any], ...]:
    """Dynamic axes of the graph inputs ``names``: batch, time (frames and mouths), audio samples."""
    from torch.export import Dim

    batch, time = Dim("batch", min=1, max=MAX_BATCH), Dim("time", min=1, max=_max_frames(model))
    axes = {"frames": {0: batch, 1: time}, "audio": {0: batch, 1: Dim.AUTO}, "audio_mask": {0: batch}}
    axes["mouths"] = {0: batch, 1: time}
    return tuple(axes[k] for k in names)


def _limits(program: Any) -> dict[str, list[int | None]]:
    """``{"time": [lo, hi], "samples": [lo, hi]}`` the exported program accepts (None = unbounded)."""
    ep = program.exported_program
    shapes = {
        n.name: n.meta["val"].shape for n in ep.graph.nodes if n.op == "placeholder" and "val" in n.meta
    }
    limits: dict[str, list[int | None]] = {}
    for name, axis, key in (("frames", 1, "time"), ("audio", 1, "samples")):
        if name not in shapes:
            continue
        size = shapes[name][axis]
        vr = ep.range_constraints.get(getattr(size, "node", size).expr) if hasattr(size, "node") else None
        lo, hi = (int(size), int(size)) if vr is None else (int(vr.lower), vr.upper)
        limits[key] = [max(1, lo), int(hi) if math.isfinite(float(hi)) else None]
    return limits


def _torch_export(model: Any, ckpt: Checkpoint) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """(ONNXProgram, input names, output names) of ``model`` (float32, eval mode)."""
    import torch

    from dfdetect.infer.score import HEADS

    example = _inputs(model, ckpt, 2, _example_frames(model, ckpt), seed=0)
    with torch.inference_mode():
        probe = model(**example)
    names = tuple(k for k in INPUTS if k in example)
    outputs = tuple(k for k in HEADS if probe.get(k) is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _graph(model, names, outputs),
            tuple(example[k] for k in names),
            dynamo=True,
            opset_version=OPSET,
            input_names=list(names),
            output_names=list(outputs),
            dynamic_shapes=_dynamic_shapes(names, model),
            custom_translation_table={builtins.round: _round},
            verbose=False,
        )
    return program, names, outputs


def _check(path: Path, model: Any, ckpt: Checkpoint) -> dict[str, Any]:
    """Largest |onnxruntime - torch| per output on fresh inputs of two shapes (batch 3 x the window of the
    checkpoint, batch 1 x the example window); raises :class:`OnnxExportError` above :data:`TOLERANCE`."""
    import torch

    session = OnnxModel(path, device="cpu")
    shapes = [(3, ckpt.preprocess.clip_frames), (1, _example_frames(model, ckpt))]
    diffs: dict[str, float] = {}
    for i, (batch, frames) in enumerate(shapes):
        x = _inputs(model, ckpt, batch, frames, seed=1 + i)
        with torch.inference_mode():
            ref = model(**x)
        got = session(**{k: v.numpy() for k, v in x.items()})
        for k, v in got.items():
            d = float(np.abs(v - ref[k].float().numpy()).max()) if v.size else 0.0
            diffs[k] = max(diffs.get(k, 0.0), d)
    worst = max(diffs.values())
    if not worst <= TOLERANCE:
        raise OnnxExportError(
            f"the ONNX graph disagrees with torch (max |diff| {worst:.2e} > {TOLERANCE}): {diffs}"
        )
    return {
        "shapes": [list(s) for s in shapes],
        "max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
    }


def _sha256(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import onnx
    import onnxscript
    import torch

    return {"dfdetect": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__}  # fmt: skip


def metadata(ckpt: Checkpoint, model: Any, names: tuple, outputs: tuple, limits: dict) -> dict[str, Any]:
    """The record stored under ``metadata_props[dfdetect]`` (without the export check)."""
    state = ckpt.to_state()
    keep = ("model_config", "preprocess", "prepare", "calibration", "companions", "metrics", "step", "epoch")
    record = {k: state[k] for k in keep if state.get(k) is not None}
    record["versions"] = dict(ckpt.versions)
    return {
        "format": FORMAT,
        "name": ckpt.name,
        "checkpoint": json.loads(json.dumps(record, default=str)),  # plain JSON (tuples -> lists, ...)
        "modalities": sorted(model.modalities),
        "inputs": list(names),
        "outputs": list(outputs),
        "limits": limits,
        "exported": {
            **_versions(),
            "opset": OPSET,
            "exporter": "torch.onnx dynamo (torch.export)",
            "dtype": "float32",
            "source": ckpt.path.name if ckpt.path is not None else None,
            "source_sha256": _sha256(ckpt.path),
        },
    }


def _save(proto: Any, path: Path, meta: dict[str, Any]) -> Path:
    """Write ``proto`` with ``meta`` as ``metadata_props[dfdetect]``, atomically, as one file."""
    import onnx

    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.producer_name, proto.producer_version = "dfdetect", __version__
    proto.doc_string = f"dfdetect {meta['name']} detector; metadata_props['{META_KEY}'] describes it (JSON)"
    return atomic_write(path, lambda tmp: onnx.save_model(proto, os.fspath(tmp)), suffix=".onnx")


def export_onnx(src: str | os.PathLike | Checkpoint, dst: str | os.PathLike) -> Path:
    """Export the detector of the checkpoint ``src`` to the ONNX file ``dst`` (see the module docstring).

    Returns:
        ``dst``.

    Raises:
        CheckpointError: ``src`` is not a readable checkpoint.
        OnnxExportError: the export failed, or its graph disagrees with torch.
    """
    import onnx

    ckpt = src if isinstance(src, Checkpoint) else Checkpoint.load(src)
    model = ckpt.build_model("cpu").float().eval()
    if not hasattr(model, "modalities"):
        raise OnnxExportError(f"model {ckpt.name!r} cannot be exported to ONNX (not a dfdetect detector)")
    try:
        program, names, outputs = _torch_export(model, ckpt)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; say which model failed
        raise OnnxExportError(f"cannot export model {ckpt.name!r} to ONNX: {_summary(e)}") from e
    meta = metadata(ckpt, model, names, outputs, _limits(program))
    proto = program.model_proto
    onnx.checker.check_model(proto)
    path = _save(proto, Path(dst), meta)
    meta["check"] = _check(path, model, ckpt)
    return _save(onnx.load(os.fspath(path)), path, meta)


def read_check(path: str | os.PathLike) -> dict[str, float]:
    """The export check of an ONNX file: largest |onnxruntime - torch| per output (empty if none)."""
    return dict((read_metadata(path).get("check") or {}).get("max_abs_diff") or {})
