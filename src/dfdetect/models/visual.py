"""Video-only families: per-frame encoder -> temporal transformer -> video and segment heads.

- :class:`VisualDetector` (registered ``visual``): a timm backbone per frame, plus the F3Net-style
  frequency branch with ``use_frequency=True`` (or the frequency branch alone with
  ``frame_encoder="frequency"``).
- :class:`FrequencyDetector` (registered ``frequency``): the frequency branch alone, trained from scratch;
  it takes no backbone keywords.

Audio given to them is ignored: ``logit`` is the video logit.
"""

from __future__ import annotations

import os

import torch

from dfdetect.constants import DEFAULT_FPS
from dfdetect.models.base import Streams, WindowDetector
from dfdetect.models.pretrained import DEFAULT_BACKBONE


class VisualDetector(WindowDetector):
    """Frames -> timm backbone (+ frequency branch) -> temporal transformer (see ``models/base.py``).

    Args:
        frame_encoder: ``"backbone"`` (timm) or ``"frequency"`` (frequency branch alone).
        backbone, pretrained, pretrained_path, freeze, drop_path_rate: the timm backbone
            (see :class:`~dfdetect.models.backbones.FrameBackbone`).
        use_frequency: add the frequency branch to the backbone's per-frame features.
        frequency_dim, frequency_width: size of the frequency branch.
        temporal_layers, d_model, n_heads, dropout: the temporal transformer and token size.
        fps, segment_seconds: frame rate of the input and segment length (``K = round(T/fps/seg)``).
        num_types: manipulation types of the type head (0 = none).
    """

    def __init__(
        self,
        *,
        frame_encoder: str = "backbone",
        backbone: str = DEFAULT_BACKBONE,
        pretrained: bool | str = False,
        pretrained_path: str | os.PathLike | None = None,
        freeze: str | int = "none",
        drop_path_rate: float = 0.0,
        use_frequency: bool = False,
        frequency_dim: int = 256,
        frequency_width: int = 32,
        temporal_layers: int = 4,
        d_model: int = 256,
        n_heads: int = 4,
        dropout: float = 0.1,
        fps: float = DEFAULT_FPS,
        segment_seconds: float = 1.0,
        num_types: int = 0,
    ) -> None:
        super().__init__(fps, segment_seconds)
        self._add_video(
            frame_encoder,
            (backbone, pretrained, pretrained_path, freeze, drop_path_rate),
            (use_frequency, frequency_dim, frequency_width),
            (temporal_layers, d_model, n_heads, dropout),
        )
        self._add_type_head(num_types, d_model, dropout)

    def _score(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
        mouths: torch.Tensor | None,
        k: int,
        out: dict[str, torch.Tensor],
    ) -> Streams:
        v = self._encode_video(frames, k, out)
        self._video_only(out)
        return v, None


class FrequencyDetector(VisualDetector):
    """Frames -> frequency branch alone -> temporal transformer (a :class:`VisualDetector` with
    ``frame_encoder="frequency"``). ``pretrained`` is accepted, as by every model, and unused: there are no
    pretrained weights. Other arguments as :class:`VisualDetector`."""

    def __init__(
        self,
        *,
        pretrained: bool = False,
        frequency_dim: int = 256,
        frequency_width: int = 32,
        temporal_layers: int = 4,
        d_model: int = 256,
        n_heads: int = 4,
        dropout: float = 0.1,
        fps: float = DEFAULT_FPS,
        segment_seconds: float = 1.0,
        num_types: int = 0,
    ) -> None:
        del pretrained  # trained from scratch
        super().__init__(
            frame_encoder="frequency", frequency_dim=frequency_dim, frequency_width=frequency_width,
            temporal_layers=temporal_layers, d_model=d_model, n_heads=n_heads, dropout=dropout, fps=fps,
            segment_seconds=segment_seconds, num_types=num_types,
        )  # fmt: skip
