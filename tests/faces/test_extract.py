"""Streaming face extraction: real clips end to end, and the streaming logic with a stub detector."""

from __future__ import annotations

import numpy as np
import pytest

from dfdetect.config import PrepareConfig
from dfdetect.faces.detect import Detections, MTCNNDetector, detector_from_config
from dfdetect.faces.extract import FaceExtractor, extract_faces
from dfdetect.faces.track import box_iou, cut_distance, frame_signature
from tests.faces.conftest import LocalFrame, read_frames

TALKING_HEAD = "real/videoretalking_face_2.mp4"  # 844 x 844, one frontal face
POSE = "real/pcavs_Pose_Source_00067.mp4"  # 224 x 224, one face turning
STAGE = "real/face_recognition_short_hamilton_clip.mp4"  # 640 x 360, cuts, several small faces


def _eye_tilt(landmarks: np.ndarray) -> np.ndarray:
    d = landmarks[:, 1] - landmarks[:, 0]  # [T, 2]
    return np.degrees(np.arctan2(d[:, 1], d[:, 0]))


def test_talking_head_gives_one_long_track(detector: MTCNNDetector) -> None:
    frames = read_frames(TALKING_HEAD, fps=5.0)
    config = PrepareConfig(detect_every=3, size=112)
    faces = extract_faces(frames, detector, config)
    assert len(faces) == 1
    face = faces[0]
    t = len(face.track.timestamps)
    assert t >= 0.9 * len(frames)
    assert face.crops.shape == (t, 112, 112, 3) and face.crops.dtype == np.uint8
    assert (
        face.crop_boxes.shape == (t, 4) and face.crop_landmarks.shape == (t, 5, 2) and face.blur.shape == (t,)
    )
    assert face.track.boxes.shape == (t, 4) and face.track.landmarks.shape == (t, 5, 2)
    np.testing.assert_allclose(face.track.timestamps, [f.timestamp for f in frames[-t:]])
    # detector on every 3rd sampled frame and on the last one; the rest interpolated
    expected = [(i % 3 == 0) or (i == len(frames) - 1) for i in range(len(frames))][-t:]
    assert face.track.detected.tolist() == expected
    assert (face.track.scores >= config.min_score).all()
    assert ((face.crop_landmarks >= 0) & (face.crop_landmarks <= 112)).all()
    assert face.track.mean_size > 150 and (face.blur > 0).all() and face.track.track_id == 0


def test_sparse_detection_tracks_like_dense_detection(detector: MTCNNDetector) -> None:
    frames = read_frames(POSE, fps=5.0, max_frames=16)
    dense = extract_faces(frames, detector, PrepareConfig(detect_every=1))
    sparse = extract_faces(frames, detector, PrepareConfig(detect_every=3))
    assert len(dense) == len(sparse) == 1
    assert dense[0].track.detected.all() and not sparse[0].track.detected.all()
    np.testing.assert_allclose(dense[0].track.timestamps, sparse[0].track.timestamps)
    iou = np.diag(box_iou(dense[0].track.boxes, sparse[0].track.boxes))
    assert iou.min() > 0.7, iou


def test_alignment_levels_the_eyes_on_every_frame(detector: MTCNNDetector) -> None:
    frames = read_frames(POSE, fps=5.0, max_frames=12)
    plain = extract_faces(frames, detector, PrepareConfig(detect_every=3, align=False))[0]
    aligned = extract_faces(frames, detector, PrepareConfig(detect_every=3, align=True))[0]
    assert np.abs(_eye_tilt(aligned.crop_landmarks)).max() < 2.0
    assert np.abs(_eye_tilt(aligned.crop_landmarks)).mean() < np.abs(_eye_tilt(plain.crop_landmarks)).mean()
    assert aligned.crops.shape == plain.crops.shape


@pytest.mark.slow
def test_stage_clip_gives_several_ranked_tracks_that_never_cross_a_cut() -> None:
    frames = read_frames(STAGE, fps=5.0)
    config = PrepareConfig(detect_every=3, max_faces=6, size=64)
    faces = extract_faces(frames, detector_from_config(config), config)
    assert len(faces) >= 5  # the whole cast, not only the largest face
    ranks = [f.track.mean_size * len(f.track.timestamps) for f in faces]
    assert ranks == sorted(ranks, reverse=True)
    assert [f.track.track_id for f in faces] == list(range(len(faces)))
    # the solo shot (~4 s) is one track despite fast head motion between keyframes
    assert len(faces[0].track.timestamps) >= 20
    # the group shot: at least 4 faces at the same time, each its own track
    spans = [(f.track.timestamps[0], f.track.timestamps[-1]) for f in faces]
    assert sum(s[0] <= spans[1][1] and spans[1][0] <= s[1] for s in spans) >= 4
    signatures = [frame_signature(f.image) for f in frames]
    cuts = [i for i in range(1, len(frames)) if cut_distance(signatures[i - 1], signatures[i]) > 0.35]
    assert len(cuts) >= 2
    for face in faces:
        ts = face.track.timestamps
        for i in cuts:
            assert not (ts[0] <= frames[i - 1].timestamp and frames[i].timestamp <= ts[-1]), (spans, cuts)


def test_faceless_clip_gives_no_track(detector: MTCNNDetector) -> None:
    yy, xx = np.mgrid[0:120, 0:160]
    frames = [
        LocalFrame(
            i,
            i / 5,
            np.stack([(xx + 7 * i) % 256, (yy * 2) % 256, np.full_like(xx, 60)], -1).astype(np.uint8),
        )
        for i in range(12)
    ]
    assert extract_faces(frames, detector, PrepareConfig()) == []


class StubDetector:
    """Finds one face at a fixed box in every frame whose image is not black (counts its calls)."""

    name = "stub"

    def __init__(
        self, box: tuple[float, float, float, float] = (20, 20, 80, 100), score: float = 0.99
    ) -> None:
        self.box = np.array(box, np.float32)
        self.score = score
        self.seen = 0

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        self.seen += len(images)
        out = []
        for image in images:
            if image.max() == 0:
                out.append(Detections.empty())
                continue
            lm = np.array([[35, 45], [65, 45], [50, 60], [38, 80], [62, 80]], np.float32)
            out.append(Detections(self.box[None], lm[None], np.array([self.score], np.float32)))
        return out


def _frames(n: int, dark: set[int] = frozenset(), size: int = 128) -> list[LocalFrame]:
    rng = np.random.default_rng(0)
    base = rng.integers(30, 220, (size, size, 3), dtype=np.uint8)
    return [LocalFrame(i, i * 0.2, np.zeros_like(base) if i in dark else base) for i in range(n)]


def test_memory_stays_bounded_on_long_streams() -> None:
    stub = StubDetector()
    config = PrepareConfig(detect_every=3, size=32)
    extractor = FaceExtractor(stub, config, batch_keyframes=4, max_gap=2)
    peak = 0
    for frame in _frames(300):
        extractor.add(frame)
        peak = max(peak, extractor.buffered)
    (face,) = extractor.finish()
    assert peak <= 4 * 3 + 1  # the frames of one detector batch, never the video
    assert len(face.track.timestamps) == 300 and stub.seen == 101  # frames 0, 3, ..., 297 and 299
    with pytest.raises(RuntimeError, match="after finish"):
        extractor.add(_frames(1)[0])


def test_gaps_are_bridged_and_long_absences_split_tracks() -> None:
    config = PrepareConfig(detect_every=2, size=32, min_track_frames=3)
    options = {"max_gap": 1, "cut_threshold": None}  # black frames would count as scene cuts
    # face missing on keyframe 6 only (within max_gap=1): one track, frames 5-7 interpolated
    (face,) = extract_faces(_frames(15, dark={6}), StubDetector(), config, **options)
    assert len(face.track.timestamps) == 15
    assert not face.track.detected[5:8].any() and face.track.detected[[4, 8]].all()
    # missing on keyframes 6, 8, 10 (beyond max_gap): two tracks, the longer first
    faces = extract_faces(_frames(20, dark={6, 7, 8, 9, 10}), StubDetector(), config, **options)
    assert [len(f.track.timestamps) for f in faces] == [8, 5]  # frames 12-19, then 0-4
    assert faces[0].track.timestamps[0] == pytest.approx(2.4) and faces[1].track.timestamps[
        -1
    ] == pytest.approx(0.8)


def test_scene_cut_ends_tracks_and_triggers_detection() -> None:
    frames = _frames(12)
    other = (frames[0].image * np.array([1.0, 0.3, 0.3])).astype(np.uint8)  # other colours: a new shot
    frames[7:] = [LocalFrame(f.index, f.timestamp, other) for f in frames[7:]]
    stub = StubDetector()
    faces = extract_faces(frames, stub, PrepareConfig(detect_every=5, size=32))
    # keyframes 0, 5, 10, 11 plus both sides of the cut (6, 7): tracks end and start on the cut
    assert stub.seen == 6
    assert sorted(len(f.track.timestamps) for f in faces) == [5, 7]
    assert all(f.track.detected[0] and f.track.detected[-1] for f in faces)


def test_quality_filters() -> None:
    frames = _frames(10)
    assert extract_faces(frames[:2], StubDetector(), PrepareConfig(min_track_frames=3)) == []
    assert extract_faces(frames, StubDetector(), PrepareConfig(min_face_size=100)) == []  # box ~69 px
    assert extract_faces(frames, StubDetector(score=0.8), PrepareConfig(min_score=0.9)) == []
    assert extract_faces(frames, StubDetector(), PrepareConfig(min_blur=1e9)) == []
    assert len(extract_faces(frames, StubDetector(), PrepareConfig(size=32))) == 1
    assert extract_faces([], StubDetector(), PrepareConfig()) == []


class SpyDetector:
    """Wraps a detector and counts the region searches (calls with ``min_face_size``)."""

    def __init__(self, inner: MTCNNDetector) -> None:
        self.inner, self.name, self.region_images = inner, inner.name, 0

    def detect(self, images: list[np.ndarray], min_face_size: float | None = None) -> list[Detections]:
        self.region_images += len(images) if min_face_size is not None else 0
        return self.inner.detect(images, min_face_size=min_face_size)


@pytest.mark.parametrize(
    ("clip", "n_frames"), [(TALKING_HEAD, 25), pytest.param(STAGE, 40, marks=pytest.mark.slow)]
)
def test_region_detection_matches_full_frame_detection(
    detector: MTCNNDetector, clip: str, n_frames: int
) -> None:
    frames = read_frames(clip, max_frames=n_frames)
    config = PrepareConfig(detect_every=3)
    full = extract_faces(frames, detector, config, roi=False)
    spy = SpyDetector(detector)
    roi = extract_faces(frames, spy, config, roi=True, full_every=3.0)
    assert spy.region_images >= 3  # most keyframes were searched around the tracks only
    assert FaceExtractor(spy, config).roi and not FaceExtractor(StubDetector(), config).roi  # auto
    assert len(roi) == len(full) >= 1  # same faces found (the stage clip: several, across cuts)
    for ref in full:
        ious = []
        for t, box in zip(ref.track.timestamps, ref.track.boxes, strict=True):
            same_time = [f.track.boxes[np.isclose(f.track.timestamps, t)] for f in roi]
            candidates = np.concatenate([b for b in same_time if len(b)] or [np.zeros((0, 4))])
            ious.append(box_iou(box[None], candidates).max() if len(candidates) else 0.0)
        assert min(ious) > 0.8, (clip, ref.track.track_id, np.round(ious, 2))
