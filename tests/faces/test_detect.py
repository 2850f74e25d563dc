"""MTCNN detection on real photos: counts, landmarks, coordinates after downscaling, batching."""

from __future__ import annotations

import numpy as np
import pytest

from dfdetect.config import PrepareConfig
from dfdetect.faces.detect import (
    DETECTORS,
    Detections,
    FaceDetector,
    MTCNNDetector,
    create_detector,
    detector_from_config,
)
from dfdetect.faces.track import box_iou
from tests.faces.conftest import read_image


def _assert_plausible_face(box: np.ndarray, landmarks: np.ndarray) -> None:
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks
    assert left_eye[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert min(left_eye[0], mouth_left[0]) < nose[0] < max(right_eye[0], mouth_right[0])
    assert (landmarks[:, 0] > box[0]).all() and (landmarks[:, 0] < box[2]).all()
    assert (landmarks[:, 1] > box[1]).all() and (landmarks[:, 1] < box[3]).all()


def test_one_face_with_plausible_landmarks(detector: MTCNNDetector) -> None:
    image = read_image("obama.jpg")  # 910 x 1137, downscaled to 640 for detection
    (det,) = detector.detect([image])
    assert len(det) == 1
    assert det.boxes.shape == (1, 4) and det.landmarks.shape == (1, 5, 2) and det.scores.shape == (1,)
    assert det.boxes.dtype == np.float32 and det.scores[0] > 0.95
    box = det.boxes[0]
    # boxes come back in the input image's coordinates: the face is big in this portrait
    assert 150 < box[2] - box[0] < 450 and 0 <= box[0] < box[2] <= image.shape[1]
    _assert_plausible_face(box, det.landmarks[0])


def test_two_faces(detector: MTCNNDetector) -> None:
    (det,) = detector.detect([read_image("two_people.jpg")])
    assert len(det) == 2
    assert box_iou(det.boxes[:1], det.boxes[1:])[0, 0] == 0
    assert (np.diff(det.scores) <= 0).all()  # sorted by score
    for box, landmarks in zip(det.boxes, det.landmarks, strict=True):
        _assert_plausible_face(box, landmarks)


def test_partial_face_box_leaves_the_image(detector: MTCNNDetector) -> None:
    image = read_image("obama_partial_face.jpg")
    (det,) = detector.detect([image])
    det = det.select(det.scores > 0.9)  # PrepareConfig.min_score drops MTCNN's weak extras
    assert len(det) == 1
    assert det.boxes[0, 0] < 0  # the face is cut by the left border
    assert det.landmarks[0, 0, 0] < det.landmarks[0, 1, 0]


def test_coordinates_do_not_depend_on_detect_size() -> None:
    image = read_image("obama.jpg")
    small = MTCNNDetector(detect_size=320, min_face_size=100).detect([image])[0]
    full = MTCNNDetector(detect_size=2000, min_face_size=100).detect([image])[0]  # no downscaling
    assert len(small) == len(full) == 1
    assert box_iou(small.boxes, full.boxes)[0, 0] > 0.8
    eye_distance = np.linalg.norm(full.landmarks[0, 1] - full.landmarks[0, 0])
    assert np.abs(small.landmarks - full.landmarks).max() < 0.15 * eye_distance


def test_batch_matches_single_images_and_handles_no_face(detector: MTCNNDetector) -> None:
    face = read_image("two_people.jpg")
    blank = np.full_like(face, 127)
    other_size = read_image("obama.jpg")
    batch = detector.detect([face, blank, other_size])
    assert [len(d) for d in batch] == [2, 0, 1]
    single = detector.detect([face])[0]
    np.testing.assert_allclose(batch[0].boxes, single.boxes, atol=1.0)
    empty = batch[1]
    assert empty.boxes.shape == (0, 4) and empty.landmarks.shape == (0, 5, 2) and empty.scores.shape == (0,)
    assert detector.detect([]) == []
    assert len(detector.detect([np.zeros((8, 8, 3), np.uint8)])[0]) == 0  # too small to hold a face


def test_rejects_non_rgb_uint8(detector: MTCNNDetector) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect([np.zeros((64, 64), np.uint8)])
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect([np.zeros((64, 64, 3), np.float32)])


def test_registry_factory_and_lazy_loading() -> None:
    assert "mtcnn" in DETECTORS.names()
    det = create_detector("mtcnn", detect_size=320)
    assert isinstance(det, MTCNNDetector) and isinstance(det, FaceDetector)
    assert det.detect_size == 320 and det.name == "mtcnn"
    assert det._mtcnn is None  # weights load on first use only
    with pytest.raises(KeyError, match="unknown face detector"):
        create_detector("nope")
    from_config = detector_from_config(PrepareConfig(detect_size=480, min_face_size=50))
    assert from_config.detect_size == 480 and from_config.min_face_size == pytest.approx(40)


def test_detections_helpers() -> None:
    det = Detections(
        boxes=np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32),
        landmarks=np.ones((2, 5, 2), np.float32),
        scores=np.array([0.99, 0.5], np.float32),
    )
    kept = det.select(det.scores > 0.9)
    assert len(kept) == 1 and kept.boxes[0, 2] == 10
    assert det.scaled(2.0).boxes[1, 3] == 40 and det.scaled(2.0).landmarks[0, 0, 0] == 2
    assert len(Detections.empty()) == 0
