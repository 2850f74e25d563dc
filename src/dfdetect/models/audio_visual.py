"""Audio-visual family (registered ``av``): the video stream of ``visual`` and the audio stream of
``audio`` (``models/base.py``), fused (``late`` / ``concat`` / ``cross_attention``), with an optional
lip-sync head (``use_sync=True``) whose logit joins the fusion. Rows without audio (``audio=None`` or
``audio_mask`` False) get the video logit as ``logit`` and 0 as ``audio_logit``/``sync_logit``."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from dfdetect.constants import DEFAULT_FPS, SAMPLE_RATE
from dfdetect.models.base import Streams, WindowDetector
from dfdetect.models.fusion import LateFusion, SyncHead, build_fusion, lower_face
from dfdetect.models.pretrained import DEFAULT_BACKBONE


class AudioVisualDetector(WindowDetector):
    """Frames + audio -> fused detector (see the module docstring and ``models/base.py``).

    Args:
        frame_encoder, backbone, pretrained, pretrained_path, freeze, drop_path_rate, use_frequency,
            frequency_dim, frequency_width, temporal_layers, n_heads: the video stream, as
            :class:`~dfdetect.models.visual.VisualDetector` (``pretrained`` also loads wav2vec2's weights).
        audio_encoder, sample_rate, n_mels, audio_width, wav2vec2_model, wav2vec2_freeze_layers,
            wav2vec2_config: the audio stream, as :class:`~dfdetect.models.audio_only.AudioDetector`.
        d_model, dropout: token size and dropout of both streams, the fusion and the heads.
        fps, segment_seconds: frame rate of the input and segment length (``K = round(T/fps/seg)``).
        fusion: ``"late"``, ``"concat"`` or ``"cross_attention"``.
        use_sync: lip-sync head; sync_dim, sync_width, mouth_size: its embedding size, CNN width and
            mouth crop side.
        num_types: manipulation types of the type head (0 = none).
    """

    def __init__(
        self,
        *,
        frame_encoder: str = "backbone", backbone: str = DEFAULT_BACKBONE, pretrained: bool | str = False,
        pretrained_path: str | os.PathLike | None = None, freeze: str | int = "none",
        drop_path_rate: float = 0.0, use_frequency: bool = False, frequency_dim: int = 256,
        frequency_width: int = 32, temporal_layers: int = 4, n_heads: int = 4,
        audio_encoder: str = "cnn", sample_rate: int = SAMPLE_RATE, n_mels: int = 64, audio_width: int = 32,
        wav2vec2_model: str = "facebook/wav2vec2-base", wav2vec2_freeze_layers: int = 0,
        wav2vec2_config: dict[str, Any] | None = None,
        d_model: int = 256, dropout: float = 0.1, fps: float = DEFAULT_FPS, segment_seconds: float = 1.0,
        fusion: str = "cross_attention", use_sync: bool = False, sync_dim: int = 128, sync_width: int = 32,
        mouth_size: int = 48, num_types: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(fps, segment_seconds)
        self._add_video(
            frame_encoder,
            (backbone, pretrained, pretrained_path, freeze, drop_path_rate),
            (use_frequency, frequency_dim, frequency_width),
            (temporal_layers, d_model, n_heads, dropout),
        )
        self._add_audio(
            audio_encoder, sample_rate, n_mels, audio_width, d_model, dropout, pretrained,
            (wav2vec2_model, wav2vec2_freeze_layers, wav2vec2_config),
        )  # fmt: skip
        self.fusion_kind = fusion
        self.sync: SyncHead | None = None
        if use_sync:
            self.sync = SyncHead(n_mels, sync_dim, mouth_size, sync_width)
            self.sync_gate = nn.Parameter(torch.tensor(0.1))
            self.modalities.add("sync")
        self.fusion = build_fusion(fusion, d_model, 2 + int(use_sync), n_heads, dropout)
        self.segment_fusion = LateFusion(2)
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
        mask = self._audio_mask(audio, audio_mask, frames.shape[0])
        v = self._encode_video(frames, k, out)
        if mask is None:
            self._video_only(out)
            return v, None
        a = self._encode_audio(audio, mask, k, out)
        if self.sync is not None:
            self._sync(frames, mouths, a[0], mask, out)
        self._fuse(v, a[1:], mask, out)
        return v, a

    def _sync(self, frames, mouths, logmel, mask, out) -> None:  # noqa: ANN001
        """Lip-sync outputs; ``mouths`` default to the lower half of the face crops."""
        mouths = mouths if mouths is not None else lower_face(frames, self.sync.mouth_size)
        s = self.sync(mouths, logmel)
        zero = torch.zeros((), dtype=s["sync_logit"].dtype, device=s["sync_logit"].device)
        out["sync_logit"] = torch.where(mask, s["sync_logit"], zero)
        out["frame_sync_logits"] = torch.where(mask[:, None], s["frame_sync_logits"], zero)
        out["sync_video_emb"], out["sync_audio_emb"] = s["video_emb"], s["audio_emb"]

    def _fuse(self, v, a, mask: torch.Tensor, out: dict) -> None:  # noqa: ANN001
        """Fused ``logit`` and ``segment_logits``; rows without audio fall back to the video."""
        vl, al = out["video_logit"], out["audio_logit"]
        if self.fusion_kind == "late":
            logits = [vl, al] + ([out["sync_logit"]] if self.sync is not None else [])
            present = torch.stack([torch.ones_like(mask)] + [mask] * (len(logits) - 1), dim=1)
            fused = self.fusion(torch.stack(logits, dim=1), present)
        else:
            fused = self.fusion(v[0], v[1], a[0], a[1])
            if self.sync is not None:
                fused = fused + self.sync_gate * out["sync_logit"]
        out["logit"] = torch.where(mask, fused, vl)
        seg_v, seg_a = out.pop("video_segment_logits"), out.pop("audio_segment_logits")
        present = torch.stack([torch.ones_like(mask), mask], dim=1)[:, None].expand(-1, seg_v.shape[1], -1)
        seg = self.segment_fusion(torch.stack([seg_v, seg_a], dim=-1).flatten(0, 1), present.flatten(0, 1))
        out["segment_logits"] = seg.reshape(seg_v.shape)
