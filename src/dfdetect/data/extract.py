"""Per-file extraction: one media file -> one in-memory :class:`~dfdetect.types.Clip` (what scan needs).

:func:`extract_clip` dispatches on what the file is (:func:`dfdetect.io.video.inspect_media`):

- **video**: decode once at ``config.fps``, detect + track faces, square crops, audio + VAD (the audio
  runs in its own thread and decoding runs ahead of the faces in another);
- **image**: faces of the still image, each a one-frame track (scored with the frame model);
- **audio**: audio + VAD only (no faces), for audio-capable models.

The batch runner (:mod:`dfdetect.data.prepare`) and the scan pipeline (:mod:`dfdetect.infer.pipeline`)
both call it.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from dfdetect.config import PrepareConfig
from dfdetect.constants import VAD_SAMPLE_RATES
from dfdetect.io.audio import load_audio, speech_segments
from dfdetect.io.video import Frame, MediaError, NoVideoStreamError, inspect_media, iter_frames
from dfdetect.types import AudioStatus, Clip, MediaKind, Status, VideoInfo

log = logging.getLogger(__name__)
ALL_KINDS = (MediaKind.VIDEO, MediaKind.IMAGE, MediaKind.AUDIO)


class _Timed:
    """Wraps a face detector and adds the seconds spent in ``detect`` to ``timings['detect']``."""

    def __init__(self, detector: Any, timings: dict[str, float]) -> None:
        from dfdetect.faces.extract import accepts_min_face_size

        self.inner, self.timings, self.name = detector, timings, getattr(detector, "name", "detector")
        self.accepts_min_face_size = accepts_min_face_size(detector)  # keeps ROI detection possible

    def detect(self, images: list[np.ndarray], **kwargs: Any) -> list:
        t0 = time.perf_counter()
        try:
            return self.inner.detect(images, **kwargs)
        finally:
            self.timings["detect"] = self.timings.get("detect", 0.0) + time.perf_counter() - t0


def _prefetch(frames: Iterator, timings: dict[str, float], size: int = 8) -> Iterator:
    """Decode ``frames`` in a background thread, ``size`` frames ahead of the consumer.

    FFmpeg and torch both release the GIL, so decoding overlaps face detection (the wall time of
    prepare_clip tends to max(decode, detect) instead of their sum). Adds the producer's busy seconds to
    ``timings['decode']`` and the consumer's waiting seconds to ``timings['decode_wait']``. Exceptions of
    the decoder are re-raised in the consumer; closing the consumer stops the producer.
    """
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        busy, item = 0.0, done
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(frames)
                except StopIteration:
                    item = done
                busy += time.perf_counter() - t0
                _put(buffer, item, stop)
                if item is done:
                    break
        except BaseException as e:  # handed to the consumer, raised there
            _put(buffer, e, stop)
        finally:
            frames.close()
            timings["decode"] = timings.get("decode", 0.0) + busy

    thread = threading.Thread(target=produce, name="dfdetect-decode", daemon=True)
    thread.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = buffer.get()
            timings["decode_wait"] = timings.get("decode_wait", 0.0) + time.perf_counter() - t0
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _put(buffer: queue.Queue, item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            buffer.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _audio(
    path: str, config: PrepareConfig, seconds: float | None, timings: dict[str, float]
) -> tuple[np.ndarray, AudioStatus, list]:
    """Audio, status and speech segments (unreadable audio = no stream); seconds to timings['audio']."""
    t0 = time.perf_counter()
    try:
        audio, status = load_audio(path, config.sample_rate, max_duration=seconds)
        speech = status is AudioStatus.OK and config.sample_rate in VAD_SAMPLE_RATES
        return audio, status, speech_segments(audio, config.sample_rate) if speech else []
    except MediaError as e:
        log.warning("%s: audio ignored (%s)", path, e)
        return np.zeros(0, np.float32), AudioStatus.NO_STREAM, []
    finally:
        timings["audio"] = time.perf_counter() - t0


def extract_clip(
    path: str | os.PathLike,
    config: PrepareConfig,
    detector: Any = None,
    timings: dict[str, float] | None = None,
    kinds: tuple[MediaKind, ...] = (MediaKind.VIDEO,),
    faces: bool = True,
) -> Clip:
    """Turn one media file into a :class:`Clip` (faces, crops, audio, speech), in memory.

    Args:
        path: a local media file.
        config: sampling, detection, crop and audio settings (stored in ``clip.params``).
        detector: a face detector (``dfdetect.faces.detect``); None builds the one ``config`` names.
        timings: if given, filled with seconds per stage: decode (busy time of the decoding thread,
            which overlaps the others), decode_wait (time the face stage waited for frames), detect,
            track_crop, audio (runs in its own thread, overlapping the faces), total (wall time).
        kinds: the kinds of file accepted (the caller's model decides: a visual model cannot score audio).
        faces: look for faces (False for a model that only hears: a video then gives its audio alone).

    Returns:
        The Clip, ``kind`` set (``faces == []`` when no face track passed the quality filters).

    Raises:
        UnreadableMediaError: missing, empty, corrupt, truncated, not media.
        NoVideoStreamError: a kind not in ``kinds`` (e.g. an audio file for a visual model).
    """
    path = str(path)
    timings = {} if timings is None else timings
    t_start = time.perf_counter()
    kind, info = inspect_media(path)
    if kind not in kinds:
        raise NoVideoStreamError(_refusal(kind, path, kinds), path, kind)
    if kind == MediaKind.AUDIO or not faces:
        clip = _audio_clip(path, info, config, timings, kind)
    else:
        detector = detector if detector is not None else _detector(config)
        extract = _image_faces if kind == MediaKind.IMAGE else _video_faces
        clip = extract(path, info, config, detector, timings)
    timings["total"] = time.perf_counter() - t_start
    return clip


def _refusal(kind: MediaKind, path: str, kinds: tuple[MediaKind, ...]) -> str:
    if kind == MediaKind.AUDIO:
        return f"{path}: no video stream (audio only); this model needs a video showing a face"
    if kind == MediaKind.IMAGE:
        return f"{path} is a still image, not a video: only {', '.join(kinds)} files are scored here"
    return f"{path}: a video, but only {', '.join(kinds)} files are accepted here"


def _detector(config: PrepareConfig) -> Any:
    from dfdetect.faces.detect import detector_from_config

    return detector_from_config(config)


def _params(config: PrepareConfig, detector: Any = None) -> dict[str, Any]:
    name = getattr(detector, "name", config.detector) if detector is not None else config.detector
    return {**config.model_dump(), "detector": name}


def _video_faces(path: str, info: VideoInfo, config: PrepareConfig, detector: Any, timings: dict) -> Clip:
    """Faces (tracked, cropped) and audio of a video; the audio overlaps the faces in a thread."""
    from dfdetect.faces.extract import extract_faces

    seconds = config.max_duration
    if config.max_frames is not None:
        seconds = min(seconds or np.inf, config.max_frames / config.fps)
    face_config = _short_video_config(info, config)
    with ThreadPoolExecutor(1, thread_name_prefix="dfdetect-audio") as pool:
        audio_job = pool.submit(_audio, path, config, seconds, timings)
        t0 = time.perf_counter()
        frames = iter_frames(path, config.fps, max_duration=config.max_duration, max_frames=config.max_frames)
        faces = extract_faces(_prefetch(frames, timings), _Timed(detector, timings), face_config)
        extract_seconds = time.perf_counter() - t0
        audio, audio_status, speech = audio_job.result()
    timings["track_crop"] = extract_seconds - timings.get("decode_wait", 0.0) - timings.get("detect", 0.0)
    return Clip(path, info, faces, audio, config.sample_rate, audio_status, speech, _params(config, detector))


def _short_video_config(info: VideoInfo, config: PrepareConfig) -> PrepareConfig:
    """A video shorter than ``min_track_frames`` sampled frames keeps the tracks it can have (one frame
    of a clear face is a face, not ``no_face``)."""
    expected = info.n_frames or math.ceil(max(info.duration, 0.0) * min(config.fps, info.fps or config.fps))
    if 0 < expected < config.min_track_frames:
        return config.model_copy(update={"min_track_frames": max(1, int(expected)), "detect_every": 1})
    return config


def _image_faces(path: str, info: VideoInfo, config: PrepareConfig, detector: Any, timings: dict) -> Clip:
    """Every face of a still image as a one-frame track."""
    from dfdetect.faces.extract import extract_faces
    from dfdetect.io.image import load_image

    t0 = time.perf_counter()
    image = load_image(path)
    timings["decode"] = time.perf_counter() - t0
    one = config.model_copy(update={"min_track_frames": 1, "detect_every": 1})
    t0 = time.perf_counter()
    faces = extract_faces([Frame(0, 0.0, image)], _Timed(detector, timings), one)
    timings["track_crop"] = time.perf_counter() - t0 - timings.get("detect", 0.0)
    info = VideoInfo(path, 0.0, 0.0, image.shape[1], image.shape[0], info.codec, n_frames=1)
    empty = np.zeros(0, np.float32)
    params = _params(config, detector)
    return Clip(
        path, info, faces, empty, config.sample_rate, AudioStatus.NO_STREAM, [], params, MediaKind.IMAGE
    )


def _audio_clip(path: str, info: VideoInfo, config: PrepareConfig, timings: dict, kind: MediaKind) -> Clip:
    """The audio (and its speech segments) of a file, without faces."""
    audio, status, speech = _audio(path, config, config.max_duration, timings)
    return Clip(
        path, info, [], audio, config.sample_rate, status, speech, _params(config), kind=MediaKind.AUDIO
    )


def clip_status(clip: Clip) -> Status:
    """NO_FACE without a face track, NO_AUDIO without usable audio, else OK (audio clips: NO_SPEECH
    without speech)."""
    if clip.kind == MediaKind.AUDIO:
        return Status.OK if clip.has_usable_audio and clip.speech else Status.NO_SPEECH
    if not clip.faces:
        return Status.NO_FACE
    return Status.OK if clip.has_usable_audio or clip.kind == MediaKind.IMAGE else Status.NO_AUDIO
