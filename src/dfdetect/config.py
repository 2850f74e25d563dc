"""Pydantic configuration models, YAML loading with dotted overrides, and the resolved-config dump.

Every config is validated (unknown keys are errors, so a typo never passes silently).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PrepareConfig(StrictModel):
    """How videos are turned into cache entries (stored in every entry's ``params``)."""

    fps: float = Field(5.0, gt=0, description="frames sampled per second of video")
    size: int = Field(224, ge=32, description="side of the square face crop, pixels")
    margin: float = Field(1.3, ge=1.0, description="crop side = margin x face box side")
    align: bool = Field(False, description="rotate crops so the eyes are level (5-point alignment)")
    max_duration: float | None = Field(60.0, gt=0, description="seconds read from each video (None = all)")
    max_frames: int | None = Field(None, gt=0, description="sampled frames read from each video")
    detector: str = "mtcnn"
    detect_every: int = Field(3, ge=1, description="run the detector on every n-th sampled frame, track between")
    detect_size: int = Field(640, ge=64, description="longest side of the frame given to the detector")
    max_faces: int = Field(3, ge=1, description="face tracks kept per video, ranked by size x duration")
    min_face_size: int = Field(40, ge=8, description="smallest face kept, pixels of the original frame")
    min_score: float = Field(0.9, ge=0, le=1, description="lowest detection confidence kept")
    min_blur: float = Field(0.0, ge=0, description="lowest variance-of-Laplacian of a kept track (0 = off)")
    min_track_frames: int = Field(3, ge=1, description="shortest track kept, sampled frames")
    sample_rate: int = Field(16000, description="audio sample rate (mono)")
