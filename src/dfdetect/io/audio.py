"""Audio extraction (mono float32 at 16 kHz through FFmpeg's resampler) and speech detection (silero-vad).

Audio timestamps share the zero of :func:`dfdetect.io.video.iter_frames` (the container's start), so
sample ``i`` is at ``start + i / sample_rate`` seconds, in sync with the sampled frames.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import logging
import os
import typing
import warnings
from pathlib import Path

import av
import numpy as np

from dfdetect.constants import SAMPLE_RATE, SILENCE_RMS, VAD_SAMPLE_RATES
from dfdetect.io.video import UnreadableMediaError, media_origin, open_media
from dfdetect.types import AudioStatus

log = logging.getLogger(__name__)

_MAX_LEAD_SECONDS = 600.0  # most leading silence added when the audio stream starts late


def _decode_mono(
    container: av.container.InputContainer, path: str, sample_rate: int, until: float
) -> tuple[list[np.ndarray], float | None]:
    """Decode + resample the first audio stream up to ``until`` seconds; returns chunks and first time."""
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    first: float | None = None
    n_samples = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:  # one corrupt packet: skip it
                continue
            for frame in frames:
                if first is None and frame.time is not None:
                    first = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))  # [n] float32 (packed mono)
                    n_samples += chunks[-1].size
            if first is not None and first + n_samples / sample_rate >= until:
                break
    except av.FFmpegError as e:
        if not chunks:
            raise UnreadableMediaError(f"{path}: cannot read audio data ({e})", path) from e
        log.warning("%s: audio stopped early (%s); the file may be truncated", path, e)
    for out in resampler.resample(None):  # flush the resampler's delay line
        chunks.append(out.to_ndarray().reshape(-1))
    return chunks, first


def _align(audio: np.ndarray, lead: float, sample_rate: int) -> np.ndarray:
    """Shift ``audio`` that starts ``lead`` seconds after the requested start (pad) or before it (cut)."""
    offset = round(min(lead, _MAX_LEAD_SECONDS) * sample_rate)
    if offset > 0:
        return np.concatenate([np.zeros(offset, np.float32), audio])
    return audio[-offset:]


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    max_duration: float | None = None,
    start: float = 0.0,
) -> tuple[np.ndarray, AudioStatus]:
    """Load the first audio stream of a media file as mono float32 at ``sample_rate``.

    Args:
        path: a local media file (video or audio-only).
        sample_rate: output rate in Hz.
        max_duration: seconds read from ``start`` (None = to the end).
        start: first second read, on the same clock as the video frames (the container's start).

    Returns:
        ``(audio [S] float32 in [-1, 1], status)``: an empty array with ``AudioStatus.NO_STREAM`` when the
        file has no audio stream; ``AudioStatus.SILENT`` when its RMS level is below ``SILENCE_RMS``.

    Raises:
        UnreadableMediaError: missing, empty, corrupt or not a media file.
    """
    path = str(path)
    until = start + max_duration if max_duration is not None else float("inf")
    with open_media(path) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32), AudioStatus.NO_STREAM
        origin = media_origin(container)
        if start > 1.0:
            container.seek(int((origin + start) * av.time_base), backward=True)
        chunks, first = _decode_mono(container, path, sample_rate, origin + until)
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    first_t = (first if first is not None else origin) - origin
    audio = _align(audio, first_t - start, sample_rate)
    if max_duration is not None:
        audio = audio[: round(max_duration * sample_rate)]
    audio = np.ascontiguousarray(audio)
    return audio, audio_status(audio)


def audio_status(audio: np.ndarray) -> AudioStatus:
    """``SILENT`` for an empty or near-silent signal (RMS < ``SILENCE_RMS``), else ``OK``."""
    if audio.size == 0:
        return AudioStatus.SILENT
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return AudioStatus.SILENT if rms < SILENCE_RMS else AudioStatus.OK


@functools.cache
def _silero():
    """The ``silero_vad`` module. Importing it calls ``torch.set_num_threads(1)`` for the whole process;
    the caller's thread count is restored, so the models of a scan keep every core."""
    import torch

    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():  # silero-vad's own deprecation notices (torch.jit, importlib)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            import silero_vad

            return silero_vad
    finally:
        torch.set_num_threads(threads)


@functools.cache
def _vad_model(sequence: bool = False):
    """silero-vad, loaded once per process: the batched ONNX ``sequence`` model (needs onnxruntime) or
    the TorchScript one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        return _silero().load_silero_vad(sequence=sequence)


@functools.cache
def _has_onnxruntime() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


@functools.cache
def _sequence_vad() -> tuple[typing.Any, typing.Callable] | None:
    """silero-vad's batched ONNX path without torch: ``(model, get_speech_timestamps_sequence)``, or None
    when this silero-vad does not have it in the expected form (the caller then imports the package).

    The package's ``__init__`` imports torch (its TorchScript model), although its ``sequence_vad`` module
    and the ``get_speech_timestamps_from_probs`` it calls are numpy + onnxruntime only. Those two pieces of
    the installed package are compiled here on their own (the function taken from ``utils_vad.py`` by its
    syntax tree, ``sequence_vad.py`` without its relative import), so the same code computes the same
    segments and a scan never imports torch for its voice detection.
    """
    try:
        spec = importlib.util.find_spec("silero_vad")  # finds the package without importing it
        root = Path(next(iter(spec.submodule_search_locations)))
        utils = ast.parse((root / "utils_vad.py").read_text(encoding="utf-8"))
        probs = [n for n in utils.body if getattr(n, "name", None) == "get_speech_timestamps_from_probs"]
        sequence = ast.parse((root / "sequence_vad.py").read_text(encoding="utf-8"))
        body = [n for n in sequence.body if not (isinstance(n, ast.ImportFrom) and n.level > 0)]
        namespace: dict[str, typing.Any] = {"__name__": "dfdetect_silero_sequence", "warnings": warnings}
        namespace.update(List=typing.List, Callable=typing.Callable)  # noqa: UP006 - its annotations
        exec(
            compile(ast.Module(body=probs + body, type_ignores=[]), str(root / "sequence_vad.py"), "exec"),
            namespace,
        )  # noqa: S102
        model = namespace["SileroVADSequence"](str(root / "data" / "silero_vad_16k_sequence.onnx"))
        return model, namespace["get_speech_timestamps_sequence"]
    except Exception as e:  # noqa: BLE001 - another silero-vad layout: use the package as it is
        log.debug("silero-vad's sequence model without torch is not available (%s): importing the package", e)
        return None


def speech_segments(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[tuple[float, float]]:
    """Speech segments found by silero-vad (model loaded once per process).

    At 16 kHz with onnxruntime installed (the ``scale`` extra), silero-vad's batched ONNX model runs one
    call per ~16 s block instead of one TorchScript call per 32 ms frame: the same per-frame probabilities
    and segments, ~35x faster on 2 cores. Otherwise the TorchScript model runs on one torch thread.

    Args:
        audio: [S] float32 mono signal.
        sample_rate: 8000 or 16000 Hz (silero-vad's rates).

    Returns:
        ``[(start, end), ...]`` in seconds from the first sample; empty for empty or silent audio.
    """
    if sample_rate not in VAD_SAMPLE_RATES:
        raise ValueError(f"speech_segments needs 8000 or 16000 Hz audio, got {sample_rate}; resample first")
    if audio.size < sample_rate // 10 or audio_status(audio) is AudioStatus.SILENT:
        return []
    samples = np.ascontiguousarray(audio, dtype=np.float32)  # [S]
    if sample_rate == SAMPLE_RATE and _has_onnxruntime():
        model, timestamps = _sequence_vad() or (
            _vad_model(sequence=True),
            _silero().get_speech_timestamps_sequence,
        )
        stamps = timestamps(samples, model, sampling_rate=sample_rate)
    else:
        stamps = _speech_timestamps_jit(samples, sample_rate)
    return [(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]


def _speech_timestamps_jit(samples: np.ndarray, sample_rate: int) -> list[dict[str, int]]:
    """silero-vad's per-frame TorchScript loop, on one torch thread (3x faster than on two here: its
    32 ms frames are too small to share between threads)."""
    import torch

    model, timestamps = _vad_model(), _silero().get_speech_timestamps
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return timestamps(torch.from_numpy(samples), model, sampling_rate=sample_rate)
    finally:
        torch.set_num_threads(threads)
