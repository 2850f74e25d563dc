"""YuNet (no torch) on real photos and clips: faces found, MTCNN-ordered landmarks inside the boxes,
the same faces as MTCNN, the detector protocol and the score scale."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dfdetect.config import PrepareConfig
from dfdetect.faces.detect import (
    DETECTORS,
    FaceDetector,
    MTCNNDetector,
    YuNetDetector,
    create_detector,
    detector_from_config,
    yunet_scores,
)
from dfdetect.faces.extract import accepts_min_face_size, extract_faces
from dfdetect.faces.track import box_iou
from tests.faces.conftest import read_frames, read_image
from tests.faces.test_detect import _assert_plausible_face

PHOTOS = [
    "alex-lacamoire.png",
    "biden.jpg",
    "img1.jpg",
    "john1.jpeg",
    "obama-480p.jpg",
    "obama.jpg",
    "two_people.jpg",
]


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector(detect_size=640, min_face_size=60)


def test_photos_same_faces_as_mtcnn(yunet: YuNetDetector, detector: MTCNNDetector) -> None:
    for name in PHOTOS:
        image = read_image(name)
        (ours,) = yunet.detect([image])
        (ref,) = detector.detect([image])
        ours, ref = ours.select(ours.scores >= 0.9), ref.select(ref.scores >= 0.9)  # PrepareConfig.min_score
        assert len(ours) == len(ref) >= 1, name
        assert (box_iou(ref.boxes, ours.boxes).max(1) > 0.7).all(), name
        for box, landmarks in zip(ours.boxes, ours.landmarks, strict=True):
            _assert_plausible_face(box, landmarks)  # MTCNN's landmark order, inside the box
        eyes = np.linalg.norm(ref.landmarks[:, 1] - ref.landmarks[:, 0], axis=1)  # [N]
        order = box_iou(ref.boxes, ours.boxes).argmax(1)
        err = np.linalg.norm(ours.landmarks[order] - ref.landmarks, axis=2).max(1)  # [N]
        assert (err < 0.35 * eyes).all(), name


def test_partial_face_and_coordinates_of_the_input(yunet: YuNetDetector) -> None:
    image = read_image("obama_partial_face.jpg")  # 491 x 1137: downscaled to 640 for detection
    (det,) = yunet.detect([image])
    assert len(det.select(det.scores >= 0.9)) == 1
    box = det.boxes[0]
    assert box[0] < 5 and 100 < box[2] - box[0] < 450 and box[3] <= image.shape[0]
    small = YuNetDetector(detect_size=320, min_face_size=100).detect([read_image("obama.jpg")])[0]
    full = YuNetDetector(detect_size=2000, min_face_size=100).detect([read_image("obama.jpg")])[0]
    assert len(small) == len(full) == 1 and box_iou(small.boxes, full.boxes)[0, 0] > 0.8


def test_real_clip_frames(yunet: YuNetDetector, detector: MTCNNDetector) -> None:
    frames = [f.image for f in read_frames("real/ffpp_orig_519.mp4", fps=1.0, max_frames=4)]
    ours, ref = yunet.detect(frames), detector.detect(frames)
    for o, r in zip(ours, ref, strict=True):
        r = r.select(r.scores >= 0.9)
        assert len(o.select(o.scores >= 0.9)) >= 1
        assert (box_iou(r.boxes, o.boxes).max(1) > 0.5).all()
        for box, landmarks in zip(o.boxes[:1], o.landmarks[:1], strict=True):
            _assert_plausible_face(box, landmarks)


def test_tracks_of_a_real_clip_with_roi_search() -> None:
    frames = read_frames("real/videoretalking_face_2.mp4", fps=5.0, max_frames=20)
    config = PrepareConfig(detector="yunet", size=112, detect_every=5)
    detector = detector_from_config(config)
    assert isinstance(detector, YuNetDetector) and accepts_min_face_size(detector)
    faces = extract_faces(frames, config=config)
    assert len(faces) == 1 and faces[0].crops.shape == (20, 112, 112, 3)
    assert faces[0].track.detected.sum() >= 4


def test_no_face_small_images_and_bad_input(yunet: YuNetDetector) -> None:
    blank = np.full((240, 320, 3), 127, np.uint8)
    results = yunet.detect([blank, np.zeros((8, 8, 3), np.uint8)])
    assert [len(r) for r in results] == [0, 0] and results[0].boxes.shape == (0, 4)
    assert yunet.detect([]) == []
    with pytest.raises(ValueError, match="RGB uint8"):
        yunet.detect([np.zeros((64, 64), np.uint8)])
    with pytest.raises(ValueError, match="detect_size"):
        YuNetDetector(detect_size=16)


def test_registry_and_score_scale() -> None:
    assert {"yunet", "mtcnn"} <= set(DETECTORS.names())
    det = create_detector("yunet", detect_size=320, device="cpu")
    assert isinstance(det, FaceDetector) and det.name == "yunet" and det._net is None  # loads on first use
    scores = yunet_scores(np.array([0.0, 0.35, 0.7, 0.85, 1.0]), confident=0.7)
    np.testing.assert_allclose(scores, [0.0, 0.45, 0.9, 0.95, 1.0], atol=1e-6)


def test_yunet_needs_no_torch() -> None:
    code = (
        "import sys, numpy as np; from dfdetect.faces.detect import YuNetDetector; "
        "import cv2; im = cv2.cvtColor(cv2.imread(sys.argv[1]), cv2.COLOR_BGR2RGB); "
        "assert len(YuNetDetector().detect([im])[0]) == 2; assert 'torch' not in sys.modules"
    )
    from tests.conftest import media

    subprocess.run([sys.executable, "-c", code, str(media("images/two_people.jpg"))], check=True)
