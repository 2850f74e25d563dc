"""Square crops (centred, padded at borders, anti-aliased), alignment, mouth crops, blur score."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dfdetect.faces.crop import FACE_TEMPLATE, blur_score, crop_face, mouth_box, mouth_crop, square_box
from dfdetect.faces.detect import MTCNNDetector
from tests.faces.conftest import read_image


def _dot_image(h: int = 300, w: int = 400, at: tuple[int, int] = (200, 150)) -> np.ndarray:
    image = np.full((h, w, 3), 90, np.uint8)
    cv2.circle(image, at, 4, (255, 0, 0), -1)  # red dot at (x, y)
    return image


def test_square_box_is_centred_with_margin() -> None:
    sq = square_box(np.array([10, 20, 50, 100]), margin=1.5)
    assert sq[2] - sq[0] == pytest.approx(120) and sq[3] - sq[1] == pytest.approx(120)
    assert (sq[0] + sq[2]) / 2 == pytest.approx(30) and (sq[1] + sq[3]) / 2 == pytest.approx(60)


def test_crop_maps_points_into_the_crop() -> None:
    image = _dot_image(at=(210, 140))
    box = np.array([170, 100, 250, 180], np.float32) + 0.5  # 80 px box centred on the dot (pixel centre)
    landmarks = np.array([[190, 120], [230, 120], [210.5, 140.5], [195, 160], [225, 160]], np.float32)
    crop, crop_box, crop_landmarks = crop_face(image, box, size=224, margin=1.3, landmarks=landmarks)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(crop_box, square_box(box, 1.3), atol=1e-4)
    np.testing.assert_allclose(crop_landmarks[2], [112, 112], atol=0.01)
    x, y = np.round(crop_landmarks[2]).astype(int)
    assert crop[y, x, 0] > 200 and crop[y, x, 1] < 60  # the red dot is where the landmark says


@pytest.mark.parametrize("corner", [(0, 0), (1, 1)])
def test_crops_at_image_borders_stay_square_and_centred(corner: tuple[int, int]) -> None:
    h, w = 300, 400
    cx, cy = (5, 5) if corner == (0, 0) else (w - 6, h - 6)
    image = _dot_image(h, w, at=(cx, cy))
    box = np.array([cx - 40, cy - 50, cx + 40, cy + 50], np.float32) + 0.5
    crop, crop_box, _ = crop_face(image, box, size=128, margin=1.3)
    assert crop.shape == (128, 128, 3)
    assert crop_box[2] - crop_box[0] == pytest.approx(crop_box[3] - crop_box[1])
    assert crop[64, 64, 0] > 200  # the face centre stays at the crop centre
    outside = crop[:20, :20] if corner == (0, 0) else crop[-20:, -20:]
    assert outside.max() == 0  # black padding where the square leaves the image


def test_crop_outside_the_image_is_black() -> None:
    crop, _, _ = crop_face(_dot_image(), np.array([1000, 1000, 1100, 1100]), size=32)
    assert crop.shape == (32, 32, 3) and crop.max() == 0


def test_shrinking_is_anti_aliased() -> None:
    checker = ((np.indices((1200, 1200)).sum(0) % 2) * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    crop, _, _ = crop_face(image, np.array([100, 100, 1000, 1000]), size=64, margin=1.0)
    # area resampling turns a 1-pixel checkerboard into flat grey; plain bilinear would alias
    assert abs(float(crop.mean()) - 127.5) < 3 and crop.std() < 3


@pytest.fixture(scope="module")
def obama(detector: MTCNNDetector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = read_image("obama.jpg")
    det = detector.detect([image])[0]
    return image, det.boxes[0], det.landmarks[0]


def _eye_tilt(landmarks: np.ndarray) -> float:
    d = landmarks[1] - landmarks[0]
    return float(np.degrees(np.arctan2(d[1], d[0])))


def test_alignment_makes_eyes_level(obama: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    image, box, landmarks = obama
    h, w = image.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)  # tilt the head by 25 degrees
    tilted = cv2.warpAffine(image, rotation, (w, h))
    tilted_lm = landmarks @ rotation[:, :2].T + rotation[:, 2]
    tilted_box = np.concatenate([tilted_lm.min(0) - 60, tilted_lm.max(0) + 60])
    _, _, plain_lm = crop_face(tilted, tilted_box, size=224, landmarks=tilted_lm, align=False)
    crop, crop_box, aligned_lm = crop_face(tilted, tilted_box, size=224, landmarks=tilted_lm, align=True)
    assert abs(_eye_tilt(plain_lm)) > 20
    assert abs(_eye_tilt(aligned_lm)) < 1.0
    assert crop.shape == (224, 224, 3) and crop_box[2] - crop_box[0] == pytest.approx(
        crop_box[3] - crop_box[1]
    )
    # framed like the template: the eye distance matches the template's at margin 1.3
    expected = 224 * (FACE_TEMPLATE[1, 0] - FACE_TEMPLATE[0, 0]) / 1.3
    assert np.linalg.norm(aligned_lm[1] - aligned_lm[0]) == pytest.approx(expected, rel=0.1)
    # the crop content follows the landmarks: aligned crop of the upright image ~ of the tilted one
    upright, _, upright_lm = crop_face(image, box, size=224, landmarks=landmarks, align=True)
    assert np.abs(upright_lm - aligned_lm).max() < 3.0
    assert np.abs(upright.astype(int) - crop.astype(int))[40:184, 40:184].mean() < 12


def test_align_without_landmarks_falls_back_to_the_box() -> None:
    image = _dot_image()
    box = np.array([150, 100, 250, 200], np.float32)
    plain = crop_face(image, box, size=64)
    fallback = crop_face(image, box, size=64, align=True)
    np.testing.assert_array_equal(plain[0], fallback[0])
    assert np.isnan(fallback[2]).all()


def test_mouth_crop_is_around_the_mouth(obama: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    image, box, landmarks = obama
    crop, _, lm = crop_face(image, box, size=224, landmarks=landmarks)
    mouth = mouth_crop(crop, lm, size=64)
    assert mouth.shape == (64, 64, 3) and mouth.dtype == np.uint8
    mb = mouth_box(lm)
    assert mb[2] - mb[0] == pytest.approx(mb[3] - mb[1])
    assert mb[1] >= lm[2, 1] - 1e-3  # not above the nose tip
    assert mb[0] < lm[3, 0] < lm[4, 0] < mb[2] and mb[1] < lm[3, 1] < mb[3]
    # no landmarks: a fixed lower-centre region, still the right size
    assert mouth_crop(crop, np.full((5, 2), np.nan), size=48).shape == (48, 48, 3)


def test_blur_score_prefers_sharp_crops(obama: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    image, box, landmarks = obama
    crop, _, _ = crop_face(image, box, size=224)
    blurred = cv2.GaussianBlur(crop, (0, 0), 3)
    assert blur_score(crop) > 3 * blur_score(blurred)
    assert blur_score(np.zeros((32, 32, 3), np.uint8)) == 0
