"""The speech branch of a video scan: a companion speech model scores the speech of a video.

A video checkpoint names its companion (``Checkpoint.companions["speech"]``, set with
:func:`dfdetect.checkpoint.attach_speech`); ``load_detector(..., speech=NAME | PATH | None)`` overrides it.
The speech model is an ordinary audio-only :class:`~dfdetect.infer.pipeline.Detector`: it scores the video's
audio exactly as it scores an audio file (same windows, the windows that overlap the VAD speech segments,
same canonical codec), and :func:`~dfdetect.infer.aggregate.fuse_speech` fuses its score with the visual
one using the speech model's real-voice ceiling ``p0``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dfdetect.infer.result import ClipScores, HeardSpeech
from dfdetect.types import Clip, MediaKind


@dataclass
class SpeechBranch:
    """A loaded speech companion: the audio-only detector and the fusion's ``p0``."""

    detector: Any  # an audio-only dfdetect.infer.pipeline.Detector
    p0: float

    @property
    def name(self) -> str:
        return self.detector.name

    def hear(self, clip: Clip) -> HeardSpeech:
        """Score the speech of a video ``clip`` (its audio as an audio clip) with the speech model."""
        t = time.perf_counter()
        audio = dataclasses.replace(clip, kind=MediaKind.AUDIO, faces=[])
        scores = self.detector.score(audio)
        return HeardSpeech(self.name, self.p0, scores, time.perf_counter() - t)


def canonical_audio(clip: Clip, codec: tuple[str, int] | None) -> Clip:
    """``clip`` with its audio passed through the speech model's one codec (``Checkpoint.input_codec``):
    what the model's evaluation (and its real-voice ceiling) measured. Unchanged without a codec or audio."""
    if codec is None or not clip.has_usable_audio:
        return clip
    from dfdetect.data.speech import reencode

    return dataclasses.replace(clip, audio=reencode(clip.audio, clip.sample_rate, codec[0], codec[1]))


def hear_beside(
    branch: SpeechBranch | None, clip: Clip, score: Callable[[], ClipScores], timings: dict[str, float]
) -> ClipScores:
    """``score()`` (the video model's scores of ``clip``) with ``branch`` hearing the clip's speech in a
    second thread meanwhile (both runtimes release the GIL: it saves time when the cores are contended; on
    an idle machine the tower's threads already fill them, docs/benchmarks.md). The voice is kept only for
    a video the model could score (what ``Detector._hear`` adds); ``timings`` gets each one's seconds
    (``model``, ``speech``)."""
    hears = branch is not None and clip.kind == MediaKind.VIDEO and clip.has_usable_audio
    with ThreadPoolExecutor(1, thread_name_prefix="dfdetect-speech") as pool:
        heard = pool.submit(timed_stage, timings, "speech", branch.hear, clip) if hears else None
        scores = timed_stage(timings, "model", score)
        if heard is not None and scores.decisive is not None:
            scores.heard = heard.result()
    return scores


def timed_stage(timings: dict[str, float], stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, its seconds added to ``timings[stage]`` (also when it raises)."""
    t = time.perf_counter()
    try:
        return fn(*args)
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t
