"""What a model expects of its inputs, timm's ``pretrained_cfg`` style: the one place the preprocessing
defaults of a registered model come from.

Every registered model carries a :class:`PretrainedCfg` (``factory.register_model``): a fixed one, or one
that follows the model's keywords (``backbone`` picks timm's mean/std/size; ``fps``, ``segment_seconds``,
``sample_rate``, ``mouth_size`` are the model's own). :meth:`PretrainedCfg.preprocess` gives the keys of
``config.PreprocessConfig`` it fixes, so ``default_preprocess``, distillation and the speech checkpoints
derive their preprocessing from the model rather than from lists of names. Nothing here imports torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from dfdetect.constants import DEFAULT_FPS, IMAGENET_MEAN, IMAGENET_STD, SAMPLE_RATE

DEFAULT_BACKBONE = "efficientnet_b0"
WINDOW_KEYS = ("fps", "segment_seconds", "sample_rate", "mouth_size")  # model keywords = preprocess keys


@dataclass(frozen=True)
class PretrainedCfg:
    """Preprocessing a model was built for (timm's ``pretrained_cfg``).

    Attributes:
        kind: what the model scores: ``video`` (face windows), ``image`` or ``audio``.
        mean, std, size: normalisation and side of the face crops (timm's config of the backbone).
        fps, segment_seconds, clip_frames: frame rate, segment length and frames per window.
        sample_rate: audio sample rate (Hz).
        mouth_size: side of the mouth crops of a lip-sync head (None: the model has none).
        window_samples: samples per window of an audio model (None: follows the video window).
        runtime: what runs the model: ``torch``, or ``numpy`` for a model that imports no torch (it takes
            and returns numpy arrays on the CPU; a scan with it stays torch-free).
    """

    kind: Literal["video", "image", "audio"] = "video"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    size: int = 224
    fps: float = DEFAULT_FPS
    segment_seconds: float = 1.0
    clip_frames: int = 16
    sample_rate: int = SAMPLE_RATE
    mouth_size: int | None = None
    window_samples: int | None = None
    runtime: Literal["torch", "numpy"] = "torch"

    def with_window(self, seconds: float) -> PretrainedCfg:
        """An audio model's config whose window (= one segment) lasts ``seconds``."""
        return replace(
            self,
            fps=self.clip_frames / seconds,
            segment_seconds=seconds,
            window_samples=round(seconds * self.sample_rate),
        )

    def preprocess(self) -> dict[str, Any]:
        """The ``PreprocessConfig`` keys this config fixes (a model with its own audio window also
        ``window_samples`` and ``kind``, which a checkpoint keeps beside them)."""
        out = {k: v for k, v in asdict(self).items() if v is not None and k not in ("kind", "window_samples")}
        if self.window_samples is not None:
            out |= {"window_samples": self.window_samples, "kind": self.kind}
        return out

    def normalisation(self) -> dict[str, Any]:
        """``{"mean", "std", "size"}``: how face crops are normalised."""
        return {"mean": self.mean, "std": self.std, "size": self.size}


def keyword_defaults(constructor: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``constructor`` (a class or function)."""
    params = inspect.signature(constructor).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def timm_normalisation(name: str) -> dict[str, Any] | None:
    """``{"mean", "std", "size"}`` from timm's pretrained config of ``name`` (None: timm has none)."""
    import timm

    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception:  # older timm raise on unknown names; newer return None
        cfg = None
    if cfg is None:
        return None
    return {
        "mean": tuple(float(x) for x in cfg.mean),
        "std": tuple(float(x) for x in cfg.std),
        "size": int(cfg.input_size[-1] if cfg.input_size else 224),
    }


def window_cfg(
    family: Callable[[], Callable[..., Any]], kind: Literal["video", "audio"]
) -> Callable[..., PretrainedCfg]:
    """The config of a window detector family as a function of its keywords (``family()`` returns its
    class, imported when first needed): ``fps``, ``segment_seconds``, ``sample_rate`` and ``mouth_size``
    are the model's own; a timm ``backbone`` (when the frames go through one) gives mean, std and size;
    anything else keeps the :class:`PretrainedCfg` defaults."""

    def cfg(**kwargs: Any) -> PretrainedCfg:
        args = {**keyword_defaults(family()), **kwargs}
        fields = {k: args[k] for k in WINDOW_KEYS if args.get(k) is not None}
        if "backbone" in args and args.get("frame_encoder", "backbone") == "backbone":
            fields |= timm_normalisation(args["backbone"]) or {}
        return PretrainedCfg(kind=kind, **fields)

    return cfg
