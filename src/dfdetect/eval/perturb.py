"""Robustness: re-score cached clips under perturbations of their face crops and audio.

Each perturbation copies a :class:`~dfdetect.types.Clip` with changed crops or audio, and the copy goes
through the same :meth:`~dfdetect.infer.pipeline.Detector.score` as clean clips. Severities are in each
perturbation's own unit (JPEG quality, blur sigma in pixels, noise std in 8-bit levels, resize factor,
H.264 CRF, audio sample rate in Hz, audio SNR in dB, audio shift in seconds).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dfdetect.data import augment
from dfdetect.types import Clip


@dataclass(frozen=True)
class Perturbation:
    """A named perturbation: ``apply(clip, severity, rng) -> Clip`` and its default severities."""

    name: str
    target: str  # "video" or "audio"
    unit: str
    severities: tuple[float, ...]
    apply: Callable[[Clip, float, np.random.Generator], Clip]


def _map_crops(clip: Clip, fn: Callable[[np.ndarray], np.ndarray]) -> Clip:
    """Copy of ``clip`` with ``fn`` applied to each track's crops ``[T, H, W, 3]`` uint8."""
    faces = [dataclasses.replace(f, crops=np.ascontiguousarray(fn(np.asarray(f.crops)))) for f in clip.faces]
    return dataclasses.replace(clip, faces=faces)


def _map_audio(clip: Clip, fn: Callable[[np.ndarray], np.ndarray]) -> Clip:
    audio = np.asarray(clip.audio, dtype=np.float32)
    if audio.size == 0:
        return clip  # nothing to perturb: the clip is scored video-only as before
    return dataclasses.replace(clip, audio=fn(audio).astype(np.float32))


def jpeg(clip: Clip, quality: float, rng: np.random.Generator) -> Clip:
    """JPEG re-compression of every crop at ``quality`` (0-100), as the training augmentation does it."""
    return _map_crops(clip, lambda crops: augment.jpeg(crops, int(quality)))


def blur(clip: Clip, sigma: float, rng: np.random.Generator) -> Clip:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    return _map_crops(clip, lambda crops: augment.gaussian_blur(crops, float(sigma)))


def noise(clip: Clip, std: float, rng: np.random.Generator) -> Clip:
    """Additive Gaussian noise of ``std`` 8-bit levels."""

    def one(crops: np.ndarray) -> np.ndarray:
        noisy = crops.astype(np.float32) + rng.normal(0.0, float(std), crops.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    return _map_crops(clip, one)


def resize(clip: Clip, factor: float, rng: np.random.Generator) -> Clip:
    """Downscale by ``factor`` (area) and back up (bilinear): the loss of a low-resolution upload."""
    return _map_crops(clip, lambda crops: augment.down_up(crops, float(factor)))


def h264(clip: Clip, crf: float, rng: np.random.Generator) -> Clip:
    """H.264 (libx264) re-encoding of each face-crop sequence at ``crf``: the round trip of the training
    augmentation (:func:`dfdetect.data.augment.h264`), so both measure one codec setting."""

    def one(crops: np.ndarray) -> np.ndarray:
        out = augment.h264(crops, int(crf))
        if out is crops and len(crops):  # the round trip lost frames and gave the input back
            raise RuntimeError(f"H.264 round trip at CRF {crf} did not return {len(crops)} frames")
        return out

    return _map_crops(clip, one)


def audio_resample(clip: Clip, rate: float, rng: np.random.Generator) -> Clip:
    """Resample the audio down to ``rate`` Hz and back (telephone-band audio)."""
    from scipy.signal import resample_poly

    sr = clip.sample_rate

    def one(audio: np.ndarray) -> np.ndarray:
        g = np.gcd(int(sr), int(rate))
        low = resample_poly(audio, int(rate) // g, int(sr) // g)
        back = resample_poly(low, int(sr) // g, int(rate) // g)
        return np.pad(back, (0, max(0, audio.size - back.size)))[: audio.size]

    return _map_audio(clip, one)


def audio_noise(clip: Clip, snr_db: float, rng: np.random.Generator) -> Clip:
    """White noise at a signal-to-noise ratio of ``snr_db`` (silence stays silent)."""
    return _map_audio(clip, lambda audio: augment.add_noise(audio, float(snr_db), rng))


def desync(clip: Clip, seconds: float, rng: np.random.Generator) -> Clip:
    """Delay the audio by ``seconds`` (silence in front): lips and speech out of sync."""
    shift = round(seconds * clip.sample_rate)

    def one(audio: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [np.zeros(min(shift, audio.size), audio.dtype), audio[: max(0, audio.size - shift)]]
        )

    return _map_audio(clip, one)


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("jpeg", "video", "quality", (90, 70, 50, 30), jpeg),
        Perturbation("blur", "video", "sigma px", (1, 2, 4), blur),
        Perturbation("noise", "video", "std (8-bit)", (5, 10, 20), noise),
        Perturbation("resize", "video", "scale", (0.75, 0.5, 0.25), resize),
        Perturbation("h264", "video", "CRF", (23, 30, 37, 44), h264),
        Perturbation("audio_resample", "audio", "Hz", (8000,), audio_resample),
        Perturbation("audio_noise", "audio", "SNR dB", (30, 20, 10, 0), audio_noise),
        Perturbation("desync", "audio", "seconds", (0.2, 0.5, 1.0), desync),
    )
}


def plan(spec: bool | dict[str, list[float] | None] | list[str] | None) -> list[tuple[str, float]]:
    """(name, severity) pairs to run: ``True`` = all defaults; a list of names; or name -> severities."""
    if not spec:
        return []
    if spec is True:
        spec = {name: None for name in PERTURBATIONS}
    if isinstance(spec, list | tuple):
        spec = {name: None for name in spec}
    unknown = [n for n in spec if n not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; choose among {', '.join(PERTURBATIONS)}")
    return [(n, float(s)) for n, sev in spec.items() for s in (sev or PERTURBATIONS[n].severities)]


def apply(clip: Clip, name: str, severity: float, seed: int = 0) -> Clip:
    """``clip`` perturbed by ``name`` at ``severity`` (noise drawn from a generator seeded per video)."""
    rng = np.random.default_rng([seed, zlib.crc32(clip.path.encode()), int(severity * 1000)])
    return PERTURBATIONS[name].apply(clip, severity, rng)
