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
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect._version import __version__
from dfdetect.checkpoint import Checkpoint, CheckpointError
from dfdetect.hub import sha256_file
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
    """An ``nn.Module`` whose outputs are the tuple ``outputs`` (``inputs``: a prefix of :data:`INPUTS`, or
    ``("features",)`` for a model with a frozen tower: the graph is its head)."""
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, features: Any) -> tuple:
            out = self.model.from_features(features)
            return tuple(out[k].clone() for k in outputs)

    if inputs == ("features",):
        return Head().eval()

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, frames: Any, audio: Any = None, audio_mask: Any = None, mouths: Any = None
        ) -> tuple:
            out = self.model(frames, audio=audio, audio_mask=audio_mask, mouths=mouths)
            # a copy each: heads that are one tensor (logit and video_logit) stay separate graph outputs
            return tuple(out[k].clone() for k in outputs)

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
    axes["mouths"] = axes["features"] = {0: batch, 1: time}
    return tuple(axes[k] for k in names)


def _limits(program: Any) -> dict[str, list[int | None]]:
    """``{"batch": [lo, hi], "time": [lo, hi], "samples": [lo, hi]}`` the exported program accepts (None =
    unbounded)."""
    ep = program.exported_program
    shapes = {
        n.name: n.meta["val"].shape for n in ep.graph.nodes if n.op == "placeholder" and "val" in n.meta
    }
    limits: dict[str, list[int | None]] = {}
    first = "features" if "features" in shapes else "frames"
    for name, axis, key in ((first, 0, "batch"), (first, 1, "time"), ("audio", 1, "samples")):
        if name not in shapes:
            continue
        size = shapes[name][axis]
        vr = ep.range_constraints.get(getattr(size, "node", size).expr) if hasattr(size, "node") else None
        lo, hi = (int(size), int(size)) if vr is None else (int(vr.lower), vr.upper)
        limits[key] = [max(1, lo), int(hi) if math.isfinite(float(hi)) else None]
    return limits


def _torch_export(
    model: Any, ckpt: Checkpoint, static: bool = False
) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """(ONNXProgram, input names, output names) of ``model`` (float32, eval mode); ``static``: one window
    of the checkpoint's shape (batch 1, ``clip_frames`` frames, its audio samples), no dynamic axis."""
    import torch

    from dfdetect.infer.score import HEADS

    if getattr(model, "tower", None):  # the tower runs in onnxruntime before the graph: export the head
        frames = _inputs(model, ckpt, 2, _example_frames(model, ckpt), seed=0)["frames"]
        example = {"features": torch.from_numpy(model.encode(frames))}  # [B, T, D]
    elif static:
        example = _inputs(model, ckpt, 1, ckpt.preprocess.clip_frames, seed=0)
        if "audio" in example:
            example["audio"] = 0.1 * torch.randn(1, ckpt.preprocess.audio_samples)  # [1, S] a scan's window
    else:
        example = _inputs(model, ckpt, 2, _example_frames(model, ckpt), seed=0)
    with torch.inference_mode():
        probe = model.from_features(example["features"]) if "features" in example else model(**example)
    names = ("features",) if "features" in example else tuple(k for k in INPUTS if k in example)
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
            dynamic_shapes=None if static else _dynamic_shapes(names, model),
            custom_translation_table={builtins.round: _round},
            optimize=False,  # optimize_keeping_half instead: a float16 checkpoint's weights stay float16
            verbose=False,
        )
    return program, names, outputs


def _static_export(model: Any, ckpt: Checkpoint, cause: Exception) -> tuple[Any, tuple, tuple]:
    """The export of an audio-only model whose graph torch.export specialises to its example's batch
    (AASIST: its waveform framing and graph pooling are computed in Python from sizes): one window of
    the scan's shape (an audio scan's windows all have ``pre.audio_samples``); :class:`OnnxModel` runs a
    batch window by window."""
    try:
        return _torch_export(model, ckpt, static=True)
    except Exception as e:  # noqa: BLE001
        raise OnnxExportError(
            f"cannot export model {ckpt.name!r} to ONNX, with dynamic axes ({_summary(cause)}) or for one "
            f"window ({_summary(e)})"
        ) from e


def _check(path: Path, model: Any, ckpt: Checkpoint) -> dict[str, Any]:
    """Largest |onnxruntime - torch| per output on fresh inputs of two shapes (batch 3 x the window of the
    checkpoint, batch 1 x the example window); raises :class:`OnnxExportError` above :data:`TOLERANCE`."""
    import torch

    session = OnnxModel(path, device="cpu")
    if set(session.outputs) != set(session.meta["outputs"]):
        raise OnnxExportError(f"the ONNX graph has outputs {session.outputs}, not {session.meta['outputs']}")
    static = session.limits.get("batch") == [1, 1]  # one window of the scan's shape (_static_export)
    shapes = [(3, ckpt.preprocess.clip_frames), (1, _example_frames(model, ckpt))]
    if static:
        shapes[1] = (1, ckpt.preprocess.clip_frames)
    diffs: dict[str, float] = {}
    for i, (batch, frames) in enumerate(shapes):
        x = _inputs(model, ckpt, batch, frames, seed=1 + i)
        if "audio" in x and static:
            x["audio"] = 0.1 * torch.randn(batch, ckpt.preprocess.audio_samples)  # [B, S]
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
        "tower": dict(getattr(model, "tower", None) or {}),  # run before the graph (models/tower.py)
        "exported": {
            **_versions(),
            "opset": OPSET,
            "exporter": "torch.onnx dynamo (torch.export)",
            "dtype": "float32",
            "source": ckpt.path.name if ckpt.path is not None else None,
            "source_sha256": sha256_file(ckpt.path) if ckpt.path and ckpt.path.is_file() else None,
        },
    }


def half_initializers(proto: Any, min_size: int = 1024) -> int:
    """Store the float32 weights that float16 holds exactly (those of a float16 checkpoint, such as the
    packaged ``v2.pt``) as float16, each followed by a ``Cast`` back to float32: the graph computes
    with the very same float32 values (onnxruntime folds the casts when it loads the file) and the file is
    about half the size. Returns the number of initializers converted."""
    import onnx
    from onnx import numpy_helper

    graph, casts, converted = proto.graph, [], 0
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            continue
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), value):  # not a float16 weight: kept as it is
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}__fp16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}__fp16"], [name], to=onnx.TensorProto.FLOAT))
        converted += 1
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return converted


def optimize_keeping_half(proto: Any) -> Any:
    """onnxscript's graph optimiser (constant folding, rewrites, dead code), which the export skips, run
    after :func:`half_initializers` without folding their casts: the float16 weights stay (and so do the
    batch norms after them, which onnxruntime fuses when it loads the file). Without it the graph runs
    ~2.4x slower on onnxruntime (unfolded ``CastLike`` / shape arithmetic); with it, as fast as the
    optimised float32 export, with the same outputs."""
    import onnx_ir as ir
    from onnxscript.optimizer import optimize_ir

    def keep_half(node: Any) -> bool | None:
        source = node.inputs[0] if node.inputs else None
        half = node.op_type == "Cast" and source is not None and (source.name or "").endswith("__fp16")
        return False if half else None

    model = ir.from_proto(proto)
    optimize_ir(model, should_fold=keep_half)
    return ir.to_proto(model)


def strip_debug(proto: Any) -> None:
    """Drop the exporter's per-node debugging records (source stack traces, names of the torch modules:
    ~2 MB of the default model's file); the graph is unchanged."""
    graph = proto.graph
    for item in [*graph.node, *graph.value_info, *graph.input, *graph.output]:
        del item.metadata_props[:]
        item.doc_string = ""


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
        if set(model.modalities) != {"audio"}:
            raise OnnxExportError(f"cannot export model {ckpt.name!r} to ONNX: {_summary(e)}") from e
        program, names, outputs = _static_export(model, ckpt, e)
    meta = metadata(ckpt, model, names, outputs, _limits(program))
    proto = program.model_proto
    meta["exported"]["float16_weights"] = half_initializers(proto)  # exact: see half_initializers
    proto = optimize_keeping_half(proto)
    strip_debug(proto)
    onnx.checker.check_model(proto)
    path = _save(proto, Path(dst), meta)
    meta["check"] = _check(path, model, ckpt)
    return _save(onnx.load(os.fspath(path)), path, meta)


def read_check(path: str | os.PathLike) -> dict[str, float]:
    """The export check of an ONNX file: largest |onnxruntime - torch| per output (empty if none)."""
    return dict((read_metadata(path).get("check") or {}).get("max_abs_diff") or {})
