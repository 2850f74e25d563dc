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
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dfdetect.checkpoint import Checkpoint, CheckpointError
from dfdetect.infer.result import HeardSpeech
from dfdetect.types import Clip, MediaKind

if TYPE_CHECKING:
    from dfdetect.infer.pipeline import Detector

AUTO = "auto"  # Detector(speech=AUTO): the companion the checkpoint names, if any


@dataclass
class SpeechBranch:
    """A loaded speech companion: the audio-only detector and the fusion's ``p0``."""

    detector: Detector
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


def load_speech_branch(
    speech: str | os.PathLike | None, checkpoint: Checkpoint | None, device: str = "cpu", **kwargs: Any
) -> SpeechBranch | None:
    """The speech companion to use with ``checkpoint``.

    Args:
        speech: :data:`AUTO` (the checkpoint's ``companions["speech"]``, none if it names none), a speech
            model name or checkpoint path (overrides the checkpoint's), or None (no speech branch).
        checkpoint: the video model's checkpoint (None for a model built in memory).
        device: where to run the speech model.
        **kwargs: more :class:`~dfdetect.infer.pipeline.Detector` options (thresholds).

    Raises:
        ModelNotFoundError: the speech model is not installed.
        CheckpointError: it is not an audio-only model, or no real-voice ceiling is known for it.
    """
    from dfdetect.infer.pipeline import Detector, resolve_model

    companion = checkpoint.companions.get("speech") if checkpoint is not None else None
    if speech is None or (speech == AUTO and companion is None):
        return None
    spec = companion["model"] if speech == AUTO else os.fspath(speech)
    p0 = companion.get("p0") if companion is not None and spec == companion["model"] else None
    path, name = resolve_model(spec)
    detector = Detector.from_checkpoint(path, name=name, device=device, speech=None, **kwargs)
    if detector.modalities != {"audio"}:
        raise CheckpointError(f"speech model {name!r} ({path}) is not an audio-only model")
    p0 = p0 if p0 is not None else detector.checkpoint.real_voice_ceiling
    if p0 is None:
        raise CheckpointError(
            f"speech model {name!r} ({path}) records no real-voice ceiling (calibration.real_voice_ceiling): "
            "measure it with bench/speech_ceiling.py, or pass p0 in the video checkpoint's companions"
        )
    return SpeechBranch(detector, float(p0))


def canonical_audio(clip: Clip, codec: tuple[str, int] | None) -> Clip:
    """``clip`` with its audio passed through the speech model's one codec (``Checkpoint.input_codec``):
    what the model's evaluation (and its real-voice ceiling) measured. Unchanged without a codec or audio."""
    if codec is None or not clip.has_usable_audio:
        return clip
    from dfdetect.data.speech import reencode

    return dataclasses.replace(clip, audio=reencode(clip.audio, clip.sample_rate, codec[0], codec[1]))
