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


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PreprocessConfig(StrictModel):
    """How cached clips become model inputs; saved in every checkpoint so scanning matches training."""

    fps: float = Field(5.0, gt=0, description="frame rate given to the model (<= the cache's fps)")
    size: int = Field(224, ge=32, description="side of the face crop given to the model")
    margin: float = Field(1.3, ge=1.0, description="crop margin the cache was made with (recorded)")
    clip_frames: int = Field(16, ge=1, description="frames per model window (T)")
    segment_seconds: float = Field(1.0, gt=0, description="length of one segment score")
    mouth_size: int = Field(64, ge=16, description="side of the mouth crop for lip-sync heads")
    sample_rate: int = 16000
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def window_seconds(self) -> float:
        return self.clip_frames / self.fps

    @property
    def audio_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def num_segments(self) -> int:
        return max(1, round(self.window_seconds / self.segment_seconds))


class AugmentConfig(StrictModel):
    """Train-time augmentations (each applied with its probability ``p_*``; 0 disables)."""

    p_color: float = Field(0.5, ge=0, le=1)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    p_crop: float = Field(0.5, ge=0, le=1)
    crop_scale: tuple[float, float] = (0.85, 1.0)
    p_flip: float = Field(0.5, ge=0, le=1)
    p_blur: float = Field(0.1, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    p_jpeg: float = Field(0.3, ge=0, le=1)
    jpeg_quality: tuple[int, int] = (40, 95)
    p_audio_shift: float = Field(0.3, ge=0, le=1)
    audio_shift_seconds: float = 0.04  # small shifts that keep audio-visual sync plausible
    p_audio_noise: float = Field(0.3, ge=0, le=1)
    snr_db: tuple[float, float] = (10.0, 40.0)
    p_audio_gain: float = Field(0.3, ge=0, le=1)
    gain_db: tuple[float, float] = (-6.0, 6.0)


class PseudoFakeConfig(StrictModel):
    """On-the-fly pseudo-fakes made from real clips (SBI, audio-visual desync, audio swap)."""

    p_fake: float = Field(0.5, ge=0, le=1, description="share of real samples turned into pseudo-fakes")
    only_real: bool = Field(False, description="drop the dataset's own fakes; learn from reals only")
    sbi_weight: float = Field(1.0, ge=0, description="relative frequency of self-blended images")
    desync_weight: float = Field(0.5, ge=0, description="relative frequency of audio shifted out of sync")
    swap_weight: float = Field(0.5, ge=0, description="relative frequency of audio from another clip")
    min_desync_seconds: float = Field(0.4, gt=0, description="smallest audio shift of a desync fake")
    max_desync_seconds: float = Field(2.0, gt=0)
