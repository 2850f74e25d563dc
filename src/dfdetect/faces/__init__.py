"""dfdetect.faces: face detection (YuNet on OpenCV, MTCNN on torch), IoU tracking, square crops and
streaming extraction.

Importing this package does not import torch or load any weights (detectors load on first use).
"""

from dfdetect.faces.crop import blur_score, crop_face, mouth_crop, square_box
from dfdetect.faces.detect import (
    DETECTORS,
    Detections,
    FaceDetector,
    MTCNNDetector,
    YuNetDetector,
    create_detector,
    detector_from_config,
)
from dfdetect.faces.extract import FaceExtractor, extract_faces
from dfdetect.faces.track import IouTracker, box_iou

__all__ = [
    "DETECTORS",
    "Detections",
    "FaceDetector",
    "FaceExtractor",
    "IouTracker",
    "MTCNNDetector",
    "YuNetDetector",
    "blur_score",
    "box_iou",
    "create_detector",
    "crop_face",
    "detector_from_config",
    "extract_faces",
    "mouth_crop",
    "square_box",
]
