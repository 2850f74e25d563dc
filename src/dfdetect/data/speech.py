"""Speech (audio-only) data: canonical decoding, one-codec re-encoding, perturbations and a dataset.

Every file is decoded to 16 kHz mono and, for training and evaluation, re-encoded through one codec
(:func:`reencode`, Opus 48 kbit/s by default) so that the source format (WAV vs MP3, 22.05 vs 24 kHz)
carries no label. :class:`SpeechDataset` yields DESIGN.md "Sample" dicts (``audio [S]`` + ``audio_mask``,
``label``, ``segment_labels [1]``, ``meta``) that the generic training loop and ``DeepfakeTask`` accept.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any, Literal

import av
import numpy as np
from pydantic import Field

from dfdetect.config import StrictModel
from dfdetect.constants import SAMPLE_RATE
from dfdetect.data.manifest import REAL, UNKNOWN, ManifestRow

log = logging.getLogger(__name__)

CODECS = {"opus": ("libopus", "ogg"), "mp3": ("libmp3lame", "mp3"), "aac": ("aac", "adts")}


class SpeechConfig(StrictModel):
    """A speech experiment's data section: where the speech files are, how they are split, and how they
    become model inputs (``kind: speech`` tells ``dfdetect train`` it is one; recorded in the checkpoint).

    Two families of models read it: a waveform model (``aasist-l``) trains on ``window``-sample crops
    through a loop; a frozen-encoder model (``whisper-speech``) fits its head on pooled features of
    ``feature_seconds`` windows of ``variants`` of every file (codec round trips, telephone band, room),
    cached in ``feature_cache``.
    """

    kind: Literal["speech"] = "speech"
    labels: str = Field("", description="labels CSV (path,label,generator,speaker,...) or a folder")
    manifests: list[str] = Field(
        default_factory=list, description="prepared manifests (dfdetect prepare catalog) with their splits"
    )
    seed: int = Field(0, description="seed of the speaker-disjoint split of `labels`")
    val: float = Field(0.15, ge=0, le=1, description="fraction of speakers for validation")
    test: float = Field(0.3, ge=0, le=1, description="fraction of speakers held out for testing")
    codec: str = Field("opus", description="the one codec every file goes through (opus, mp3, aac, none)")
    bitrate: int = Field(48000, gt=0)
    window: int = Field(64600, gt=0, description="samples per training sample (the model's window)")
    max_seconds: float = Field(30.0, gt=0, description="seconds decoded per file")
    p_noise: float = Field(0.3, ge=0, le=1)
    snr_db: tuple[float, float] = (10.0, 40.0)
    p_band: float = Field(0.2, ge=0, le=1, description="8 kHz telephone band augmentation")
    p_gain: float = Field(0.3, ge=0, le=1)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    windows_per_clip: int = Field(2, ge=1, description="training crops per file and epoch")
    val_windows_per_clip: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    val_batch_size: int | None = None
    feature_seconds: float = Field(10.0, gt=0, description="window of a frozen-encoder model (seconds)")
    variants: list[str] = Field(
        default_factory=lambda: ["clean", "mp3", "aac", "opus", "telephone", "room"],
        description="training variants of every file (see data.speech.VARIANTS)",
    )
    variants_per_clip: int = Field(3, ge=1, description="variants per training file: clean + others")
    per_family: int = Field(
        20, ge=1, description="most files of a generator family (or real source) per split (frozen encoder)"
    )
    feature_cache: str = Field("runs/speech-features", description="cached pooled features (npz per clip)")


def _encode(audio: np.ndarray, sample_rate: int, codec: str, container: str, bitrate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=sample_rate)
        stream.bit_rate = int(bitrate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decode_bytes(data: bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Encoded audio bytes -> ``[S]`` float32 mono at ``sample_rate``."""
    chunks = []
    with av.open(io.BytesIO(data)) as inp:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in inp.decode(audio=0):
            chunks.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(frame))
        chunks.extend(o.to_ndarray().reshape(-1) for o in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def reencode(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, codec: str = "opus", bitrate: int = 48000
) -> np.ndarray:
    """Pass ``audio [S]`` (mono float) through ``codec`` at ``bitrate`` and back to ``sample_rate``.

    The output has the input's length (codec delay and padding trimmed or padded at the end).
    ``codec="none"`` returns the input unchanged.
    """
    if codec == "none" or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)} or none")
    name, container = CODECS[codec]
    out = decode_bytes(_encode(np.clip(audio, -1, 1), sample_rate, name, container, bitrate), sample_rate)
    if codec == "aac":  # ADTS carries no priming length: the decoder's output starts late
        out = out[_lag(audio, out) :]
    return fit_length(out, audio.size)


def _lag(ref: np.ndarray, out: np.ndarray, most: int = 4096) -> int:
    """Samples by which ``out`` lags ``ref`` (cross-correlation over the first second, 0..``most``)."""
    from scipy.signal import correlate

    n = min(ref.size, SAMPLE_RATE)
    if n < 64 or out.size < n + most:
        return 0
    c = correlate(out[: n + most], ref[:n], mode="valid")  # [most + 1]
    return int(np.argmax(c))


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad ``audio`` to ``n`` samples."""
    if audio.size >= n:
        return np.ascontiguousarray(audio[:n])
    return np.concatenate([audio, np.zeros(n - audio.size, np.float32)])


def load_speech(
    path: str | os.PathLike, codec: str = "opus", bitrate: int = 48000, max_seconds: float | None = 30.0
) -> np.ndarray:
    """A speech file as 16 kHz mono float32, re-encoded through ``codec`` (the train/eval canonical form).

    Raises:
        UnreadableMediaError: the file cannot be decoded.
    """
    from dfdetect.io.audio import load_audio

    audio, _ = load_audio(path, SAMPLE_RATE, max_duration=max_seconds)
    return reencode(audio, SAMPLE_RATE, codec, bitrate)


# ------------------------------------------------------------------------------------------------
# Perturbations (robustness evaluation) and training augmentation
# ------------------------------------------------------------------------------------------------


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy) of ``audio``."""
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def telephone(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, rate: int = 8000) -> np.ndarray:
    """Narrow-band telephone channel: down to ``rate`` Hz and back (everything above rate/2 is lost)."""
    return fit_length(resample(resample(audio, sample_rate, rate), rate, sample_rate), audio.size)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the signal's power."""
    power = float(np.mean(np.square(audio, dtype=np.float64))) or 1e-8
    std = np.sqrt(power / 10 ** (snr_db / 10))
    return (audio + rng.normal(0, std, audio.shape)).astype(np.float32)


def perturb(audio: np.ndarray, name: str, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Named perturbations of the speech evaluation: ``clean``, ``mp3_64k`` (MP3 at 64 kbit/s), ``aac_48k``
    (AAC at 48 kbit/s), ``opus_16k`` (Opus at 16 kbit/s, a voice-call rate), ``telephone_8k`` (8 kHz band),
    ``noise_10db`` (white noise at 10 dB SNR)."""
    if name == "clean":
        return audio
    if name in ("mp3_64k", "aac_48k", "opus_16k"):
        codec, kbits = name.split("_")
        return reencode(audio, sample_rate, codec, 1000 * int(kbits.removesuffix("k")))
    if name == "telephone_8k":
        return telephone(audio, sample_rate)
    if name == "noise_10db":
        return add_noise(audio, 10.0, np.random.default_rng(seed))
    raise ValueError(f"unknown perturbation {name!r}; choose one of {', '.join(PERTURBATIONS)}")


PERTURBATIONS = ("clean", "mp3_64k", "aac_48k", "opus_16k", "telephone_8k", "noise_10db")


def augment(audio: np.ndarray, cfg: SpeechConfig, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: gain, telephone band, noise (each with its probability)."""
    if rng.random() < cfg.p_gain:
        audio = audio * np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
    if rng.random() < cfg.p_band:
        audio = telephone(audio)
    if rng.random() < cfg.p_noise:
        audio = add_noise(audio, rng.uniform(*cfg.snr_db), rng)
    return np.clip(audio, -1, 1).astype(np.float32)


def crop(audio: np.ndarray, window: int, start: int | None) -> np.ndarray:
    """``window`` samples from ``start`` (None = the first window); short clips are repeated."""
    if audio.size == 0:
        return np.zeros(window, np.float32)
    if audio.size < window:
        audio = np.tile(audio, int(np.ceil(window / audio.size)))
    start = 0 if start is None else min(start, audio.size - window)
    return np.ascontiguousarray(audio[start : start + window])


def reverb(audio: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A synthetic room: exponentially decaying noise as impulse response (RT60 0.2-0.8 s), mixed
    with the dry signal; the output keeps the input's length and peak."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(0.2, 0.8)
    t = np.arange(int(rt60 * sample_rate)) / sample_rate
    rir = rng.normal(0, 1, t.size) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    rir[0] = 1.0
    wet = fftconvolve(audio, rir / np.abs(rir).sum() * 4)[: audio.size]
    mix = rng.uniform(0.3, 0.8)
    out = (1 - mix) * audio + mix * wet
    peak = max(float(np.abs(out).max()), 1e-6)
    return (out * (max(float(np.abs(audio).max()), 1e-6) / peak)).astype(np.float32)


def variant(audio: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """A named version of ``audio`` (16 kHz mono), made the same way for both classes.

    Training variants (random settings from ``seed``): ``clean``; ``mp3`` (32-128 kbit/s), ``aac``
    (32-96 kbit/s), ``opus`` (12-48 kbit/s) round trips; ``telephone`` (8 kHz band, half the time then
    Opus 12 kbit/s); ``room`` (reverberation half the time, then noise at 10-30 dB SNR). Evaluation
    variants: the fixed :data:`PERTURBATIONS` (``mp3_64k``, ``telephone_8k``, ``noise_10db``).
    """
    if name in PERTURBATIONS:
        return perturb(audio, name, seed)
    rng = np.random.default_rng(seed)
    if name in ("mp3", "aac", "opus"):
        rates = {"mp3": [32, 48, 64, 96, 128], "aac": [32, 48, 64, 96], "opus": [12, 16, 24, 32, 48]}[name]
        return reencode(audio, SAMPLE_RATE, name, 1000 * int(rng.choice(rates)))
    if name == "telephone":
        out = telephone(audio)
        return reencode(out, SAMPLE_RATE, "opus", 12000) if rng.random() < 0.5 else out
    if name == "room":
        out = reverb(audio, rng) if rng.random() < 0.5 else audio
        return np.clip(add_noise(out, rng.uniform(10, 30), rng), -1, 1).astype(np.float32)
    raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS + PERTURBATIONS)}")


VARIANTS = ("clean", "mp3", "aac", "opus", "telephone", "room")


def feature_windows(audio: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Non-overlapping windows of ``seconds`` (the last one flush with the end; one window for a shorter
    clip), as a scan cuts them for a model whose window is ``seconds`` long with ``clip_frames=1``."""
    n = int(round(seconds * sample_rate))
    if audio.size <= n:
        return [audio]
    starts = list(range(0, audio.size - n + 1, n))
    if starts[-1] + n < audio.size:
        starts.append(audio.size - n)
    return [audio[s : s + n] for s in starts]


# ------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------


class SpeechDataset:
    """Manifest rows of speech files -> Sample dicts, one ``cfg.window`` crop per draw.

    Files are decoded and re-encoded once (kept in memory; the speech sets are small). Training draws a
    random crop and augments it; evaluation takes ``windows_per_clip`` evenly spaced crops (the first
    window when 1, as the official evaluation). Random draws come from ``(seed, epoch, index)``.
    Unreadable files and, in training, unlabelled rows are skipped (logged).
    """

    def __init__(
        self,
        rows: list[ManifestRow],
        cfg: SpeechConfig,
        train: bool = False,
        seed: int = 0,
        windows_per_clip: int = 1,
    ) -> None:
        self.cfg, self.train, self.seed, self.epoch = cfg, train, seed, 0
        self.windows_per_clip = windows_per_clip
        self.rows: list[ManifestRow] = []
        self.audio: list[np.ndarray] = []
        for row in rows:
            if train and row.label == UNKNOWN:
                continue
            try:
                audio = load_speech(row.path, cfg.codec, cfg.bitrate, cfg.max_seconds)
            except Exception as e:  # a bad file never stops a run
                log.warning("skipping %s: %s", row.path, e)
                continue
            if audio.size:
                self.rows.append(row)
                self.audio.append(audio)
        log.info("speech dataset: %d of %d files usable", len(self.rows), len(rows))

    @property
    def labels(self) -> np.ndarray:
        return np.repeat([r.label for r in self.rows], self.windows_per_clip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows) * self.windows_per_clip

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        item, draw = divmod(index, self.windows_per_clip)
        row, audio, w = self.rows[item], self.audio[item], self.cfg.window
        last = max(audio.size - w, 0)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            x = augment(crop(audio, w, int(rng.integers(0, last + 1))), self.cfg, rng)
        else:
            start = None if self.windows_per_clip == 1 else round(last * draw / (self.windows_per_clip - 1))
            x = crop(audio, w, start)
        import torch

        label = float(row.label)
        return {
            "audio": torch.from_numpy(x),
            "audio_mask": torch.tensor(True),
            "label": torch.tensor(label),
            "segment_labels": torch.tensor([label]),
            "video_label": torch.tensor(float(UNKNOWN if row.label != REAL else REAL)),
            "audio_label": torch.tensor(label),
            "meta": {"path": row.path, "dataset": row.dataset, "method": row.method, "pseudo": ""},
        }


def speech_splits(data: SpeechConfig) -> dict[str, list[ManifestRow]]:
    """``train``/``val``/``test`` rows: the labels CSV split by speaker (deterministic in ``seed``), then
    the prepared manifests with the splits their builder wrote (family- and source-disjoint)."""
    from dfdetect.data.manifest import read_manifest
    from dfdetect.data.sources import scan_source

    rows: list[ManifestRow] = []
    if data.labels:
        rows += scan_source("folder", data.labels, seed=data.seed, val=data.val, test=data.test)
    for manifest in data.manifests:
        rows += [r for r in read_manifest(manifest) if r.label in (0, 1)]
    return {s: [r for r in rows if r.split == s] for s in ("train", "val", "test")}
