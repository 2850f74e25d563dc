"""Audio encoders: a log-mel front end (torch.stft + a hand-built HTK mel filterbank; no torchaudio)
with a compact CNN trained from scratch, and an optional wav2vec 2.0 encoder (``transformers``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dfdetect.constants import SAMPLE_RATE


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK mel filterbank ``[n_freqs, n_mels]`` (peaks of 1, like torchaudio's default).

    ``spectrogram [..., n_freqs, frames]`` -> mel via ``fb.T @ spectrogram``.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)  # [F]
    m_pts = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    f_pts = mel_to_hz(m_pts)  # [M + 2]
    lower, centre, upper = f_pts[:-2], f_pts[1:-1], f_pts[2:]  # [M]
    up = (freqs[:, None] - lower[None]) / (centre - lower)[None]  # [F, M]
    down = (upper[None] - freqs[:, None]) / (upper - centre)[None]
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


class LogMel(nn.Module):
    """Waveform ``[B, S]`` -> log-mel ``[B, n_mels, frames]`` (hop ``hop_length`` samples).

    Args:
        sample_rate: Hz of the input.
        n_fft: FFT size (25 ms at 16 kHz by default).
        hop_length: samples between frames (10 ms).
        n_mels: mel bands.
    """

    def __init__(
        self, sample_rate: int = SAMPLE_RATE, n_fft: int = 400, hop_length: int = 160, n_mels: int = 64
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, 20.0, sample_rate / 2)
        self.register_buffer("fb", fb, persistent=False)

    def frame_rate(self) -> float:
        """Log-mel frames per second."""
        return self.sample_rate / self.hop_length

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio.float()
        if x.shape[-1] < self.n_fft:  # too short to frame: pad with silence
            x = nn.functional.pad(x, (0, self.n_fft - x.shape[-1]))
        spec = torch.stft(
            x, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True
        )  # [B, F, frames]
        power = spec.real.pow(2) + spec.imag.pow(2)
        mel = torch.einsum("fm,bft->bmt", self.fb, power)  # [B, M, frames]
        return torch.log(mel + 1e-6)


def _block(cin: int, cout: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.AvgPool2d(pool),
    )  # fmt: skip


class AudioCNN(nn.Module):
    """Compact 2-D CNN over log-mel (mel x time): per-step tokens ``[B, F', out_dim]`` at
    ``frame_rate / 4`` steps/s (40 ms at the default hop) and a pooled embedding ``[B, out_dim]``.

    Args:
        n_mels: mel bands of the input.
        width: channels of the first block (x2, x4 in the next ones).
        out_dim: token size.
    """

    def __init__(self, n_mels: int = 64, width: int = 32, out_dim: int = 256) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm1d(n_mels)  # per-band normalisation of the log-mel
        self.blocks = nn.Sequential(
            _block(1, width, (2, 2)), _block(width, 2 * width, (2, 2)), _block(2 * width, 4 * width, (2, 1))
        )
        self.proj = nn.Linear(4 * width, out_dim)
        self.out_dim = out_dim
        self.time_stride = 4

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``logmel [B, M, frames]`` -> tokens ``[B, frames // 4, out_dim]``, pooled ``[B, out_dim]``."""
        x = self.blocks(self.bn0(logmel).unsqueeze(1))  # [B, C, M', F']
        x = x.mean(dim=2).transpose(1, 2)  # [B, F', C]
        tokens = self.proj(x)  # [B, F', D]
        return tokens, tokens.mean(dim=1)


class Wav2Vec2Encoder(nn.Module):
    """wav2vec 2.0 (``transformers``, optional extra ``pip install dfdetect[audio]``) as an audio encoder.

    Args:
        model_name: hub name or local dir of the pretrained model.
        freeze_layers: transformer layers (from the bottom) kept frozen; the CNN feature encoder is
            always frozen. ``-1`` freezes everything.
        out_dim: token size (a linear projection of the hidden states).
        pretrained: load the pretrained weights (needs the hub or a local dir); otherwise build the
            architecture from its config (or ``config``) with random weights.
        config: ``Wav2Vec2Config`` keyword overrides (tiny configs in tests).
    """

    def __init__(
        self,
        model_name: str = "facebook/wav2vec2-base",
        freeze_layers: int = 0,
        out_dim: int = 256,
        pretrained: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        try:
            from transformers import Wav2Vec2Config, Wav2Vec2Model
        except ImportError as e:
            raise ImportError(
                "the wav2vec2 audio encoder needs the 'transformers' package: "
                "pip install 'dfdetect[audio]' (or use audio_encoder='cnn')"
            ) from e
        if pretrained and config is None:
            self.model = Wav2Vec2Model.from_pretrained(model_name)
        else:
            self.model = Wav2Vec2Model(self._config(Wav2Vec2Config, model_name, config))
        self.model.freeze_feature_encoder()
        layers = self.model.encoder.layers
        n_frozen = len(layers) if freeze_layers < 0 else min(freeze_layers, len(layers))
        for layer in list(layers)[:n_frozen]:
            layer.requires_grad_(False)
        self._frozen = [p for p in self.model.parameters() if not p.requires_grad]
        hidden = self.model.config.hidden_size
        self.proj = nn.Linear(hidden, out_dim)
        self.out_dim = out_dim

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters frozen at construction (feature encoder + the first ``freeze_layers`` layers)."""
        return list(self._frozen)

    @staticmethod
    def _config(config_cls: Any, model_name: str, overrides: dict[str, Any] | None) -> Any:
        if overrides is not None:
            return config_cls(**overrides)
        try:  # the architecture of model_name, from the local cache or the hub
            return config_cls.from_pretrained(model_name)
        except OSError:
            return config_cls()  # the defaults are wav2vec2-base's architecture

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio [B, S]`` 16 kHz -> tokens ``[B, S/320, out_dim]`` (20 ms), pooled ``[B, out_dim]``."""
        x = audio.float()
        if x.shape[-1] < 400:  # the CNN feature encoder needs one 25 ms receptive field
            x = nn.functional.pad(x, (0, 400 - x.shape[-1]))
        x = (x - x.mean(dim=1, keepdim=True)) / (x.std(dim=1, keepdim=True) + 1e-5)  # as its processor
        hidden = self.model(x).last_hidden_state  # [B, F, H]
        tokens = self.proj(hidden)
        return tokens, tokens.mean(dim=1)
