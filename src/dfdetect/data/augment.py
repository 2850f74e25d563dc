"""Train-time augmentations of a :class:`~dfdetect.data.windows.Window` (video and audio).

Every video augmentation draws its parameters once per window and applies them to all frames, so
the window stays temporally consistent (flicker between frames would itself look like a fake).
Geometric ones (crop, flip) move the landmarks too, so mouth crops cut afterwards stay on the mouth.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfdetect.config import AugmentConfig
from dfdetect.constants import SAMPLE_RATE
from dfdetect.data.windows import FLIP_ORDER, Window


def augment_window(
    window: Window, cfg: AugmentConfig, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> Window:
    """Apply each augmentation of ``cfg`` with its probability; returns a new window.

    Order: random resized crop, flip, colour jitter, blur, down-and-up scaling, JPEG, H.264 (video);
    shift, gain, noise (audio, only when the window has audio). ``mouths`` are left as they were:
    recompute them from the new frames and landmarks (``windows.window_mouths``) when they are used.
    """
    frames, landmarks = window.frames, window.landmarks
    if rng.random() < cfg.p_crop:
        frames, landmarks = random_resized_crop(frames, landmarks, cfg.crop_scale, rng)
    if rng.random() < cfg.p_flip:
        frames, landmarks = hflip(frames, landmarks)
    if rng.random() < cfg.p_color:
        frames = color_jitter(frames, rng, cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
    if rng.random() < cfg.p_blur:
        frames = gaussian_blur(frames, float(rng.uniform(*cfg.blur_sigma)))
    if rng.random() < cfg.p_resize:
        frames = down_up(frames, float(rng.uniform(*cfg.resize_scale)))
    if rng.random() < cfg.p_jpeg:
        frames = jpeg(frames, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    if rng.random() < cfg.p_h264:
        frames = h264(frames, int(rng.integers(cfg.h264_crf[0], cfg.h264_crf[1] + 1)))
    window = window.replace(frames=frames, landmarks=landmarks)
    if window.audio_mask:
        window = window.replace(audio=augment_audio(window.audio, cfg, rng, sample_rate))
    return window


def augment_audio(
    audio: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Time shift (zero filled), gain and additive white noise at a drawn SNR, each with its probability."""
    audio = np.asarray(audio, dtype=np.float32)
    if rng.random() < cfg.p_audio_shift:
        audio = time_shift(audio, round(rng.uniform(-1, 1) * cfg.audio_shift_seconds * sample_rate))
    if rng.random() < cfg.p_audio_gain:
        audio = audio * np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
    if rng.random() < cfg.p_audio_noise:
        audio = add_noise(audio, float(rng.uniform(*cfg.snr_db)), rng)
    return audio.astype(np.float32)


def random_resized_crop(
    frames: np.ndarray, landmarks: np.ndarray, scale: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a square of ``scale`` x the area at a random place (same for all frames), resize back."""
    t, h, w = frames.shape[:3]
    s = float(np.sqrt(rng.uniform(*scale)))
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = np.stack(
        [cv2.resize(f[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR) for f in frames]
    )  # noqa: E501
    lm = (landmarks - np.array([x0, y0], np.float32)) * np.array([w / cw, h / ch], np.float32)
    return out, lm.astype(np.float32)


def hflip(frames: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror frames ``[T, H, W, 3]``; landmarks follow (x -> W - x, left and right swapped)."""
    w = frames.shape[2]
    lm = landmarks[:, list(FLIP_ORDER)].copy()
    lm[..., 0] = w - lm[..., 0]
    return np.ascontiguousarray(frames[:, :, ::-1]), lm


def color_jitter(
    frames: np.ndarray,
    rng: np.random.Generator,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> np.ndarray:
    """Brightness, contrast, saturation factors in ``[1 - x, 1 + x]`` and a hue shift in ``[-hue, hue]``
    turns (torchvision's ColorJitter ranges), one draw for the whole window."""
    b, c, s = (float(rng.uniform(max(0.0, 1 - x), 1 + x)) for x in (brightness, contrast, saturation))
    dh = round(float(rng.uniform(-hue, hue)) * 180)  # OpenCV hue units (0..180)
    flat = np.ascontiguousarray(frames).reshape(-1, frames.shape[2], 3)  # [T*H, W, 3]: one call per op
    img = cv2.LUT(flat, _lut(_LEVELS * b))
    mean = float(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean())  # of the window: same change per frame
    img = cv2.LUT(img, _lut((_LEVELS - mean) * c + mean))
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    img = cv2.addWeighted(img, s, grey, 1 - s, 0)
    if dh:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hue_lut = np.mod(_LEVELS + dh, 180).astype(np.uint8)
        table = np.stack([hue_lut, _LEVELS.astype(np.uint8), _LEVELS.astype(np.uint8)], -1).reshape(256, 1, 3)
        img = cv2.cvtColor(cv2.LUT(hsv, table), cv2.COLOR_HSV2RGB)
    return img.reshape(frames.shape)


_LEVELS = np.arange(256, dtype=np.float32)


def _lut(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of every frame with the same ``sigma`` (pixels)."""
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode every frame as JPEG at ``quality`` (1..100) and decode it again."""
    out = []
    for f in frames:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise RuntimeError(f"JPEG encoding failed at quality {quality}")
        out.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


def down_up(frames: np.ndarray, scale: float) -> np.ndarray:
    """Downscale every frame by ``scale`` (< 1) and back to its size: the blur of a low-resolution
    upload, so that sharpness carries no label."""
    t, h, w = frames.shape[:3]
    small = (max(8, round(w * scale)), max(8, round(h * scale)))
    return np.stack([cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (w, h)) for f in frames])


def h264(frames: np.ndarray, crf: int) -> np.ndarray:
    """Encode the frames ``[T, H, W, 3]`` as one H.264 stream at ``crf`` (libx264 in PyAV) and decode them:
    the block and motion artefacts of a re-uploaded video, so that a codec's traces carry no label."""
    import io

    import av

    t, h, w = frames.shape[:3]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
        for f in frames:
            f = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as inp:
        decoded = [fr.to_ndarray(format="rgb24")[:h, :w] for fr in inp.decode(video=0)]
    return np.stack(decoded) if len(decoded) == t else frames


def time_shift(audio: np.ndarray, shift: int) -> np.ndarray:
    """``out[i] = audio[i - shift]``, zeros where that falls outside."""
    out = np.zeros_like(audio)
    n = len(audio)
    if abs(shift) >= n:
        return out
    if shift >= 0:
        out[shift:] = audio[: n - shift]
    else:
        out[:shift] = audio[-shift:]
    return out


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise so that signal power / noise power = ``snr_db`` decibels."""
    power = float(np.mean(np.square(audio, dtype=np.float64)))
    if power <= 0:
        return audio
    noise = rng.standard_normal(audio.shape)
    noise *= np.sqrt(power / 10 ** (snr_db / 10) / np.mean(noise**2))
    return (audio + noise).astype(np.float32)
