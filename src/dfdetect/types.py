"""Frozen dataclasses shared by every layer of dfdetect.

These are the contracts between layers (see DESIGN.md): ``io`` produces :class:`VideoInfo`,
``faces`` produces :class:`FaceTrack`, ``data.cache`` stores :class:`Clip`, and ``infer``/``eval``
produce :class:`Prediction`. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Status(StrEnum):
    """Outcome of processing one video. ``OK`` and ``NO_AUDIO`` carry a score; the others do not."""

    OK = "ok"
    NO_AUDIO = "no_audio"  # scored from video only (no audio stream, or a silent one)
    NO_FACE = "no_face"  # readable video, but no face track passed the quality filters
    NO_VIDEO = "no_video"  # no video stream (audio-only file) and the model cannot score audio alone
    NO_SPEECH = "no_speech"  # an audio file (or audio-only scan) in which no speech was found
    UNREADABLE = "unreadable"  # missing, zero-byte, corrupt, truncated beyond use, not a media file
    ERROR = "error"  # an unexpected failure; the message says what happened


class AudioStatus(StrEnum):
    """What the audio of a video turned out to be. Facts, not errors."""

    OK = "ok"  # an audio stream with some signal (speech may still be absent)
    NO_STREAM = "no_stream"  # the container has no audio stream
    SILENT = "silent"  # an audio stream whose samples are (near) silence


class MediaKind(StrEnum):
    """What a scanned file is; the pipeline dispatches on it."""

    VIDEO = "video"  # a video stream (with or without audio)
    IMAGE = "image"  # a still image: faces scored as one-frame clips
    AUDIO = "audio"  # audio only: scored from audio alone by an audio-capable model


class Verdict(StrEnum):
    REAL = "real"
    FAKE = "fake"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class VideoInfo:
    """Container/stream facts of a video file (sizes are after applying rotation metadata)."""

    path: str
    duration: float  # seconds
    fps: float  # average frame rate of the video stream
    width: int
    height: int
    codec: str
    rotation: int = 0  # degrees, from the display matrix / rotate tag
    n_frames: int | None = None  # from the container; None when unknown
    has_audio: bool = False
    audio_codec: str | None = None
    audio_sample_rate: int | None = None


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through time, in original-frame pixel coordinates.

    Arrays are aligned on the time axis ``T`` (one entry per sampled frame the track covers).
    """

    track_id: int
    timestamps: np.ndarray  # [T] float64 seconds
    boxes: np.ndarray  # [T, 4] float32 x1, y1, x2, y2
    landmarks: np.ndarray  # [T, 5, 2] float32 (eyes, nose, mouth corners)
    scores: np.ndarray  # [T] float32 detection confidence (interpolated frames carry the neighbours' mean)
    detected: np.ndarray  # [T] bool, True where the detector ran and found the face (False = tracked)

    @property
    def duration(self) -> float:
        return float(self.timestamps[-1] - self.timestamps[0]) if len(self.timestamps) else 0.0

    @property
    def mean_size(self) -> float:
        wh = self.boxes[:, 2:] - self.boxes[:, :2]
        return float(np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 0, None)).mean()) if len(wh) else 0.0


@dataclass(frozen=True)
class FaceCrops:
    """A face track with its square crops, as stored in the cache."""

    track: FaceTrack
    crops: np.ndarray  # [T, H, W, 3] uint8 RGB face crops (square, with margin)
    crop_boxes: np.ndarray  # [T, 4] float32 the square region of the frame each crop was cut from
    crop_landmarks: np.ndarray  # [T, 5, 2] float32 landmarks in crop pixel coordinates
    blur: np.ndarray  # [T] float32 variance of the Laplacian of each crop (higher = sharper)


@dataclass(frozen=True)
class Clip:
    """Everything prepared from one video: face-track crops + audio + the parameters that made them.

    This is the in-memory form of a cache entry (``data.cache``).
    """

    path: str
    info: VideoInfo
    faces: list[FaceCrops]  # ranked by size x duration, largest first
    audio: np.ndarray  # [S] float32 mono at ``sample_rate`` (empty when there is no audio stream)
    sample_rate: int
    audio_status: AudioStatus
    speech: list[tuple[float, float]]  # speech segments (start, end) in seconds from VAD
    params: dict[str, Any] = field(default_factory=dict)  # fps, size, margin, detector, ...
    kind: MediaKind = MediaKind.VIDEO

    @property
    def has_usable_audio(self) -> bool:
        """The one decision of "has usable audio": a stream with signal (not silent), samples present."""
        return self.audio_status == AudioStatus.OK and np.asarray(self.audio).size > 0


@dataclass(frozen=True)
class TrackScore:
    """Score of one face track in a scanned video."""

    track_id: int
    p_fake: float
    start: float
    end: float
    n_frames: int
    box: tuple[float, float, float, float]  # median box in frame pixels
    speaking: bool = False  # the face matched to the speech (best audio-visual sync)
    sync_score: float | None = None


@dataclass(frozen=True)
class Uncertainty:
    """Spread of a prediction's p_fake over ``passes`` stochastic passes of the model (same inputs).

    ``method``: ``dropout`` (Monte-Carlo dropout) or ``tta`` (test-time augmentation). ``mean``/``std``
    and the ``level`` interval ``[low, high]`` (5th-95th percentile at 0.9) are over the passes' calibrated
    p_fake (fused with the speech score like p_fake); ``samples`` holds them. ``crosses_band``: the interval
    reaches both sides of the verdict band, which makes the verdict ``uncertain``.
    ``timeline``: ``(t0, t1, std, low, high)`` per second of the prediction's timeline.
    """

    method: str
    passes: int
    mean: float
    std: float
    low: float
    high: float
    level: float = 0.9
    crosses_band: bool = False
    samples: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Uncertainty:
        return cls(**{**d, "timeline": [tuple(x) for x in d.get("timeline", [])]})


@dataclass(frozen=True)
class Prediction:
    """The answer for one file (``kind``: video, image or audio); JSON-serialisable through :meth:`to_dict`.

    ``p_fake`` is calibrated (temperature scaling from the checkpoint); ``None`` when ``status`` has
    no score (no_face, no_speech, unreadable, ...). ``timeline`` holds ``(t0, t1, p_fake)`` per second;
    ``speech`` the judged speech segments of an audio file, or of a video whose speech model scored them.
    ``fusion`` (videos scanned with a speech model) holds the numbers of the verdict: ``visual`` (the video
    model's calibrated p_fake), ``audio`` (the speech model's p_fake, None without speech), ``p0`` (its
    real-voice ceiling), ``audio_excess``, ``p_fake`` (fused), ``decided_by`` (``visual`` | ``audio``),
    ``speech_model`` and ``speech_status``. ``uncertainty`` (scans with ``uncertainty=N``): the spread of
    p_fake over N stochastic passes, see :class:`Uncertainty`.
    """

    path: str
    status: Status
    kind: MediaKind = MediaKind.VIDEO
    p_fake: float | None = None
    verdict: Verdict | None = None
    message: str = ""
    modality: dict[str, float] = field(default_factory=dict)  # visual, audio, sync (where available)
    tracks: list[TrackScore] = field(default_factory=list)
    timeline: list[tuple[float, float, float]] = field(default_factory=list)
    suspicious: list[tuple[float, float, float]] = field(default_factory=list)  # top segments
    speech: list[tuple[float, float, float]] = field(default_factory=list)  # audio: (t0, t1, p) per speech
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    model: str = ""
    extras: dict[str, Any] = field(default_factory=dict)  # explanations, frame scores, label, ...
    fusion: dict[str, Any] = field(default_factory=dict)  # visual + speech-model audio -> p_fake (see above)
    uncertainty: Uncertainty | None = None  # spread over stochastic passes (scan --uncertainty N)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (enums as strings, tuples as lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        d = dict(d)
        d["status"] = Status(d["status"])
        d["kind"] = MediaKind(d.get("kind", MediaKind.VIDEO))
        d["verdict"] = Verdict(d["verdict"]) if d.get("verdict") else None
        d["tracks"] = [TrackScore(**{**t, "box": tuple(t["box"])}) for t in d.get("tracks", [])]
        for key in ("timeline", "suspicious", "speech"):
            d[key] = [tuple(x) for x in d.get(key, [])]
        d["uncertainty"] = Uncertainty.from_dict(d["uncertainty"]) if d.get("uncertainty") else None
        return cls(**d)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, StrEnum):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
