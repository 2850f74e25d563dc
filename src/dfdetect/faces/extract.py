"""Streaming face extraction: frames in, ranked face-track crops out, with bounded memory.

:class:`FaceExtractor` runs the detector on every ``detect_every``-th sampled frame (and on the
last one), links detections into tracks (:mod:`dfdetect.faces.track`), interpolates boxes and
landmarks on the frames in between, cuts the crops, and drops frames as soon as no track can need
them. Only the frames since the oldest pending detection are held, never the whole video.

Region-of-interest (ROI) detection: while tracks are alive, most keyframes are searched only in a
small square around each track's predicted box (resized so the face is ~96 px), which costs a
fraction of a full-frame search. The whole frame is searched again every ``full_every`` seconds
(new faces), at scene cuts, and whenever a track is not found in its region.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dfdetect.config import PrepareConfig
from dfdetect.faces.crop import blur_score, crop_face
from dfdetect.faces.detect import Detections, FaceDetector, detector_from_config
from dfdetect.faces.track import (
    IouTracker,
    TrackState,
    box_iou,
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
        roi: search keyframes only around the live tracks (see the module docstring); None = when
            the detector accepts a ``min_face_size`` keyword (:func:`accepts_min_face_size`).
        full_every: seconds between full-frame searches for new faces while tracks are alive.
        roi_margin: side of a track's search region relative to its face box side.
        roi_size: side in pixels the search regions are resized to (face ~ roi_size / roi_margin).
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
        roi: bool | None = None,
        full_every: float = 3.0,
        roi_margin: float = 2.0,
        roi_size: int = 192,
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
        self.roi = accepts_min_face_size(self.detector) if roi is None else bool(roi)
        self.full_every, self.roi_margin, self.roi_size = float(full_every), float(roi_margin), int(roi_size)
        self._last_full = -math.inf  # timestamp of the last full-frame search

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
        """Run the detector on the pending keyframes, then link, fill and crop up to the last one.

        Keyframes are handled in order: a keyframe is searched around the live tracks (ROI) when
        :meth:`_wants_roi` says so, else in full (all pending keyframes in one batch when ROI
        detection is off).
        """
        keys, self._pending = self._pending, []
        while keys:
            if keys[0] in self._cuts:  # no track spans a cut: end them before choosing the search
                for state in self.tracker.finish():
                    self._close(state)
            if self._wants_roi(keys[0]):
                key = keys.pop(0)
                detections = self._detect_rois(key)
                self._link(key, detections if detections is not None else self._detect_full([key])[0])
                continue
            # with ROI on, one keyframe at a time: a face found now makes the next searches cheap
            batch, keys = (keys[:1], keys[1:]) if self.roi else (keys, [])
            for key, detections in zip(batch, self._detect_full(batch), strict=True):
                self._link(key, detections)
        self._drop_unneeded()

    def _link(self, key: int, detections: Detections) -> None:
        """Hand the detections of keyframe ``key`` to the tracker; crop the tracks found there."""
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

    def _wants_roi(self, key: int) -> bool:
        """Search ``key`` around the live tracks only: no cut, a full search less than ``full_every``
        ago, and a frame big enough for regions to be cheaper (longest side > 2 x ``roi_size``)."""
        if not (self.roi and self.tracker.active) or key in self._cuts:
            return False
        if max(self._frames[key].image.shape[:2]) <= 2 * self.roi_size:
            return False
        return float(self._frames[key].timestamp) - self._last_full < self.full_every - 1e-6

    def _detect_full(self, keys: list[int]) -> list[Detections]:
        """Full-frame detections of the keyframes ``keys``."""
        self._last_full = max(float(self._frames[k].timestamp) for k in keys)
        return self.detector.detect([self._frames[k].image for k in keys])

    def _detect_rois(self, key: int) -> Detections | None:
        """Detections of keyframe ``key`` searched around each live track, in frame coordinates.

        Returns:
            The merged detections, or None when a track's region held no whole confident face
            (the caller then searches the full frame).
        """
        image = self._frames[key].image
        regions = [
            crop_face(image, track.predict(key), self.roi_size, self.roi_margin)[:2]
            for track in self.tracker.active
        ]
        face = self.roi_size / self.roi_margin  # expected face side in region pixels
        found = self.detector.detect([crop for crop, _ in regions], min_face_size=0.5 * face)
        parts = []
        for (_, region), detections in zip(regions, found, strict=True):
            boxes = detections.boxes
            # whole faces only: a face cut by the region's edge belongs to another region (or none)
            whole = (boxes[:, :2] > 1).all(1) & (boxes[:, 2:] < self.roi_size - 1).all(1)
            detections = detections.select(whole & (detections.scores >= self.config.min_score))
            if not len(detections):
                return None
            scale = float(region[2] - region[0]) / self.roi_size
            parts.append(detections.scaled(scale).shifted(region[:2]))
        return _merge(parts)

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


def accepts_min_face_size(detector: Any) -> bool:
    """Whether ``detector.detect`` takes a ``min_face_size`` keyword (needed for ROI detection).

    A wrapper may say so with a boolean ``accepts_min_face_size`` attribute instead.
    """
    if isinstance(getattr(detector, "accepts_min_face_size", None), bool):
        return detector.accepts_min_face_size
    try:
        return "min_face_size" in inspect.signature(detector.detect).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def _merge(parts: list[Detections], iou: float = 0.5) -> Detections:
    """Detections of overlapping regions merged: the same face found twice is kept once (best score)."""
    boxes = np.concatenate([d.boxes for d in parts])  # [N, 4]
    landmarks = np.concatenate([d.landmarks for d in parts])  # [N, 5, 2]
    scores = np.concatenate([d.scores for d in parts])  # [N]
    order = np.argsort(-scores, kind="stable")
    overlap = box_iou(boxes[order], boxes[order])  # [N, N]
    keep: list[int] = []
    for i in range(len(order)):
        if all(overlap[i, j] < iou for j in keep):
            keep.append(i)
    return Detections(boxes[order][keep], landmarks[order][keep], scores[order][keep])


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
