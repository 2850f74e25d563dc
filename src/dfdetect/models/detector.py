"""The detector: per-frame encoder (timm backbone and/or frequency branch) -> temporal transformer,
audio encoder, fusion, lip-sync head and output heads, composed by flags.

The registered models (``factory.py``) are presets of :class:`DeepfakeDetector`:
``visual`` (frames), ``frequency`` (frames through the frequency branch only), ``audio`` (audio only)
and ``av`` (frames + audio).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dfdetect.constants import SAMPLE_RATE
from dfdetect.models.audio import AudioCNN, LogMel, Wav2Vec2Encoder
from dfdetect.models.frequency import FrequencyBranch
from dfdetect.models.fusion import LateFusion, SyncHead, build_fusion, lower_face
from dfdetect.models.heads import BinaryHead, SegmentHead, TypeHead
from dfdetect.models.temporal import TemporalEncoder, num_segments

if TYPE_CHECKING:
    from dfdetect.models.backbones import FrameBackbone

AUDIO_ENCODERS = ("cnn", "wav2vec2")


def _check_flags(use_video: bool, use_audio: bool, use_sync: bool, frame_encoder: str) -> None:
    if not (use_video or use_audio):
        raise ValueError("a model needs video, audio or both")
    if use_sync and not (use_video and use_audio):
        raise ValueError("use_sync needs both video and audio (the 'av' model)")
    if frame_encoder not in ("backbone", "frequency"):
        raise ValueError(f"frame_encoder must be 'backbone' or 'frequency', got {frame_encoder!r}")


class DeepfakeDetector(nn.Module):
    """Audio-visual deepfake detector (see the module docstring).

    ``forward(frames [B,T,3,H,W], audio [B,S] | None, audio_mask [B] | None, mouths [B,T,3,m,m] | None)``
    returns ``logit [B]``, ``segment_logits [B,K]`` and, where the model has them, ``video_logit``,
    ``frame_logits [B,T]``, ``frame_attention [B,T]``, ``audio_logit``, ``sync_logit``,
    ``frame_sync_logits [B,T]``, ``sync_video_emb``/``sync_audio_emb [B,T,E]``, ``type_logits [B,M]``.
    Rows without audio (``audio=None`` or ``audio_mask`` False) get the video logit as ``logit`` and 0
    as ``audio_logit``/``sync_logit``.

    Args:
        use_video: frames are encoded (False for the audio-only model).
        use_audio: audio is encoded.
        frame_encoder: ``"backbone"`` (timm) or ``"frequency"`` (frequency branch alone).
        backbone, pretrained, pretrained_path, freeze, drop_path_rate: the timm backbone
            (see :class:`~dfdetect.models.backbones.FrameBackbone`).
        temporal_layers, d_model, n_heads, dropout: the temporal transformer and token size.
        fps, segment_seconds: frame rate of the input and segment length (``K = round(T/fps/seg)``).
        sample_rate, n_mels, audio_width: log-mel front end and audio CNN.
        audio_encoder: ``"cnn"`` (from scratch) or ``"wav2vec2"`` (``pip install dfdetect[audio]``).
        wav2vec2_model, wav2vec2_freeze_layers, wav2vec2_config: the wav2vec2 encoder.
        fusion: ``"late"``, ``"concat"`` or ``"cross_attention"`` (models with both modalities).
        use_frequency: add the frequency branch to the backbone's per-frame features.
        frequency_dim, frequency_width: size of the frequency branch.
        use_sync: lip-sync head (needs audio).
        sync_dim, sync_width, mouth_size: lip-sync embedding size, CNN width and mouth crop side.
        num_types: manipulation types of the type head (0 = none).
    """

    def __init__(
        self,
        *,
        use_video: bool = True,
        use_audio: bool = True,
        frame_encoder: str = "backbone",
        backbone: str = "efficientnet_b0",
        pretrained: bool = False,
        pretrained_path: str | os.PathLike | None = None,
        freeze: str | int = "none",
        drop_path_rate: float = 0.0,
        temporal_layers: int = 4,
        d_model: int = 256,
        n_heads: int = 4,
        dropout: float = 0.1,
        fps: float = 5.0,
        segment_seconds: float = 1.0,
        sample_rate: int = SAMPLE_RATE,
        n_mels: int = 64,
        audio_width: int = 32,
        audio_encoder: str = "cnn",
        wav2vec2_model: str = "facebook/wav2vec2-base",
        wav2vec2_freeze_layers: int = 0,
        wav2vec2_config: dict[str, Any] | None = None,
        fusion: str = "cross_attention",
        use_frequency: bool = False,
        frequency_dim: int = 256,
        frequency_width: int = 32,
        use_sync: bool = False,
        sync_dim: int = 128,
        sync_width: int = 32,
        mouth_size: int = 48,
        num_types: int = 0,
    ) -> None:
        super().__init__()
        _check_flags(use_video, use_audio, use_sync, frame_encoder)
        cfg = {"fps": float(fps), "segment_seconds": float(segment_seconds), "sample_rate": sample_rate}
        self.preprocess_cfg: dict[str, Any] = cfg  # timm's pretrained_cfg style (a checkpoint extends it)
        self.fps, self.segment_seconds, self.sample_rate = cfg["fps"], cfg["segment_seconds"], sample_rate
        self.fusion_kind = fusion if use_video and use_audio else None
        self.modalities: set[str] = set()
        self.cam_layer: nn.Module | None = None
        self.backbone: FrameBackbone | None = None
        self.freq: FrequencyBranch | None = None
        self.temporal: TemporalEncoder | None = None
        if use_video:
            in_dim = self._build_frame_encoder(
                frame_encoder, use_frequency, frequency_dim, frequency_width,
                backbone, pretrained, pretrained_path, freeze, drop_path_rate,
            )  # fmt: skip
            self._build_video_heads(in_dim, d_model, temporal_layers, n_heads, dropout)
        self.audio_enc: nn.Module | None = None
        self.logmel: LogMel | None = None
        if use_audio:
            self._build_audio(sample_rate, n_mels, d_model, dropout, audio_encoder, audio_width, pretrained,
                              wav2vec2_model, wav2vec2_freeze_layers, wav2vec2_config)  # fmt: skip
        sync = (lambda: SyncHead(n_mels, sync_dim, mouth_size, sync_width)) if use_sync else None
        self._build_fusion(fusion, d_model, n_heads, dropout, sync)
        streams = int(use_video) + int(use_audio)
        self.type_head = TypeHead(streams * d_model, num_types, dropout) if num_types > 0 else None

    def _build_frame_encoder(
        self, kind, use_frequency, frequency_dim, frequency_width, *backbone_args
    ) -> int:  # noqa: ANN001
        """The per-frame encoder: timm backbone and/or frequency branch; returns its feature size."""
        in_dim = 0
        if kind == "backbone":
            from dfdetect.models.backbones import FrameBackbone  # timm: only for models with a backbone

            self.backbone = FrameBackbone(*backbone_args)
            self.cam_layer, in_dim = self.backbone.cam_layer, self.backbone.num_features
        if use_frequency or kind == "frequency":
            self.freq = FrequencyBranch(frequency_dim, frequency_width)
            self.cam_layer = self.cam_layer or self.freq.cam_layer
            in_dim += self.freq.out_dim
            self.modalities.add("frequency")
        return in_dim

    def _build_video_heads(self, in_dim: int, d_model: int, layers: int, heads: int, dropout: float) -> None:
        """Temporal transformer over the frame features and the video heads."""
        self.modalities.add("video")
        self.temporal = TemporalEncoder(in_dim, d_model, layers, heads, dropout)
        self.video_head = BinaryHead(d_model, dropout)
        self.video_segments = SegmentHead(d_model, dropout)

    def _build_audio(self, sample_rate, n_mels, d_model, dropout, kind, *encoder_args) -> None:  # noqa: ANN001
        """Log-mel front end, audio encoder and the audio heads."""
        n_fft, hop = round(0.025 * sample_rate), round(0.01 * sample_rate)  # 25 ms / 10 ms
        self.logmel = LogMel(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
        self.audio_enc = self._audio_encoder(kind, n_mels, encoder_args[0], d_model, *encoder_args[1:])
        self.audio_head = BinaryHead(d_model, dropout)
        self.audio_segments = SegmentHead(d_model, dropout)
        self.modalities.add("audio")

    @staticmethod
    def _audio_encoder(
        kind, n_mels, width, d_model, pretrained, w2v_name, w2v_freeze, w2v_config
    ) -> nn.Module:  # noqa: ANN001
        if kind == "cnn":
            return AudioCNN(n_mels, width, d_model)
        if kind == "wav2vec2":
            return Wav2Vec2Encoder(w2v_name, w2v_freeze, d_model, pretrained, w2v_config)
        raise ValueError(f"unknown audio_encoder {kind!r}; choose one of {', '.join(AUDIO_ENCODERS)}")

    def _build_fusion(self, fusion, d_model, n_heads, dropout, make_sync) -> None:  # noqa: ANN001
        self.fusion: nn.Module | None = None
        self.segment_fusion: LateFusion | None = None
        self.sync: SyncHead | None = None
        if self.fusion_kind is None:
            return
        if make_sync is not None:
            self.sync = make_sync()
            self.sync_gate = nn.Parameter(torch.tensor(0.1))
            self.modalities.add("sync")
        self.fusion = build_fusion(fusion, d_model, 2 + int(self.sync is not None), n_heads, dropout)
        self.segment_fusion = LateFusion(2)

    # ---------------------------------------------------------------------------------------------

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

    def _sync(self, frames, mouths, logmel, mask, out) -> None:  # noqa: ANN001
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

    def forward(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        mouths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Score windows (see the class docstring for inputs and outputs)."""
        b, t = frames.shape[:2]
        k = num_segments(t, self.fps, self.segment_seconds)
        out: dict[str, torch.Tensor] = {}
        has_audio = self.audio_enc is not None and audio is not None
        if has_audio:
            mask = torch.ones(b, dtype=torch.bool, device=audio.device)
            mask = mask if audio_mask is None else audio_mask.to(mask.device).bool().reshape(b)
        v = self._encode_video(frames, k, out) if self.temporal is not None else None
        a = self._encode_audio(audio, mask, k, out) if has_audio else None
        if v is not None and a is not None:
            if self.sync is not None:
                self._sync(frames, mouths, a[0], mask, out)
            self._fuse(v, a[1:], mask, out)
        elif v is not None:
            out["logit"], out["segment_logits"] = out["video_logit"], out.pop("video_segment_logits")
        elif a is not None:
            out["logit"] = out["audio_logit"]
            seg = out.pop("audio_segment_logits")
            out["segment_logits"] = torch.where(mask[:, None], seg, torch.zeros_like(seg))
        else:  # audio-only model without audio: nothing to score -> neutral logits
            out["logit"] = frames.new_zeros(b)
            out["segment_logits"] = frames.new_zeros(b, k)
        if self.type_head is not None:
            out["type_logits"] = self.type_head(self._embedding(v, a, b, frames))
        return out

    def _embedding(self, v, a, b: int, frames: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        parts = []
        d = (
            self.video_head.net[-1].in_features
            if self.temporal is not None
            else self.audio_head.net[-1].in_features
        )
        if self.temporal is not None:
            parts.append(v[1])
        if self.audio_enc is not None:
            parts.append(a[2] if a is not None else frames.new_zeros(b, d))
        return torch.cat(parts, dim=1)

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
        audio_mods = [
            self.audio_enc,
            getattr(self, "audio_head", None),
            getattr(self, "audio_segments", None),
        ]
        groups: dict[str, list[nn.Parameter]] = {}
        for name, mods in (("video", video_mods), ("audio", audio_mods)):
            groups[name] = [p for m in mods if m is not None for p in m.parameters() if id(p) not in skip]
            skip |= {id(p) for p in groups[name]}
        groups["fusion"] = [p for p in self.parameters() if id(p) not in skip]
        if frozen:
            groups["frozen"] = frozen
        return groups
