"""Scan pipeline: file -> Clip (video, image or audio) -> model -> calibrated :class:`Prediction`.

A :class:`Detector` is built once from a :class:`~dfdetect.checkpoint.Checkpoint` (model, temperature,
preprocessing, and the prepare parameters it was trained with) and scans any number of files. What a
file is decides how it is scored (:func:`dfdetect.data.extract.extract_clip` dispatches on its content):
a video face track by face track, a still image face by face as one-frame clips, an audio file from audio
alone when the model can hear. It never raises for a bad file: the returned
:class:`~dfdetect.types.Prediction` carries the status and a message instead. ``eval`` drives the same
:meth:`Detector.score` over cached clips.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfdetect.checkpoint import Checkpoint, CheckpointError
from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.constants import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from dfdetect.infer.lookup import resolve_device, resolve_model
from dfdetect.infer.onnx import load_checkpoint
from dfdetect.infer.options import LOAD_FIELDS, ScanOptions, ScanOptionsError
from dfdetect.infer.runtime import for_inference, runtime_of, torch_twin, with_faces
from dfdetect.infer.speech import hear_beside, timed_stage
from dfdetect.io.files import expand_inputs
from dfdetect.types import Clip, MediaKind, Prediction, Status

if TYPE_CHECKING:
    from dfdetect.infer.result import ClipScores
    from dfdetect.infer.speech import SpeechBranch

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Detector
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Extraction:
    """What :meth:`Detector.extract` read from one file: the clip to score, or the failure that ends the
    scan (a :class:`Prediction` with its status)."""

    path: str
    kind: MediaKind
    clip: Clip | None
    timings: dict[str, float]  # seconds per extraction stage
    seconds: float  # the extraction's wall time
    failure: Prediction | None = None
    by_speech: bool = False  # a voice recording that the speech companion extracted and judges


class Detector:
    """A loaded model that scans files (video, image, audio) into calibrated, explained predictions.

    Args:
        checkpoint: a :class:`~dfdetect.checkpoint.Checkpoint` (or a checkpoint dict, validated).
        name: model name shown in predictions and reports.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        options: the :class:`~dfdetect.infer.options.ScanOptions` (band, aggregation, max_duration, speech
            model, uncertainty, faces, ...; default: the defaults), kept as ``detector.options``.
        **overrides: fields of ``options`` to change (``thresholds=(0.2, 0.8)``, ``speech=None``, ...).

    Raises ``ValueError``: a bad option (:class:`~dfdetect.infer.options.ScanOptionsError`), or an
    uncertainty method the model cannot run (``dropout`` without dropout).
    """

    def __init__(
        self,
        checkpoint: Checkpoint | dict[str, Any],
        name: str = "",
        device: str = "auto",
        options: ScanOptions | None = None,
        **overrides: Any,
    ) -> None:
        opts = ScanOptions.of(options, **overrides)
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.from_state(checkpoint)
        device = resolve_device(device, runtime_of(ckpt))
        self.checkpoint: Checkpoint | None = ckpt
        model = for_inference(ckpt.build_model(device))
        prepare = with_faces(ckpt.prepare_config(opts.max_duration), opts.faces)
        self._setup(model, ckpt.preprocess, prepare, device, opts)
        self.name = name or ckpt.name
        self.temperature = ckpt.temperature
        sees = bool(self.modalities & {"video", "frequency"})
        self.speech = load_speech_branch(opts.speech, ckpt, device, opts) if sees else None

    @classmethod
    def from_model(
        cls,
        model: Any,
        preprocess: PreprocessConfig,
        name: str = "model",
        temperature: float = 1.0,
        prepare: PrepareConfig | None = None,
        device: str = "cpu",
        speech: SpeechBranch | None = None,
        options: ScanOptions | None = None,
        **overrides: Any,
    ) -> Detector:
        """A detector around a model already built (stand-ins in tests, a model being trained), with its
        speech branch built; ``options`` as in :class:`Detector` (``prepare`` says how files are read)."""
        self, opts = cls.__new__(cls), ScanOptions.of(options, **overrides)
        same = {k: getattr(preprocess, k) for k in ("fps", "size", "margin", "sample_rate")}
        self.checkpoint = None
        self._setup(model, preprocess, prepare or PrepareConfig(**same), device, opts)
        self.name, self.temperature = name, float(temperature)
        self.speech = speech
        return self

    def _setup(
        self, model: Any, pre: PreprocessConfig, prepare: PrepareConfig, device: str, options: ScanOptions
    ) -> None:
        self.model, self.preprocess, self.prepare_config, self.device = model, pre, prepare, device
        self.options = options
        self._face_detector: Any = None
        self._twin: Any = None  # the model explanations run on (torch_twin), found on first use
        if options.uncertainty:  # the method must suit the model (dropout needs dropout modules)
            from dfdetect.infer.uncertainty import plan_passes

            plan_passes(model, options.uncertainty, options.uncertainty_method)

    def with_options(self, **changes: Any) -> Detector:
        """A copy sharing this model, with ``options.replace(**changes)``; the load-time options
        (:data:`~dfdetect.infer.options.LOAD_FIELDS`) cannot change (:class:`ScanOptionsError`)."""
        if fixed := sorted(set(changes) & set(LOAD_FIELDS)):
            raise ScanOptionsError(fixed[0], "is fixed when a detector loads: load another one to change it")
        twin = copy.copy(self)
        twin.options = self.options.replace(**changes)
        return twin

    # read-only views of ``options``, the one source
    thresholds = property(lambda self: self.options.thresholds)
    aggregation = property(lambda self: self.options.aggregation)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs: Any) -> Detector:
        """Load the checkpoint, or the ``.onnx`` export (:mod:`dfdetect.infer.onnx`), at ``path``."""
        return cls(load_checkpoint(path), **{"name": Path(path).stem, **kwargs})

    @property
    def modalities(self) -> set[str]:
        """What the model looks at: ``video``, ``frequency``, ``audio``, ``sync``."""
        mods = getattr(self.model, "modalities", None)
        return set(mods) if mods else {"video"}

    @property
    def kinds(self) -> tuple[MediaKind, ...]:
        """The kinds of file this model can score."""
        kinds = []
        if self.modalities & {"video", "frequency"}:
            kinds += [MediaKind.VIDEO, MediaKind.IMAGE]
        if "audio" in self.modalities:
            kinds += [MediaKind.AUDIO] + ([MediaKind.VIDEO] if MediaKind.VIDEO not in kinds else [])
        return tuple(kinds)

    @property
    def face_detector(self) -> Any:
        """The face detector of the prepare config, created once per :class:`Detector`."""
        if self._face_detector is None:
            from dfdetect.faces.detect import detector_from_config

            self._face_detector = detector_from_config(self.prepare_config, device=self.device)
        return self._face_detector

    def scan(
        self,
        path: str | os.PathLike,
        explain: bool | None = None,
        explain_dir: str | os.PathLike | None = None,
        thumbnails: bool | None = None,
        uncertainty: int | None = None,
    ) -> Prediction:
        """Scan one file; never raises for a bad file (the status and message say what happened).

        A video is scored face track by face track; a still image face by face (one-frame clips); an
        audio file from audio alone when the model can hear, else by its speech companion (else
        ``no_video``).

        ``explain``, ``thumbnails`` and ``uncertainty`` override ``options`` for this file (None: keep
        them); a bad value raises :class:`~dfdetect.infer.options.ScanOptionsError` before any work.

        Args:
            path: the video, image or audio file.
            explain: add Grad-CAM heatmaps, attention and sync curves to ``extras["explain"]`` (from the
                same scores: no second pass over the windows).
            explain_dir: write explanation images there (paths in extras) instead of inline base64.
            thumbnails: add a thumbnail per face track to ``extras["thumbnails"]`` and the waveform of
                scored speech to ``extras["waveform"]`` (for reports; implied by explain).
            uncertainty: ``N`` stochastic passes for ``Prediction.uncertainty``.

        Returns:
            The :class:`Prediction`, with ``timings`` in seconds per stage.
        """
        call = self._for_call(explain, thumbnails, uncertainty)
        return self.judge(self.extract(path), call.explain, explain_dir, call.thumbnails, call.uncertainty)

    def _for_call(self, explain: Any, thumbnails: Any, uncertainty: Any) -> ScanOptions:
        """``options`` with one scan's overrides (None: keep), checked by :meth:`ScanOptions.replace`."""
        given = {"explain": explain, "thumbnails": thumbnails, "uncertainty": uncertainty}
        changed = {k: v for k, v in given.items() if v is not None and v != getattr(self.options, k)}
        return self.options.replace(**changed)

    def extract(self, path: str | os.PathLike) -> Extraction:
        """The first stage of :meth:`scan`: decode, find faces, read the audio; no model runs.

        Never raises: a bad file comes back with its failure :class:`Prediction`. The result is plain data
        (a batch on Ray extracts on CPU workers and sends it to the model's workers).
        """
        path = os.fspath(path)
        if self._speech_only(path):  # a voice recording: the speech companion judges it alone
            return dataclasses.replace(self.speech.detector.extract(path), by_speech=True)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        try:
            clip, kind = self._extract(path, timings)
        except Exception as e:  # noqa: BLE001 - a bad file becomes a status, never a crash
            failure = self._failure(path, e, timings, start)
            return Extraction(path, failure.kind, None, timings, failure.timings["total"], failure)
        return Extraction(path, kind, clip, timings, time.perf_counter() - start)

    def judge(
        self,
        extraction: Extraction,
        explain: bool | None = None,
        explain_dir: str | os.PathLike | None = None,
        thumbnails: bool | None = None,
        uncertainty: int | None = None,
    ) -> Prediction:
        """The second stage of :meth:`scan`: the model (and the speech companion) on what :meth:`extract`
        read; arguments as in :meth:`scan`. ``timings["total"]`` adds the seconds of both stages."""
        call = self._for_call(explain, thumbnails, uncertainty)
        if extraction.by_speech:
            own, speech = dataclasses.replace(extraction, by_speech=False), self.speech.detector
            return speech.judge(own, call.explain, explain_dir, call.thumbnails, call.uncertainty)
        if extraction.failure is not None:
            return extraction.failure
        timings = dict(extraction.timings)
        start = time.perf_counter() - extraction.seconds  # as if one process did both stages
        try:
            clip = extraction.clip
            score = functools.partial(self.score, clip, speech=False, uncertainty=call.uncertainty)
            scores = hear_beside(self.speech, clip, score, timings)
            pred = dataclasses.replace(scores.prediction(self.thresholds, self.name), kind=extraction.kind)
            pred = self._abstain(pred, clip)
            if call.explain or call.thumbnails:
                pred = self._illustrate(scores, pred, call.explain, explain_dir, timings)
        except Exception as e:  # noqa: BLE001 - a bad file becomes a status, never a crash
            return self._failure(extraction.path, e, timings, start)
        timings["total"] = time.perf_counter() - start
        return dataclasses.replace(pred, timings=_ordered(timings))

    def score(
        self,
        clip: Clip,
        modality_mask: str | None = None,
        batch_size: int = 8,
        temperature: float | None = None,
        speech: bool = True,
        uncertainty: int | None = None,
    ) -> ClipScores:
        """Score a prepared clip (a cache entry, or what :meth:`scan` extracted) with this model.

        Args:
            clip: the clip.
            modality_mask: ``None``, ``"video"`` or ``"audio"`` (modality ablation).
            batch_size: windows per forward pass.
            temperature: override the checkpoint's temperature (1.0 gives raw logits to fit it on).
            speech: also score a video's speech with the speech companion, if any (fused p_fake;
                :attr:`ClipScores.logit` stays this model's own).
            uncertainty: ``N`` stochastic passes over the same windows (default: the detector's).
        """
        from dfdetect.infer.score import score_clip
        from dfdetect.infer.speech import canonical_audio

        if clip.kind == MediaKind.AUDIO and clip.speech and self.checkpoint is not None:
            clip = canonical_audio(clip, self.checkpoint.input_codec)  # a speech model's one codec
        scores = score_clip(
            self.model,
            clip,
            self.preprocess,
            temperature=self.temperature if temperature is None else temperature,
            aggregation=self.aggregation,
            device=self.device,
            modality_mask=modality_mask,
            batch_size=batch_size,
            uncertainty=self.options.uncertainty if uncertainty is None else uncertainty,
            uncertainty_method=self.options.uncertainty_method,
        )
        return self._hear(scores, modality_mask) if speech else scores

    def _abstain(self, pred: Prediction, clip: Clip) -> Prediction:
        """``uncertain`` instead of ``fake`` for footage unlike the model's training (the checkpoint's
        ``calibration["abstain"]`` rule, :func:`dfdetect.infer.aggregate.abstain`); others unchanged."""
        from dfdetect.infer.aggregate import abstain

        rule = self.checkpoint.calibration.get("abstain") if self.checkpoint is not None else None
        return abstain(pred, clip, rule) if rule else pred

    def _speech_only(self, path: str) -> bool:
        """True for an audio-only file when this model cannot hear but has a speech companion."""
        if self.speech is None or MediaKind.AUDIO in self.kinds:
            return False
        from dfdetect.io.video import MediaError, inspect_media

        try:
            return inspect_media(path)[0] == MediaKind.AUDIO
        except MediaError:  # unreadable: the usual path reports it
            return False

    def _hear(self, scores: ClipScores, modality_mask: str | None) -> ClipScores:
        """Add the speech companion's scores of a scored video's speech (fused in the prediction)."""
        if self.speech is None or modality_mask is not None or scores.decisive is None:
            return scores
        if scores.clip.kind != MediaKind.VIDEO or not scores.clip.has_usable_audio:
            return scores
        scores.heard = self.speech.hear(scores.clip)
        return scores

    def scan_many(
        self,
        paths: Iterable[str | os.PathLike],
        explain: bool | None = None,
        explain_dir: str | os.PathLike | None = None,
        progress: bool = True,
        thumbnails: bool | None = None,
    ) -> Iterator[Prediction]:
        """Scan files, folders and glob patterns one by one (a tqdm bar on stderr; arguments as in
        :meth:`scan`); arguments that match nothing yield an ``unreadable`` prediction saying so."""
        from tqdm import tqdm

        found, missing = expand_inputs(paths)
        for text in missing:
            message = "no such file, or no media files matched; check the path or pattern"
            yield Prediction(path=text, status=Status.UNREADABLE, message=message, model=self.name)
        bar = tqdm(found, desc="scan", unit="file", disable=not progress, dynamic_ncols=True)
        for item in bar:
            bar.set_postfix_str(Path(item).name[-40:])
            sub = Path(explain_dir) / _safe_stem(item) if explain_dir is not None else None
            yield self.scan(item, explain=explain, explain_dir=sub, thumbnails=thumbnails)

    # -- stages ----------------------------------------------------------------------------------

    _timed = staticmethod(timed_stage)

    def _extract(self, path: str, timings: dict[str, float]) -> tuple[Clip, MediaKind]:
        """(clip to score, kind of the file): extract_clip with its stage seconds merged into ``timings``."""
        from dfdetect.data.extract import extract_clip

        t = time.perf_counter()
        stages: dict[str, float] = {}
        sees = bool(self.modalities & {"video", "frequency"})
        detector = self.face_detector if sees else None
        try:
            clip = extract_clip(path, self.prepare_config, detector, stages, kinds=self.kinds, faces=sees)
        finally:
            timings.update({k: float(v) for k, v in stages.items() if k != "total"})
            timings["prepare"] = time.perf_counter() - t
        kind = clip.kind
        if kind == MediaKind.VIDEO and not sees:
            clip = dataclasses.replace(clip, kind=MediaKind.AUDIO)  # a model that only hears: the soundtrack
        return clip, kind

    def _illustrate(
        self,
        scores: ClipScores,
        pred: Prediction,
        explain: bool,
        out_dir: str | os.PathLike | None,
        timings: dict[str, float],
    ) -> Prediction:
        """Thumbnails (computed once) and, with ``explain``, the explanation of ``scores``."""
        from dfdetect.infer.explain import explain_scores, thumbnail_extras, thumbnails_of, waveform_envelope

        extras = dict(pred.extras)
        thumbs = thumbnails_of(scores.clip)
        if thumbs:
            extras["thumbnails"] = thumbnail_extras(thumbs, out_dir)
        if extras.get("audio_windows"):  # an audio file, or a video whose speech was scored
            extras["waveform"] = waveform_envelope(scores.clip.audio, scores.clip.sample_rate)
        if explain and scores.decisive is not None and scores.clip.faces:
            t = time.perf_counter()
            if self._twin is None:  # an ONNX model: its .pt (when shipped) gives the heatmaps
                self._twin = torch_twin(self.model, self.checkpoint, self.device)
            explanation = explain_scores(self._twin, scores, self.preprocess, device=self.device)
            extras["explain"] = explanation.to_extras(out_dir)
            timings["explain"] = time.perf_counter() - t
        return dataclasses.replace(pred, extras=extras)

    def _failure(self, path: str, err: Exception, timings: dict[str, float], start: float) -> Prediction:
        from dfdetect.io.video import MediaError

        timings["total"] = time.perf_counter() - start
        timings = _ordered(timings)
        if isinstance(err, MediaError):
            status, message = Status(err.status), str(err)
        else:
            log.warning("scan of %s failed: %s: %s", path, type(err).__name__, err)
            log.debug("traceback of the failed scan of %s", path, exc_info=err)
            status, message = Status.ERROR, f"unexpected {type(err).__name__}: {err}"
        kind = getattr(err, "kind", None) or kind_of_name(path)
        return Prediction(path, status, kind, message=message, timings=timings, model=self.name)


_STAGES = ("decode", "detect", "track_crop", "audio", "prepare", "model", "speech", "explain", "total")


def load_speech_branch(
    speech: str | os.PathLike | None,
    checkpoint: Checkpoint | None,
    device: str = "cpu",
    options: ScanOptions | None = None,
) -> SpeechBranch | None:
    """The speech companion to use with ``checkpoint``.

    Args:
        speech: ``"auto"`` (the checkpoint's ``companions["speech"]``, none if it names none), a speech
            model name or checkpoint path (overrides the checkpoint's), or None (no speech branch).
        checkpoint: the video model's checkpoint (None for a model built in memory).
        device: where to run the speech model.
        options: the video detector's options (the speech model shares their verdict band).

    Raises:
        ModelNotFoundError: the speech model is not installed.
        CheckpointError: it is not an audio-only model, or no real-voice ceiling is known for it.
    """
    companion = checkpoint.companions.get("speech") if checkpoint is not None else None
    if speech is None or (speech == "auto" and companion is None):
        return None
    spec = companion["model"] if speech == "auto" else os.fspath(speech)
    p0 = companion.get("p0") if companion is not None and spec == companion["model"] else None
    path, name = resolve_model(spec, onnx=runtime_of(checkpoint) != "torch")  # the video model's runtime
    only = ScanOptions((options or ScanOptions()).thresholds, speech=None)  # the band is shared
    detector = Detector.from_checkpoint(path, name=name, device=device, options=only)
    if detector.modalities != {"audio"}:
        raise CheckpointError(f"speech model {name!r} ({path}) is not an audio-only model")
    p0 = p0 if p0 is not None else detector.checkpoint.real_voice_ceiling
    if p0 is None:
        raise CheckpointError(
            f"speech model {name!r} ({path}) records no real-voice ceiling (calibration.real_voice_ceiling): "
            "measure it with `dfdetect calibrate-voice CONFIG --model NAME --write`, or pass p0 in the video "
            "checkpoint's companions"
        )
    from dfdetect.infer.speech import SpeechBranch

    return SpeechBranch(detector, float(p0))


def _ordered(timings: dict[str, float]) -> dict[str, float]:
    """Stage seconds in pipeline order, rounded to 0.1 ms."""
    keys = [k for k in _STAGES if k in timings] + [k for k in timings if k not in _STAGES]
    return {k: round(float(timings[k]), 4) for k in keys}


def kind_of_name(path: str | os.PathLike) -> MediaKind:
    """The kind a file's extension suggests (for files that could not be opened); video by default."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return MediaKind.IMAGE
    return MediaKind.AUDIO if suffix in AUDIO_EXTENSIONS else MediaKind.VIDEO


def _safe_stem(path: str) -> str:
    stem = Path(path).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "video"


def load_detector(
    name_or_path: str | os.PathLike | None = None, device: str = "auto", onnx: bool = True, **kwargs: Any
) -> Detector:
    """Load a :class:`Detector` by checkpoint path, model name, or ``None`` for the default model.

    Args:
        name_or_path: a checkpoint (``.pt``) or ONNX export (``.onnx``) path, a model name, or None.
        device: ``auto``, ``cpu`` or ``cuda``.
        onnx: for a name with both forms, the ``.onnx`` (onnxruntime, no torch; the default) or, False,
            the ``.pt`` (needed for Grad-CAM heatmaps and dropout uncertainty).
        **kwargs: :class:`Detector` arguments: ``name``, ``options`` (a
            :class:`~dfdetect.infer.options.ScanOptions`) and its fields as overrides (``thresholds=``...).

    Raises:
        ModelNotFoundError: unknown name or missing file (the message lists the available names).
        dfdetect.checkpoint.CheckpointError: the file is not a readable dfdetect checkpoint.
    """
    path, name = resolve_model(name_or_path, onnx=onnx)
    kwargs.setdefault("name", name)
    return Detector.from_checkpoint(path, device=device, **kwargs)
