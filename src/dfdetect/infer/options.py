"""Scan options: one frozen :class:`ScanOptions`, validated once, for every surface of the scan.

Whisper's ``DecodingOptions`` style: the CLI (``dfdetect scan``, ``dfdetect batch``), the Python API
(``dfdetect.load_detector(..., thresholds=...)`` builds one), batch workers (which receive
:meth:`ScanOptions.to_dict`) and the service (a job's ``explain`` and ``uncertainty``) all describe a scan
with this one object; :class:`~dfdetect.infer.pipeline.Detector` keeps it as ``detector.options``.
Defaults come from :mod:`dfdetect.constants`; a bad value raises :class:`ScanOptionsError` at
construction (or :meth:`ScanOptions.replace`), never later in a scan.

Fields fixed when a detector loads (:data:`LOAD_FIELDS`: what is read from a file, the speech model, the
face detector) and per-call ones (:data:`CALL_FIELDS`: ``explain``, ``thumbnails``, ``uncertainty``, which
``Detector.scan`` may override for one file) live side by side.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dfdetect.constants import VERDICT_BAND

LOAD_FIELDS = ("max_duration", "speech", "faces")  # decided when a detector loads
CALL_FIELDS = ("explain", "thumbnails", "uncertainty")  # may change for one scan (Detector.scan)


class ScanOptionsError(ValueError):
    """A scan option has a bad value: ``field`` names it, ``problem`` says what is wrong and what to do."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class ScanOptions:
    """How a :class:`~dfdetect.infer.pipeline.Detector` scans (frozen; checked once, at construction).

    Attributes:
        thresholds: ``(low, high)``: calibrated p_fake <= low is real, >= high is fake, between is
            uncertain (:data:`dfdetect.constants.VERDICT_BAND`).
        aggregation: how window scores become a track score: ``mean``, ``max``, ``topk`` or ``attention``
            (:mod:`dfdetect.infer.aggregate`).
        max_duration: seconds read from each file (None: the checkpoint's prepare setting).
        speech: the speech model that also scores a video's speech: ``"auto"`` (the one the checkpoint
            names, none if it names none), a model name or checkpoint path, or None (no speech model).
        uncertainty: ``N`` stochastic passes per scan for p_fake's spread (0: none; else at least 2).
        uncertainty_method: ``auto`` (dropout when the model has it, else ``tta``), ``dropout`` or ``tta``.
        faces: the face detector: ``"auto"`` or None (the one the model's training crops came from, in its
            checkpoint's prepare config), or a registered name (``yunet``, ``mtcnn``) to override it.
        explain: add Grad-CAM heatmaps, attention and sync curves to each prediction.
        thumbnails: add face thumbnails and the speech waveform to each prediction (for reports).
    """

    thresholds: tuple[float, float] = VERDICT_BAND
    aggregation: str = "mean"
    max_duration: float | None = None
    speech: str | None = "auto"
    uncertainty: int = 0
    uncertainty_method: str = "auto"
    faces: str | None = "auto"
    explain: bool = False
    thumbnails: bool = False

    def __post_init__(self) -> None:
        checked = {
            "thresholds": _band(self.thresholds),
            "aggregation": _choice("aggregation", self.aggregation, _aggregations()),
            "max_duration": _seconds(self.max_duration),
            "speech": _speech(self.speech),
            "uncertainty": _passes(self.uncertainty),
            "uncertainty_method": _choice("uncertainty_method", self.uncertainty_method, _methods()),
            "faces": _faces(self.faces),
            "explain": _flag("explain", self.explain),
            "thumbnails": _flag("thumbnails", self.thumbnails),
        }
        for name, value in checked.items():  # normalised: a JSON list of thresholds becomes a tuple
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> ScanOptions:
        """A copy with ``changes`` (checked like a new one).

        Raises:
            ScanOptionsError: an unknown option name, or a bad value.
        """
        _known(changes)
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def of(cls, options: ScanOptions | Mapping[str, Any] | None = None, **changes: Any) -> ScanOptions:
        """``options`` (a ScanOptions, its :meth:`to_dict`, or None for the defaults) with ``changes``:
        what ``Detector(..., thresholds=...)`` and ``load_detector(..., thresholds=...)`` build."""
        base = options if isinstance(options, ScanOptions) else cls.from_dict(options or {})
        return base.replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for Ray workers, the service, results files)."""
        data = dataclasses.asdict(self)
        data["thresholds"] = list(self.thresholds)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanOptions:
        """The options :meth:`to_dict` wrote (missing fields: defaults).

        Raises:
            ScanOptionsError: an unknown option name, or a bad value.
        """
        _known(data)
        return cls(**data)


FIELDS = tuple(f.name for f in dataclasses.fields(ScanOptions))


def _known(names: Mapping[str, Any]) -> None:
    unknown = sorted(set(names) - set(FIELDS))
    if unknown:
        raise ScanOptionsError(unknown[0], f"not a scan option; the options are {', '.join(FIELDS)}")


def _band(value: Any) -> tuple[float, float]:
    default = f"{VERDICT_BAND[0]} {VERDICT_BAND[1]}"
    try:
        low, high = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ScanOptionsError(
            "thresholds", f"needs two numbers LOW HIGH (the default is {default}), got {value!r}"
        ) from None
    if not 0.0 <= low <= high <= 1.0:
        raise ScanOptionsError(
            "thresholds",
            f"needs 0 <= LOW <= HIGH <= 1 (p_fake <= LOW is real, >= HIGH is fake; the default is "
            f"{default}), got {low:g} {high:g}",
        )
    return low, high


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ScanOptionsError(field, f"unknown value {value!r}; choose one of {', '.join(choices)}")
    return str(value)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ScanOptionsError(
            "max_duration", f"needs seconds > 0 (or None: the model's own setting), got {value!r}"
        )
    return float(value)


def _speech(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise ScanOptionsError(
            "speech", f"needs 'auto', a speech model name or checkpoint path, or None (none), got {value!r}"
        )
    return os.fspath(value)


def _passes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0 or value == 1:
        raise ScanOptionsError(
            "uncertainty",
            f"needs 0 (off) or at least 2 passes (a spread of one is meaningless), got {value!r}",
        )
    return int(value)


def _faces(value: Any) -> str | None:
    if value is None or value == "auto":
        return value
    from dfdetect.faces.detect import DETECTORS

    return _choice("faces", value, ("auto", *DETECTORS.names()))


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ScanOptionsError(field, f"needs True or False, got {value!r}")
    return value


def _aggregations() -> tuple[str, ...]:
    from dfdetect.infer.aggregate import STRATEGIES

    return tuple(STRATEGIES)


def _methods() -> tuple[str, ...]:
    from dfdetect.infer.uncertainty import METHODS

    return tuple(METHODS)
