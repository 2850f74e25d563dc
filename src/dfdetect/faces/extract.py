"""Streaming face extraction: frames in, ranked face-track crops out, with bounded memory.

:class:`FaceExtractor` runs the detector on every ``detect_every``-th sampled frame (and on the
last one), links detections into tracks (:mod:`dfdetect.faces.track`), interpolates boxes and
landmarks on the frames in between, cuts the crops, and drops frames as soon as no track can need
them. Only the frames since the oldest pending detection are held, never the whole video.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dfdetect.config import PrepareConfig
from dfdetect.faces.crop import blur_score, crop_face
from dfdetect.faces.detect import FaceDetector, detector_from_config
from dfdetect.faces.track import (
    IouTracker,
    TrackState,
    cut_distance,
    frame_signature,
    interpolate,
    track_rank,
)
from dfdetect.types import FaceCrops, FaceTrack

if TYPE_CHECKING:
    from dfdetect.io.video import Frame


@dataclass
class _TrackFrames:
    """Per-frame arrays of one track while it is being built."""

    state: TrackState
    timestamps: list[float] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    crop_boxes: list[np.ndarray] = field(default_factory=list)
    crop_landmarks: list[np.ndarray] = field(default_factory=list)
    blur: list[float] = field(default_factory=list)

    @property
    def mean_size(self) -> float:
        wh = np.stack(self.boxes)[:, 2:] - np.stack(self.boxes)[:, :2]  # [T, 2]
        return float(np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 0, None)).mean())

    @property
    def rank(self) -> float:
        return track_rank(self.mean_size, len(self.timestamps))


class FaceExtractor:
    """Turns a stream of sampled frames into face tracks with crops.

    Args:
        detector: a :class:`~dfdetect.faces.detect.FaceDetector`; None builds the one ``config``
            names (:func:`~dfdetect.faces.detect.detector_from_config`).
        config: detection schedule, crop size/margin/alignment and quality filters.
        batch_keyframes: keyframes given to the detector at once (more = faster, more frames held).
        iou_threshold: smallest IoU that links a detection to a track.
        max_gap: keyframes in a row a track may miss before it ends.
        smoothing: weight of the track's prediction in its smoothed boxes (0 = raw detections).
        max_shift: largest centre shift between keyframes, in face sides, that still links a
            detection to a track when their IoU is low (fast motion).
        cut_threshold: histogram distance between successive frames taken as a scene cut (None =
            off). A cut frame becomes a keyframe and ends every track, so no track spans two shots.
    """

    def __init__(
        self,
        detector: FaceDetector | None = None,
        config: PrepareConfig | None = None,
        batch_keyframes: int = 4,
        iou_threshold: float = 0.3,
        max_gap: int = 2,
        smoothing: float = 0.3,
        max_shift: float = 1.0,
        cut_threshold: float | None = 0.35,
    ) -> None:
        self.config = config or PrepareConfig()
        self.detector = detector if detector is not None else detector_from_config(self.config)
        self.batch_keyframes = max(1, batch_keyframes)
        self.tracker = IouTracker(iou_threshold, max_gap, smoothing, max_shift)
        self._frames: dict[int, Any] = {}  # sampled index -> Frame, still needed
        self._pending: list[int] = []  # keyframes waiting for the detector
        self._count = 0  # frames added
        self._last_detected = -1  # last keyframe handed to the tracker
        self._building: dict[int, _TrackFrames] = {}  # track_id -> arrays
        self._finished: list[_TrackFrames] = []
        self._done = False
        self.cut_threshold = cut_threshold
        self._signature: np.ndarray | None = None
        self._cuts: set[int] = set()  # keyframes that start a new shot

    @property
    def buffered(self) -> int:
        """Number of frames held right now (bounded by the detection schedule, not the video)."""
        return len(self._frames)

    def add(self, frame: Frame) -> None:
        """Add the next sampled frame (``Frame``: index, timestamp, RGB uint8 image)."""
        if self._done:
            raise RuntimeError("FaceExtractor.add() after finish(): make a new extractor per video")
        key = self._count
        self._count += 1
        self._frames[key] = frame
        cut = self._is_cut(frame.image) and key > 0
        if cut:  # detect on both sides of the cut, so tracks end and start on it
            self._cuts.add(key)
            if key - 1 > self._last_detected and key - 1 not in self._pending:
                self._pending.append(key - 1)
        if cut or key % self.config.detect_every == 0:
            self._pending.append(key)
            if len(self._pending) >= self.batch_keyframes:
                self._flush()

    def finish(self) -> list[FaceCrops]:
        """Detect on the last frame, close every track and return the kept ones, best first.

        Tracks are kept when they have at least ``min_track_frames`` frames, a mean face size of at
        least ``min_face_size`` pixels and a mean crop sharpness of at least ``min_blur``; they are
        ranked by mean size x number of frames and at most ``max_faces`` are returned, with
        ``track_id`` renumbered by rank (0 = best).
        """
        if not self._done:
            last = self._count - 1
            if last > self._last_detected and last not in self._pending:
                self._pending.append(last)
            self._flush()
            for state in self.tracker.finish():
                self._close(state)
            self._frames.clear()
            self._done = True
        kept = sorted(self._finished, key=lambda t: -t.rank)[: self.config.max_faces]
        return [_to_face_crops(rank, t) for rank, t in enumerate(kept)]

    def _flush(self) -> None:
        """Run the detector on the pending keyframes, then link, fill and crop up to the last one."""
        if not self._pending:
            return
        keys, self._pending = self._pending, []
        all_detections = self.detector.detect([self._frames[k].image for k in keys])
        for key, detections in zip(keys, all_detections, strict=True):
            detections = detections.select(detections.scores >= self.config.min_score)
            if key in self._cuts:
                for state in self.tracker.finish():
                    self._close(state)
            found, ended = self.tracker.update(key, float(self._frames[key].timestamp), detections)
            for state in ended:
                self._close(state)
            for state, previous in found:
                self._fill(state, previous)
            self._last_detected = key
        self._drop_unneeded()

    def _is_cut(self, image: np.ndarray) -> bool:
        """Whether ``image`` starts a new shot (compared with the previous frame)."""
        if self.cut_threshold is None:
            return False
        signature, previous = frame_signature(image), self._signature
        self._signature = signature
        return previous is not None and cut_distance(previous, signature) > self.cut_threshold

    def _fill(self, state: TrackState, previous: int | None) -> None:
        """Append the frames (previous, last key] of a track: interpolated, then the detection."""
        building = self._building.setdefault(state.track_id, _TrackFrames(state))
        key = state.last_key
        start = key if previous is None else previous + 1
        t0 = state.times[-2] if previous is not None else state.times[-1]
        for index in range(start, key + 1):
            frame = self._frames[index]
            if index == key:
                box, landmarks, score = state.boxes[-1], state.landmarks[-1], state.scores[-1]
            else:
                t = float(frame.timestamp)
                box = interpolate(t0, state.times[-1], state.boxes[-2], state.boxes[-1], t)
                landmarks = interpolate(t0, state.times[-1], state.landmarks[-2], state.landmarks[-1], t)
                score = (state.scores[-2] + state.scores[-1]) / 2
            self._append(building, frame, box, landmarks, score, index == key)

    def _append(
        self,
        building: _TrackFrames,
        frame: Frame,
        box: np.ndarray,
        landmarks: np.ndarray,
        score: float,
        detected: bool,
    ) -> None:
        """Crop one frame of a track and store its arrays."""
        crop, crop_box, crop_landmarks = crop_face(
            frame.image, box, self.config.size, self.config.margin, landmarks, self.config.align
        )
        building.timestamps.append(float(frame.timestamp))
        building.boxes.append(np.asarray(box, np.float32))
        building.landmarks.append(np.asarray(landmarks, np.float32))
        building.scores.append(float(score))
        building.detected.append(detected)
        building.crops.append(crop)
        building.crop_boxes.append(crop_box)
        building.crop_landmarks.append(crop_landmarks)
        building.blur.append(blur_score(crop))

    def _close(self, state: TrackState) -> None:
        """A track ended: keep it if it passes the quality filters (and could still rank)."""
        building = self._building.pop(state.track_id, None)
        if building is None or not self._passes(building):
            return
        self._finished.append(building)
        # Finished tracks never grow: those beyond max_faces among them can never be returned.
        self._finished = sorted(self._finished, key=lambda t: -t.rank)[: self.config.max_faces]

    def _passes(self, building: _TrackFrames) -> bool:
        cfg = self.config
        return (
            len(building.timestamps) >= cfg.min_track_frames
            and building.mean_size >= cfg.min_face_size
            and float(np.mean(building.blur)) >= cfg.min_blur
        )

    def _drop_unneeded(self) -> None:
        """Forget frames no active track can still need (at or before every track's last key)."""
        horizon = min([t.last_key for t in self.tracker.active] + [self._last_detected])
        for index in [i for i in self._frames if i <= horizon and i not in self._pending]:
            del self._frames[index]


def _to_face_crops(rank: int, t: _TrackFrames) -> FaceCrops:
    """Stack a built track into the :class:`~dfdetect.types.FaceCrops` contract."""
    track = FaceTrack(
        track_id=rank,
        timestamps=np.asarray(t.timestamps, np.float64),
        boxes=np.stack(t.boxes).astype(np.float32),
        landmarks=np.stack(t.landmarks).astype(np.float32),
        scores=np.asarray(t.scores, np.float32),
        detected=np.asarray(t.detected, bool),
    )
    return FaceCrops(
        track=track,
        crops=np.stack(t.crops),
        crop_boxes=np.stack(t.crop_boxes).astype(np.float32),
        crop_landmarks=np.stack(t.crop_landmarks).astype(np.float32),
        blur=np.asarray(t.blur, np.float32),
    )


def extract_faces(
    frames: Iterable[Frame],
    detector: FaceDetector | None = None,
    config: PrepareConfig | None = None,
    **options: Any,
) -> list[FaceCrops]:
    """Face tracks with crops from a stream of frames (see :class:`FaceExtractor`).

    Args:
        frames: sampled frames in time order (e.g. ``dfdetect.io.video.iter_frames(path, fps)``).
        detector: face detector; None builds the one ``config`` names.
        config: preparation settings (defaults: :class:`~dfdetect.config.PrepareConfig`).
        **options: extra :class:`FaceExtractor` arguments (``batch_keyframes``, ``max_gap``, ...).

    Returns:
        Kept tracks, ranked by mean face size x duration (best first); empty when no face.
    """
    extractor = FaceExtractor(detector, config, **options)
    for frame in frames:
        extractor.add(frame)
    return extractor.finish()
