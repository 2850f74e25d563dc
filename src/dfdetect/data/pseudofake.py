"""Pseudo-fakes made on the fly from real windows: self-blended images and audio-visual mismatches.

* **SBI** (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022; transforms
  and ratios follow the official code, mapooon/SelfBlendedImages ``src/utils/{sbi,blend}.py``): a
  copy of the face is colour- and frequency-transformed, slightly shifted/scaled, and blended back
  into the original through a deformed, blurred face mask. One set of parameters is drawn per window
  and used for every frame, so the result is a temporally consistent *video* pseudo-fake. The mask
  is a face hull built from the 5 landmarks (brows to chin), since the cache keeps no 68-point mesh.
* **Partial fakes** (``partial_p``): only a random contiguous span of the window is self-blended (its
  frames) or desynchronised (its audio, cross-faded in and out), and the span (seconds) goes with the
  labels, so segment labels say *where* the window was faked.
* **AV desync**: the audio is shifted by at least ``min_desync_seconds`` so lips and voice disagree.
* **AV swap**: the audio comes from another real clip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from dfdetect.config import PseudoFakeConfig
from dfdetect.constants import SAMPLE_RATE
from dfdetect.data.windows import Window, frame_edges

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # as in the paper's dynamic_blend
# Face outline in an affine face frame: x in units of the eye vector (left eye -> right eye) from the
# eyes' midpoint, y in units of the eyes-midpoint -> mouth-midpoint vector. Eyes at 0, mouth at 1,
# chin at 1.68, eyebrows at about -0.3 .. -0.45: the region the paper's 68-point convex hull covers.
FACE_OUTLINE = np.array(
    [
        [-1.15, -0.3], [-0.6, -0.42], [0.0, -0.45], [0.6, -0.42], [1.15, -0.3], [1.38, 0.1], [1.32, 0.7],
        [1.05, 1.3], [0.55, 1.6], [0.0, 1.68], [-0.55, 1.6], [-1.05, 1.3], [-1.32, 0.7], [-1.38, 0.1],
    ],
    np.float32,
)  # fmt: skip
HULL_VARIANTS = {"face": (-9.0, 1.0), "lower": (0.25, 1.0), "inner": (-0.35, 0.8)}  # top clip (y), scale


@dataclass(frozen=True)
class SBIParams:
    """One draw of the self-blending transforms, shared by every frame of a window."""

    transform_target: bool  # the paper transforms either the source copy or the target (p = 0.5)
    rgb_shift: tuple[float, float, float]  # added to R, G, B
    hsv_shift: tuple[float, float, float]  # hue (OpenCV units, 0..180), saturation, value (0..255)
    brightness: float  # fraction of 255 added
    contrast: float  # relative contrast change around the mean
    downscale: int  # 0 = sharpen instead; else the downscale factor (2 or 4)
    sharpen: tuple[float, float]  # alpha, lightness of the sharpen kernel
    affine: tuple[float, float, float]  # translate x, y (fractions of the side), scale
    hull: str  # key of HULL_VARIANTS
    hull_scale: tuple[float, float]  # random stretch of the face hull (x, y)
    elastic_seed: int  # seeds the elastic displacement field of the mask
    blur_size: tuple[int, int]  # side of the mask while it is blurred (the paper: 192..256)
    kernels: tuple[int, int]  # odd Gaussian kernel sizes of the two blurs
    sigma: float  # sigma of the second (softening) blur
    ratio: float  # blend ratio, from BLEND_RATIOS


def sample_sbi_params(rng: np.random.Generator) -> SBIParams:
    """Draw SBI parameters with the ranges of the official code (HSV made effective, see below)."""
    rgb = tuple(rng.uniform(-20, 20, 3)) if rng.random() < 0.3 else (0.0, 0.0, 0.0)
    # The official HueSaturationValue limits (+-0.3 on uint8) are a no-op; small real shifts instead.
    hsv = (float(rng.uniform(-3, 3)), float(rng.uniform(-15, 15)), float(rng.uniform(-15, 15)))
    hull = str(rng.choice(list(HULL_VARIANTS), p=[0.7, 0.15, 0.15]))
    return SBIParams(
        transform_target=bool(rng.random() < 0.5),
        rgb_shift=tuple(float(v) for v in rgb),  # type: ignore[arg-type]
        hsv_shift=hsv,
        brightness=float(rng.uniform(-0.1, 0.1)),
        contrast=float(rng.uniform(-0.1, 0.1)),
        downscale=int(rng.choice([2, 4])) if rng.random() < 0.5 else 0,
        sharpen=(float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.5, 1.0))),
        affine=(
            float(rng.uniform(-0.03, 0.03)),
            float(rng.uniform(-0.015, 0.015)),
            float(rng.uniform(0.95, 1 / 0.95)),
        ),
        hull=hull,
        hull_scale=(float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.9, 1.1))),
        elastic_seed=int(rng.integers(2**31)),
        blur_size=(int(rng.integers(192, 257)), int(rng.integers(192, 257))),
        kernels=(int(rng.integers(2, 13)) * 2 + 1, int(rng.integers(2, 13)) * 2 + 1),  # 5..25, odd
        sigma=float(rng.integers(5, 46)),
        ratio=float(rng.choice(BLEND_RATIOS)),
    )


def face_hull(landmarks: np.ndarray, shape: tuple[int, int], params: SBIParams) -> np.ndarray:
    """Binary ``[H, W]`` float32 mask of the face region spanned by 5 landmarks (brows to chin)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    ex, ey = lm[1] - lm[0], mouth - eyes  # the face frame's axes
    (y_lo, scale), outline = HULL_VARIANTS[params.hull], FACE_OUTLINE.astype(np.float64)
    outline = np.stack([outline[:, 0] * scale, np.maximum(outline[:, 1], y_lo) * scale], 1)
    centre = outline.mean(0)
    outline = centre + (outline - centre) * np.array(params.hull_scale)
    points = eyes + outline[:, :1] * ex + outline[:, 1:] * ey  # [P, 2] pixels (continuous coords)
    mask = np.zeros(shape, np.float32)
    hull = cv2.convexHull(np.round(points - 0.5).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


def _affine_matrix(params: SBIParams, h: int, w: int) -> np.ndarray:
    tx, ty, s = params.affine
    cx, cy = w / 2, h / 2
    return np.array([[s, 0, cx - s * cx + tx * w], [0, s, cy - s * cy + ty * h]], np.float64)


def _elastic_maps(params: SBIParams, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement field (albumentations ElasticTransform alpha=50, sigma=7 at 256 px)."""
    rng = np.random.default_rng(params.elastic_seed)
    k = max(h, w) / 256
    sigma, alpha = 7 * k, 50 * k
    dx, dy = (
        cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma) * alpha for _ in "xy"
    )
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + dx, gy + dy


def blend_mask(hull: np.ndarray, params: SBIParams, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Deform (affine + elastic), erode and blur a hull into the soft ``[H, W]`` blend mask in [0, 1]."""
    h, w = hull.shape
    mask = cv2.warpAffine(hull, _affine_matrix(params, h, w), (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.remap(mask, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    bw, bh = params.blur_size
    small = cv2.resize(mask, (bw, bh), interpolation=cv2.INTER_LINEAR)
    k1, k2 = params.kernels
    small = cv2.GaussianBlur(small, (k1, k1), 0)
    if small.max() <= 0:
        return np.zeros_like(hull)
    small = np.where(small / small.max() < 1, 0, 1).astype(np.float32)  # erode: keep the solid core
    small = cv2.GaussianBlur(small, (k2, k2), params.sigma)
    if small.max() <= 0:
        return np.zeros_like(hull)
    out = cv2.resize(small / small.max(), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0, 1).astype(np.float32) * params.ratio


def _lut(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


_LEVELS = np.arange(256, dtype=np.float32)


def _colour(images: np.ndarray, params: SBIParams) -> np.ndarray:
    """RGB shift, HSV shift, brightness/contrast of ``[..., H, W, 3]`` uint8 images, as lookup tables."""
    shape = images.shape
    flat = np.ascontiguousarray(images).reshape(-1, shape[-2], 3)  # [T*H, W, 3]: one call for all frames
    rgb = np.stack([_lut(_LEVELS + v) for v in params.rgb_shift], -1).reshape(256, 1, 3)
    hsv = cv2.cvtColor(cv2.LUT(flat, rgb), cv2.COLOR_RGB2HSV)
    dh, ds, dv = params.hsv_shift
    hue = np.mod(np.round(_LEVELS + dh), 180).astype(np.uint8)
    hsv = cv2.LUT(hsv, np.stack([hue, _lut(_LEVELS + ds), _lut(_LEVELS + dv)], -1).reshape(256, 1, 3))
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = float(img.mean())  # of the whole window: the same contrast change for every frame
    img = cv2.LUT(img, _lut((_LEVELS - mean) * (1 + params.contrast) + mean + params.brightness * 255))
    return img.reshape(shape)


def transform_face(images: np.ndarray, params: SBIParams) -> np.ndarray:
    """Colour (RGB shift, HSV, brightness/contrast) then frequency (downscale or sharpen) transform.

    Args:
        images: ``[H, W, 3]`` or ``[T, H, W, 3]`` uint8 (all frames get the same transform).
        params: SBI parameters.
    """
    img = _colour(images, params)
    frames = img.reshape(-1, *img.shape[-3:])  # [T, H, W, 3]
    h, w = frames.shape[1:3]
    if params.downscale:
        r = params.downscale
        size = (max(1, w // r), max(1, h // r))
        out = [cv2.resize(cv2.resize(f, size, interpolation=cv2.INTER_NEAREST), (w, h)) for f in frames]
    else:
        alpha, lightness = params.sharpen
        kernel = -np.ones((3, 3), np.float32)
        kernel[1, 1] = 8 + lightness
        kernel = (1 - alpha) * np.pad([[1.0]], 1).astype(np.float32) + alpha * kernel
        out = [cv2.filter2D(f, -1, kernel) for f in frames]
    return np.stack(out).reshape(img.shape)


def self_blend_frame(
    image: np.ndarray,
    landmarks: np.ndarray,
    params: SBIParams,
    maps: tuple[np.ndarray, np.ndarray] | None = None,
    changed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One self-blended frame.

    Args:
        image: ``[H, W, 3]`` uint8 face crop.
        landmarks: ``[5, 2]`` landmarks in crop pixels.
        params: the window's SBI parameters.
        maps: elastic maps from ``_elastic_maps`` (drawn from ``params`` when None).
        changed: ``transform_face(image, params)`` when already computed.

    Returns:
        ``(fake [H, W, 3] uint8, mask [H, W] float32 in [0, 1], target [H, W, 3] uint8)``: the fake is
        ``mask * source + (1 - mask) * target``; ``target`` is the image it is blended into (the input,
        or its transformed copy when ``params.transform_target``).
    """
    h, w = image.shape[:2]
    maps = maps if maps is not None else _elastic_maps(params, h, w)
    changed = transform_face(image, params) if changed is None else changed
    source, target = (image, changed) if params.transform_target else (changed, image)
    source = cv2.warpAffine(source, _affine_matrix(params, h, w), (w, h), borderMode=cv2.BORDER_REFLECT_101)
    mask = blend_mask(face_hull(landmarks, (h, w), params), params, maps)
    m = mask[..., None]  # [H, W, 1]
    fake = m * source.astype(np.float32) + (1 - m) * target.astype(np.float32)
    return np.clip(np.round(fake), 0, 255).astype(np.uint8), mask, target


def self_blend(
    frames: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, params: SBIParams | None = None
) -> tuple[np.ndarray, np.ndarray, SBIParams]:
    """Self-blend every frame of a window with one set of parameters.

    Args:
        frames: ``[T, H, W, 3]`` uint8 face crops.
        landmarks: ``[T, 5, 2]`` landmarks in crop pixels.
        rng: random generator (used only when ``params`` is None).
        params: fixed parameters (tests, reproductions).

    Returns:
        ``(fakes [T, H, W, 3] uint8, masks [T, H, W] float32, params)``.
    """
    params = params or sample_sbi_params(rng)
    h, w = frames.shape[1:3]
    maps = _elastic_maps(params, h, w)
    changed = transform_face(frames, params)  # [T, H, W, 3]
    out = [
        self_blend_frame(f, lm, params, maps, c) for f, lm, c in zip(frames, landmarks, changed, strict=True)
    ]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), params


def desync(
    audio: np.ndarray,
    shift_seconds: float,
    sample_rate: int = SAMPLE_RATE,
    source: np.ndarray | None = None,
    start: int | None = None,
) -> np.ndarray:
    """Audio shifted by ``shift_seconds`` (positive: the voice comes later than the lips).

    With the clip's whole audio (``source``) and the window's first sample in it (``start``), the shifted
    span is cut from the clip (no splice) when it lies inside; otherwise the window's audio is rolled
    circularly.

    Returns:
        ``[S]`` float32, the same length as ``audio``: ``out[i] = audio[i - shift]``.
    """
    shift = round(shift_seconds * sample_rate)
    n = len(audio)
    if source is not None and start is not None and 0 <= start - shift and start - shift + n <= len(source):
        return np.asarray(source[start - shift : start - shift + n], dtype=np.float32).copy()
    return np.roll(np.asarray(audio, dtype=np.float32), shift)


def swap_audio(window: Window, other_audio: np.ndarray, rng: np.random.Generator | None = None) -> Window:
    """The window with audio cut from ``other_audio`` (another clip), at a random start when ``rng``."""
    n = len(window.audio)
    other = np.asarray(other_audio, dtype=np.float32)
    start = int(rng.integers(0, max(len(other) - n, 0) + 1)) if rng is not None else 0
    out = np.zeros(n, np.float32)
    piece = other[start : start + n]
    out[: len(piece)] = piece
    return window.replace(audio=out, audio_mask=True)


AudioSource = Callable[[], "np.ndarray | None"] | np.ndarray | None


class PseudoFaker:
    """Turns real windows into pseudo-fakes: SBI, audio desync or audio swap, by configured weights.

    Args:
        config: pseudo-fake settings (weights, desync range).
        sample_rate: audio sample rate of the windows.
    """

    def __init__(self, config: PseudoFakeConfig, sample_rate: int = SAMPLE_RATE) -> None:
        if config.min_desync_seconds > config.max_desync_seconds:
            raise ValueError("min_desync_seconds must be <= max_desync_seconds")
        lo, hi = config.partial_span
        if not 0 < lo <= hi <= 1:
            raise ValueError(
                f"partial_span must satisfy 0 < shortest <= longest <= 1, got {config.partial_span}"
            )
        self.config = config
        self.sample_rate = sample_rate

    def kinds(self, window: Window, has_other_audio: bool = True) -> dict[str, float]:
        """Applicable kinds and their weights (no audio kinds without audio, no SBI without landmarks)."""
        cfg = self.config
        weights = {}
        if np.isfinite(window.landmarks).all():
            weights["sbi"] = cfg.sbi_weight
        if window.audio_mask and self._max_shift(window) >= cfg.min_desync_seconds:
            weights["av_desync"] = cfg.desync_weight
        if window.audio_mask and has_other_audio:
            weights["av_swap"] = cfg.swap_weight
        return {k: w for k, w in weights.items() if w > 0}

    def _max_shift(self, window: Window) -> float:
        # a circular shift by s equals one by s - duration: keep |shift| and duration - |shift| >= min
        duration = len(window.audio) / self.sample_rate
        return min(self.config.max_desync_seconds, duration - self.config.min_desync_seconds)

    def __call__(
        self,
        window: Window,
        rng: np.random.Generator,
        other_audio: AudioSource = None,
        clip_audio: np.ndarray | None = None,
    ) -> tuple[Window, dict[str, int], str]:
        """Fake a real window.

        Args:
            window: a real window.
            rng: random generator (all draws come from it).
            other_audio: audio of another real clip, or a callable returning it (or None) on demand.
            clip_audio: the window's whole clip audio, so a desync cuts a shifted span without a splice.

        Returns:
            ``(window, labels, kind)`` with labels ``label``/``video_label``/``audio_label`` and kind
            ``sbi``, ``sbi_partial``, ``av_desync``, ``av_desync_partial``, ``av_swap`` (``""`` and the
            window unchanged when none applies). A partial fake's labels also hold ``segments``: its
            manipulated span, in seconds.
        """
        weights = self.kinds(window, has_other_audio=other_audio is not None)
        while weights:
            names = list(weights)
            p = np.array([weights[k] for k in names]) / sum(weights.values())
            kind = names[int(rng.choice(len(names), p=p))]
            span = self._partial_span(window, rng) if kind in ("sbi", "av_desync") else None
            if span is not None and kind == "sbi":
                faked, made = partial_self_blend(window, span, rng), "sbi_partial"
            elif span is not None:
                shift = self._draw_shift(window, rng)
                faked = partial_desync(window, span, shift, self.sample_rate, clip_audio)
                made = "av_desync_partial"
            else:
                faked, made = self._apply(kind, window, rng, other_audio, clip_audio), kind
            if faked is not None:
                audio_label = 0 if faked.audio_mask else -1
                labels = {"label": 1, "video_label": int(kind == "sbi"), "audio_label": audio_label}
                if span is not None:
                    edges = frame_edges(window)
                    labels["segments"] = ((float(edges[span[0]]), float(edges[span[1]])),)  # type: ignore
                return faked, labels, made
            del weights[kind]  # e.g. no other clip with audio could be found
        return window, {"label": 0, "video_label": 0, "audio_label": 0 if window.audio_mask else -1}, ""

    def _draw_shift(self, window: Window, rng: np.random.Generator) -> float:
        """A desync shift in seconds: ``min_desync_seconds`` or more, either sign."""
        return float(
            rng.uniform(self.config.min_desync_seconds, self._max_shift(window)) * rng.choice([-1, 1])
        )

    def _partial_span(self, window: Window, rng: np.random.Generator) -> tuple[int, int] | None:
        """Frames ``[first, end)`` of a partial fake (drawn with probability ``partial_p``), else None.

        The span holds ``partial_span`` of the window's real frames (at least one frame, and at least one
        frame stays untouched).
        """
        n = int(window.n_real)
        if n < 2 or self.config.partial_p <= 0 or rng.random() >= self.config.partial_p:
            return None
        lo, hi = (min(n - 1, max(1, round(f * n))) for f in self.config.partial_span)
        length = int(rng.integers(lo, hi + 1))
        first = int(rng.integers(0, n - length + 1))
        return first, first + length

    def _apply(
        self,
        kind: str,
        window: Window,
        rng: np.random.Generator,
        other_audio: AudioSource,
        clip_audio: np.ndarray | None,
    ) -> Window | None:
        if kind == "sbi":
            frames, _, _ = self_blend(window.frames, window.landmarks, rng)
            return window.replace(frames=frames)
        if kind == "av_desync":
            shift = self._draw_shift(window, rng)
            start = round(window.t0 * self.sample_rate)
            return window.replace(audio=desync(window.audio, shift, self.sample_rate, clip_audio, start))
        other = other_audio() if callable(other_audio) else other_audio
        if other is None or len(other) == 0:
            return None
        return swap_audio(window, other, rng)


def partial_self_blend(window: Window, span: tuple[int, int], rng: np.random.Generator) -> Window:
    """The window with frames ``span = (first, end)`` self-blended (one SBI draw) and the rest untouched.

    Padding frames (``n_real:``) keep repeating the last real frame, blended or not.
    """
    first, end = span
    blended, _, _ = self_blend(window.frames[first:end], window.landmarks[first:end], rng)
    frames = window.frames.copy()  # [T, H, W, 3]
    frames[first:end] = blended
    frames[window.n_real :] = frames[window.n_real - 1]
    return window.replace(frames=frames)


FADE_SECONDS = 0.01  # cross-fade at the edges of a partly desynchronised span (no click to key on)


def partial_desync(
    window: Window,
    span: tuple[int, int],
    shift_seconds: float,
    sample_rate: int = SAMPLE_RATE,
    clip_audio: np.ndarray | None = None,
) -> Window:
    """The window with the audio of frames ``span = (first, end)`` shifted by ``shift_seconds``.

    The shifted audio (:func:`desync`, cut from the clip's audio where it can) replaces the window's over
    the frames' time span, cross-faded over :data:`FADE_SECONDS` at both edges; the rest stays in sync.
    """
    start = round(window.t0 * sample_rate)
    shifted = desync(window.audio, shift_seconds, sample_rate, clip_audio, start)  # [S]
    edges = frame_edges(window)
    lo, hi = (int(np.clip(round((edges[i] - window.t0) * sample_rate), 0, len(window.audio))) for i in span)
    fade = max(1.0, FADE_SECONDS * sample_rate)
    x = np.arange(len(window.audio)) + 0.5  # sample centres
    weight = np.clip(np.minimum(x - lo, hi - x) / fade, 0.0, 1.0).astype(np.float32)  # [S] ramps at the edges
    audio = weight * shifted + (1.0 - weight) * np.asarray(window.audio, np.float32)
    return window.replace(audio=audio.astype(np.float32))
