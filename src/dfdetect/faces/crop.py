"""Square face crops with margin, optional 5-point alignment, mouth crops and a sharpness score.

Coordinates are continuous pixels (pixel ``i`` covers ``[i, i + 1)``), the convention of MTCNN's
boxes. Crops are always square and centred on the face: regions outside the image are black.
Shrinking is anti-aliased (area resampling by whole factors, then bilinear below 2x), so crops of
big faces in 1080p frames do not alias.
"""

from __future__ import annotations

import cv2
import numpy as np

# Mean MTCNN landmarks of frontal faces in the unit square around the face box (margin 1.0),
# measured on the real media (eyes level, symmetric): the target of the 5-point alignment, so that
# aligned crops are framed like unaligned ones.
FACE_TEMPLATE = np.array(
    [[0.330, 0.400], [0.670, 0.400], [0.500, 0.575], [0.355, 0.765], [0.645, 0.765]], np.float32
)  # [5, 2] left eye, right eye, nose, left mouth corner, right mouth corner


def square_box(box: np.ndarray, margin: float = 1.3) -> np.ndarray:
    """The square box of side ``margin x max(w, h)`` centred on ``box``.

    Args:
        box: ``[4]`` x1, y1, x2, y2.
        margin: side of the square relative to the longest side of the box.

    Returns:
        ``[4]`` float32 x1, y1, x2, y2 of the square (may extend beyond the image).
    """
    box = np.asarray(box, dtype=np.float64)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1], 1.0) * margin / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """2x3 affine ``matrix`` applied to points ``[..., 2]``."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Cut a ``[size, size]`` patch with the affine ``matrix`` (image -> patch, continuous coords).

    When the patch shrinks its source region 2x or more, that region is first shrunk by the whole
    factor ``k = floor(1 / scale)`` with area resampling (anti-aliasing; OpenCV's fast path for
    integer factors), then warped with bilinear interpolation, which only shrinks by less than 2x.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale <= 0.5:
        region = _source_region(image.shape[:2], matrix, size, int(1.0 / scale))
        if region is None:  # the patch lies entirely outside the image
            return np.zeros((size, size, 3), np.uint8)
        x0, y0, x1, y1 = region
        k = int(1.0 / scale)
        image = cv2.resize(
            image[y0:y1, x0:x1], ((x1 - x0) // k, (y1 - y0) // k), interpolation=cv2.INTER_AREA
        )
        # continuous coords: small = (p - (x0, y0)) / k  =>  p = k * small + (x0, y0)
        matrix = matrix @ np.array([[k, 0, x0], [0, k, y0], [0, 0, 1]], np.float64)
    # warpAffine maps pixel centres (integers): conjugate by the half-pixel shift.
    m = matrix.copy()
    m[:, 2] = matrix[:, 2] + 0.5 * matrix[:, :2].sum(1) - 0.5
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def _source_region(
    shape: tuple[int, int], matrix: np.ndarray, size: int, k: int
) -> tuple[int, int, int, int] | None:
    """Pixel bounds ``(x0, y0, x1, y1)`` in the image of the patch's source, sides multiples of ``k``.

    Returns None when the patch lies entirely outside the image.
    """
    inverse = cv2.invertAffineTransform(matrix)
    corners = _apply(inverse, np.array([[0, 0], [size, 0], [0, size], [size, size]]))  # [4, 2]
    h, w = shape
    lo = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    hi = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [w, h])
    if (hi <= lo).any() or ((hi - lo) < k).any():
        return None
    bounds = []
    for a, b, limit in ((lo[0], hi[0], w), (lo[1], hi[1], h)):
        b = min(a + -(-(b - a) // k) * k, limit)  # grow to a multiple of k (not past the image)
        a = max(0, b - -(-(b - a) // k) * k)  # at the image edge: grow the other way
        b = a + (b - a) // k * k  # whole image smaller than that: trim
        bounds.append((a, b))
    (x0, x1), (y0, y1) = bounds
    return x0, y0, x1, y1


def _box_matrix(square: np.ndarray, size: int) -> np.ndarray:
    """Affine matrix mapping the square box onto ``[0, size]^2``."""
    s = size / float(square[2] - square[0])
    return np.array([[s, 0, -s * square[0]], [0, s, -s * square[1]]], np.float64)


def alignment_matrix(landmarks: np.ndarray, size: int, margin: float = 1.3) -> np.ndarray | None:
    """Similarity transform (rotation, uniform scale, shift) from 5 face landmarks to the template.

    The template (:data:`FACE_TEMPLATE`) is scaled to a ``size`` crop with ``margin``, so aligned
    crops are framed like unaligned ones but with the eyes level.

    Returns:
        The 2x3 matrix (image -> crop), or None when the landmarks are degenerate.
    """
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    if not np.isfinite(landmarks).all():
        return None
    target = (size * (0.5 + (FACE_TEMPLATE - 0.5) / margin)).astype(np.float32)  # [5, 2]
    # A huge RANSAC threshold keeps every point an inlier: a least-squares (refined) similarity.
    matrix, _ = cv2.estimateAffinePartial2D(
        landmarks, target, method=cv2.RANSAC, ransacReprojThreshold=1e6, refineIters=20
    )
    if matrix is None or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:, :2])) < 1e-8:
        return None
    return matrix.astype(np.float64)


def crop_face(
    image: np.ndarray,
    box: np.ndarray,
    size: int = 224,
    margin: float = 1.3,
    landmarks: np.ndarray | None = None,
    align: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A square face crop, padded with black at the image borders.

    Args:
        image: RGB uint8 frame ``[H, W, 3]``.
        box: face box ``[4]`` x1, y1, x2, y2 in frame pixels.
        size: side of the returned crop.
        margin: side of the cropped square relative to the longest side of the box.
        landmarks: ``[5, 2]`` face landmarks in frame pixels (needed for ``align``).
        align: rotate and scale by the 5 landmarks so the eyes are level (falls back to the box
            crop when the landmarks are missing or degenerate).

    Returns:
        ``(crop [size, size, 3] uint8, crop_box [4] float32, crop_landmarks [5, 2] float32)`` where
        ``crop_box`` is the axis-aligned square of the frame the crop shows (rotation aside) and
        ``crop_landmarks`` are the landmarks in crop pixels (NaN when no landmarks were given).
    """
    matrix = alignment_matrix(landmarks, size, margin) if align and landmarks is not None else None
    if matrix is None:
        square = square_box(box, margin)
        matrix = _box_matrix(square, size)
    else:
        inverse = cv2.invertAffineTransform(matrix)
        centre = _apply(inverse, np.array([size / 2, size / 2]))
        half = size / np.sqrt(abs(np.linalg.det(matrix[:, :2]))) / 2
        square = np.array(
            [centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half], np.float32
        )
    crop = _warp(image, matrix, size)
    if landmarks is None:
        crop_landmarks = np.full((5, 2), np.nan, np.float32)
    else:
        crop_landmarks = _apply(matrix, np.asarray(landmarks).reshape(5, 2)).astype(np.float32)
    return crop, square.astype(np.float32), crop_landmarks


def mouth_box(crop_landmarks: np.ndarray) -> np.ndarray:
    """Square box ``[4]`` around the mouth: 1.8 x the mouth width, its top not above the nose tip."""
    lm = np.asarray(crop_landmarks, dtype=np.float64).reshape(5, 2)
    left, right, nose = lm[3], lm[4], lm[2]
    centre = (left + right) / 2
    side = max(1.8 * float(np.linalg.norm(right - left)), 1.0)
    top = max(centre[1] - side / 2, nose[1])
    return np.array([centre[0] - side / 2, top, centre[0] + side / 2, top + side], np.float32)


def mouth_crop(crop: np.ndarray, crop_landmarks: np.ndarray, size: int = 64) -> np.ndarray:
    """The mouth region of a face crop, for lip-sync models.

    Args:
        crop: face crop ``[S, S, 3]`` uint8.
        crop_landmarks: ``[5, 2]`` landmarks in crop pixels (from :func:`crop_face`).
        size: side of the mouth crop.

    Returns:
        ``[size, size, 3]`` uint8 (the lower-centre of the crop when landmarks are missing).
    """
    if not np.isfinite(np.asarray(crop_landmarks, dtype=np.float64)).all():
        s = crop.shape[0]
        box = np.array([0.3 * s, 0.55 * s, 0.7 * s, 0.95 * s], np.float32)
    else:
        box = mouth_box(crop_landmarks)
    return _warp(crop, _box_matrix(box, size), size)


def blur_score(crop: np.ndarray) -> float:
    """Sharpness of a crop: variance of its Laplacian on grey levels (higher = sharper)."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())
