"""What the window detector families share (``visual.py``, ``audio_only.py``, ``audio_visual.py``).

A window detector scores one window of a face track and/or its audio. :class:`WindowDetector` holds the
streams a family composes from the parts (``backbones``, ``frequency``, ``temporal``, ``audio``,
``heads``), each added by one builder:

- the video stream (:meth:`~WindowDetector._add_video`): per-frame encoder (timm backbone and/or frequency
  branch) -> temporal transformer -> video and segment heads;
- the audio stream (:meth:`~WindowDetector._add_audio`): log-mel -> CNN or wav2vec2 -> audio heads;
- the optional manipulation-type head (:meth:`~WindowDetector._add_type_head`),

and the output contract: ``forward(frames [B,T,3,H,W], audio [B,S] | None, audio_mask [B] | None,
mouths [B,T,3,m,m] | None)`` returns ``logit [B]``, ``segment_logits [B,K]`` and, where the family has
them, ``video_logit``, ``frame_logits [B,T]``, ``frame_attention [B,T]``, ``audio_logit``, ``sync_logit``,
``frame_sync_logits [B,T]``, ``sync_video_emb``/``sync_audio_emb [B,T,E]``, ``type_logits [B,M]``
(``K = round(T / fps / segment_seconds)``). A family says how its streams make ``logit`` in
:meth:`~WindowDetector._score`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dfdetect.models.audio import AudioCNN, LogMel, Wav2Vec2Encoder
from dfdetect.models.frequency import FrequencyBranch
from dfdetect.models.heads import BinaryHead, SegmentHead, TypeHead
from dfdetect.models.temporal import TemporalEncoder, num_segments

if TYPE_CHECKING:
    from dfdetect.models.backbones import FrameBackbone

AUDIO_ENCODERS = ("cnn", "wav2vec2")
FRAME_ENCODERS = ("backbone", "frequency")

Streams = tuple[Any, Any]  # (video (tokens, pooled) | None, audio (logmel, tokens, pooled) | None)


class WindowDetector(nn.Module):
    """Base of the window detector families (see the module docstring).

    Attributes:
        fps, segment_seconds: frame rate of the input and segment length (the segment layout).
        modalities: streams the model has (``video``, ``frequency``, ``audio``, ``sync``).
        cam_layer: the layer whose maps Grad-CAM explains (None without frames).
    """

    def __init__(self, fps: float, segment_seconds: float) -> None:
        super().__init__()
        self.fps, self.segment_seconds = float(fps), float(segment_seconds)
        self.modalities: set[str] = set()
        self.cam_layer: nn.Module | None = None
        self.backbone: FrameBackbone | None = None
        self.freq: FrequencyBranch | None = None
        self.temporal: TemporalEncoder | None = None
        self.audio_enc: nn.Module | None = None
        self.logmel: LogMel | None = None
        self.type_head: TypeHead | None = None

    # -- building ------------------------------------------------------------------------------------

    def _add_video(
        self,
        frame_encoder: str,
        backbone: tuple[str, bool | str, str | os.PathLike | None, str | int, float],
        frequency: tuple[bool, int, int],
        temporal: tuple[int, int, int, float],
    ) -> None:
        """The video stream. ``backbone``: name, pretrained, pretrained_path, freeze, drop_path_rate;
        ``frequency``: use_frequency, frequency_dim, frequency_width; ``temporal``: layers, d_model,
        n_heads, dropout."""
        if frame_encoder not in FRAME_ENCODERS:
            raise ValueError(f"frame_encoder must be 'backbone' or 'frequency', got {frame_encoder!r}")
        in_dim = 0
        if frame_encoder == "backbone":
            from dfdetect.models.backbones import FrameBackbone  # timm: only for models with a backbone

            self.backbone = FrameBackbone(*backbone)
            self.cam_layer, in_dim = self.backbone.cam_layer, self.backbone.num_features
        use_frequency, frequency_dim, frequency_width = frequency
        if use_frequency or frame_encoder == "frequency":
            self.freq = FrequencyBranch(frequency_dim, frequency_width)
            self.cam_layer = self.cam_layer or self.freq.cam_layer
            in_dim += self.freq.out_dim
            self.modalities.add("frequency")
        layers, d_model, n_heads, dropout = temporal
        self.modalities.add("video")
        self.temporal = TemporalEncoder(in_dim, d_model, layers, n_heads, dropout)
        self.video_head = BinaryHead(d_model, dropout)
        self.video_segments = SegmentHead(d_model, dropout)

    def _add_audio(
        self, kind: str, sample_rate: int, n_mels: int, width: int, d_model: int, dropout: float,
        pretrained: bool | str, wav2vec2: tuple[str, int, dict[str, Any] | None],
    ) -> None:  # fmt: skip
        """The audio stream: log-mel front end (25 ms / 10 ms), ``kind`` encoder (``cnn`` of ``width``
        or ``wav2vec2``: model, frozen layers, config) and the audio heads."""
        if kind not in AUDIO_ENCODERS:
            raise ValueError(f"unknown audio_encoder {kind!r}; choose one of {', '.join(AUDIO_ENCODERS)}")
        n_fft, hop = round(0.025 * sample_rate), round(0.01 * sample_rate)
        self.sample_rate = sample_rate
        self.logmel = LogMel(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
        if kind == "cnn":
            self.audio_enc = AudioCNN(n_mels, width, d_model)
        else:
            self.audio_enc = Wav2Vec2Encoder(wav2vec2[0], wav2vec2[1], d_model, pretrained, wav2vec2[2])
        self.audio_head = BinaryHead(d_model, dropout)
        self.audio_segments = SegmentHead(d_model, dropout)
        self.modalities.add("audio")

    def _add_type_head(self, num_types: int, d_model: int, dropout: float) -> None:
        """Manipulation-type head over the pooled streams (``num_types`` 0: none)."""
        if num_types > 0:
            streams = int(self.temporal is not None) + int(self.audio_enc is not None)
            self.type_head = TypeHead(streams * d_model, num_types, dropout)

    # -- scoring -------------------------------------------------------------------------------------

    def _encode_video(self, frames: torch.Tensor, k: int, out: dict[str, torch.Tensor]) -> tuple:
        """Frames -> video tokens [B, T, D] and pooled [B, D]; fills the video outputs."""
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)  # [B*T, 3, H, W]
        feats = []
        if self.backbone is not None:
            feats.append(self.backbone(x))  # [B*T, C]
        if self.freq is not None:
            feats.append(self.freq(x))  # [B*T, Cf]
        per_frame = torch.cat(feats, dim=1).reshape(b, t, -1)  # [B, T, C + Cf]
        tokens, pooled, att = self.temporal(per_frame)
        out["video_logit"] = self.video_head(pooled)
        out["frame_logits"], out["video_segment_logits"] = self.video_segments(tokens, k)
        out["frame_attention"] = att
        return tokens, pooled

    @staticmethod
    def _video_only(out: dict[str, torch.Tensor]) -> None:
        """``logit`` and ``segment_logits`` from the video stream alone."""
        out["logit"], out["segment_logits"] = out["video_logit"], out.pop("video_segment_logits")

    def _audio_mask(self, audio: torch.Tensor | None, audio_mask: torch.Tensor | None, b: int) -> Any:
        """``[B]`` bool: rows with audio (None: the model hears nothing in this batch)."""
        if self.audio_enc is None or audio is None:
            return None
        mask = torch.ones(b, dtype=torch.bool, device=audio.device)
        return mask if audio_mask is None else audio_mask.to(mask.device).bool().reshape(b)

    def _encode_audio(self, audio: torch.Tensor, mask: torch.Tensor, k: int, out: dict) -> tuple:
        """Audio [B, S] -> log-mel, tokens [B, F, D], pooled [B, D]; fills the audio outputs."""
        audio = audio * mask[:, None].to(audio.dtype)  # rows without audio: silence, never garbage
        logmel = self.logmel(audio)  # [B, M, frames]
        if isinstance(self.audio_enc, Wav2Vec2Encoder):
            tokens, pooled = self.audio_enc(audio)
        else:
            tokens, pooled = self.audio_enc(logmel)
        zero = torch.zeros((), dtype=pooled.dtype, device=pooled.device)
        out["audio_logit"] = torch.where(mask, self.audio_head(pooled), zero)
        _, out["audio_segment_logits"] = self.audio_segments(tokens, k)
        return logmel, tokens, pooled

    def _score(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
        mouths: torch.Tensor | None,
        k: int,
        out: dict[str, torch.Tensor],
    ) -> Streams:
        """Run the family's streams into ``out`` (at least ``logit``, ``segment_logits``); returns them."""
        raise NotImplementedError

    def forward(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        mouths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Score windows (see the module docstring for inputs and outputs)."""
        b, t = frames.shape[:2]
        k = num_segments(t, self.fps, self.segment_seconds)
        out: dict[str, torch.Tensor] = {}
        v, a = self._score(frames, audio, audio_mask, mouths, k, out)
        if self.type_head is not None:
            parts = [v[1]] if self.temporal is not None else []
            if self.audio_enc is not None:
                d = self.audio_head.net[-1].in_features
                parts.append(a[2] if a is not None else frames.new_zeros(b, d))
            out["type_logits"] = self.type_head(torch.cat(parts, dim=1))
        return out

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``video`` (frame encoders, temporal, video heads), ``audio`` (audio encoder and heads),
        ``fusion`` (fusion, sync and type heads) and, when the backbone is partly frozen, ``frozen``
        (kept out of every training stage that does not name it)."""
        frozen = self.backbone.frozen_parameters() if self.backbone is not None else []
        if isinstance(self.audio_enc, Wav2Vec2Encoder):
            frozen = frozen + self.audio_enc.frozen_parameters()
        skip = {id(p) for p in frozen}
        video_mods = [self.backbone, self.freq, self.temporal, getattr(self, "video_head", None),
                      getattr(self, "video_segments", None)]  # fmt: skip
        audio_mods = [self.audio_enc, getattr(self, "audio_head", None),
                      getattr(self, "audio_segments", None)]  # fmt: skip
        groups: dict[str, list[nn.Parameter]] = {}
        for name, mods in (("video", video_mods), ("audio", audio_mods)):
            groups[name] = [p for m in mods if m is not None for p in m.parameters() if id(p) not in skip]
            skip |= {id(p) for p in groups[name]}
        groups["fusion"] = [p for p in self.parameters() if id(p) not in skip]
        if frozen:
            groups["frozen"] = frozen
        return groups
