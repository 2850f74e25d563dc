"""Audio-only family (registered ``audio``): audio -> log-mel -> CNN (or wav2vec2) -> audio and segment
heads. Frames are read only for the window's length (its segment layout); a batch without audio scores
neutral (logit 0). The speech anti-spoofing models are their own families (``aasist.py``,
``whisper_speech.py``)."""

from __future__ import annotations

from typing import Any

import torch

from dfdetect.constants import DEFAULT_FPS, SAMPLE_RATE
from dfdetect.models.base import Streams, WindowDetector


class AudioDetector(WindowDetector):
    """Audio window detector (see ``models/base.py`` for the output contract).

    Args:
        audio_encoder: ``"cnn"`` (from scratch) or ``"wav2vec2"`` (``pip install dfdetect[audio]``).
        pretrained: load the pretrained wav2vec2 weights (``audio_encoder="wav2vec2"``).
        sample_rate, n_mels, audio_width: log-mel front end and audio CNN.
        wav2vec2_model, wav2vec2_freeze_layers, wav2vec2_config: the wav2vec2 encoder.
        d_model, dropout: token size and dropout of the heads.
        fps, segment_seconds: frame rate of the window and segment length (``K = round(T/fps/seg)``).
        num_types: manipulation types of the type head (0 = none).
    """

    def __init__(
        self,
        *,
        audio_encoder: str = "cnn",
        pretrained: bool = False,
        sample_rate: int = SAMPLE_RATE,
        n_mels: int = 64,
        audio_width: int = 32,
        wav2vec2_model: str = "facebook/wav2vec2-base",
        wav2vec2_freeze_layers: int = 0,
        wav2vec2_config: dict[str, Any] | None = None,
        d_model: int = 256,
        dropout: float = 0.1,
        fps: float = DEFAULT_FPS,
        segment_seconds: float = 1.0,
        num_types: int = 0,
    ) -> None:
        super().__init__(fps, segment_seconds)
        self._add_audio(
            audio_encoder, sample_rate, n_mels, audio_width, d_model, dropout, pretrained,
            (wav2vec2_model, wav2vec2_freeze_layers, wav2vec2_config),
        )  # fmt: skip
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
        b = frames.shape[0]
        mask = self._audio_mask(audio, audio_mask, b)
        if mask is None:  # nothing to score -> neutral logits
            out["logit"], out["segment_logits"] = frames.new_zeros(b), frames.new_zeros(b, k)
            return None, None
        a = self._encode_audio(audio, mask, k, out)
        out["logit"] = out["audio_logit"]
        seg = out.pop("audio_segment_logits")
        out["segment_logits"] = torch.where(mask[:, None], seg, torch.zeros_like(seg))
        return None, a
