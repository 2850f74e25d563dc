"""The typed scoring result shared by scan, explain and eval: raw outputs per window, then decisions.

:class:`StreamOutputs` holds one scored stream's raw model outputs window by window (a face track, or the
audio of an audio file); :class:`ClipScores` holds every stream of a clip plus what was decided from them
(the decisive track, the timeline, ...) and turns into the JSON-ready
:class:`~dfdetect.types.Prediction`. Scores stay logits until :meth:`ClipScores.calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dfdetect.constants import MAX_SUSPICIOUS, VERDICT_BAND
from dfdetect.infer.aggregate import (
    INTERVAL_LEVEL,
    Segment,
    aggregate,
    crosses_band,
    frame_logits,
    fuse_speech,
    overlap,
    sigmoid,
    spread,
    stream_logit,
    stream_segments,
    suspicious,
)
from dfdetect.infer.aggregate import timeline as seconds_timeline
from dfdetect.types import Clip, FaceCrops, Prediction, Status, TrackScore, Uncertainty, Verdict

AUDIO_STREAM = -1  # track id of the audio stream of an audio file


@dataclass
class StreamOutputs:
    """Raw (uncalibrated) model outputs of one scored stream, window by window.

    A stream is one face track (``face`` set) or the audio of an audio file (``face`` None,
    ``track_id`` = :data:`AUDIO_STREAM`). Arrays are aligned on the window axis ``W``.
    """

    track_id: int
    face: FaceCrops | None
    windows: list[Any] = field(default_factory=list)  # [W] data.windows.Window (kept for explain)
    heads: dict[str, np.ndarray] = field(default_factory=dict)  # head -> [W, ...] logits / attention
    passes: list[dict[str, np.ndarray]] = field(default_factory=list)  # [N] stochastic passes, as heads

    def pass_view(self, i: int) -> StreamOutputs:
        """This stream as stochastic pass ``i`` saw it (same windows, that pass's outputs as heads)."""
        return StreamOutputs(self.track_id, self.face, self.windows, self.passes[i])

    @property
    def t0(self) -> np.ndarray:  # [W] window starts, seconds
        return np.array([w.t0 for w in self.windows], dtype=np.float64)

    @property
    def t1(self) -> np.ndarray:  # [W] window ends, seconds
        return np.array([w.t1 for w in self.windows], dtype=np.float64)

    @property
    def n_real(self) -> list[int]:  # [W] frames of each window that are not padding
        return [int(w.n_real) for w in self.windows]

    def head(self, name: str) -> np.ndarray | None:
        """``[W, ...]`` outputs of head ``name``, or None when the model has no such head."""
        return self.heads.get(name)

    @property
    def size(self) -> float:
        """Mean face size (pixels), 0 for the audio stream."""
        return self.face.track.mean_size if self.face is not None else 0.0


@dataclass
class HeardSpeech:
    """What the speech companion of a video model found in a video's audio (see :mod:`dfdetect.infer.speech`).

    Attributes:
        model: the speech model's name.
        p0: its real-voice ceiling (the fusion's ``p0``, :func:`~dfdetect.infer.aggregate.fuse_speech`).
        scores: its :class:`ClipScores` of the clip's audio (``no_speech`` when there was none).
        seconds: time it took.
    """

    model: str
    p0: float
    scores: ClipScores
    seconds: float = 0.0

    @property
    def p_audio(self) -> float | None:
        """The speech model's p_fake over the clip's speech (None when no speech was scored)."""
        return self.scores.p_fake

    def windows(self) -> list[list[float]]:
        """``[t0, t1, p]`` per scored speech window (the speech model's calibrated window scores)."""
        return self.scores.audio_windows()


@dataclass
class ClipScores:
    """What scoring one clip found: raw outputs per window plus the decisions made from them.

    Shared by scan (:meth:`prediction`), explain (per-window outputs, frame curves) and eval. Scores
    are logits; :meth:`calibrate` applies the temperature (``p = sigmoid(logit / T)``).

    Attributes:
        clip: the scored clip.
        status: ``ok``/``no_audio`` when scored, else why not (``no_face``, ``no_speech``, ...).
        message: what happened, for people.
        streams: raw outputs per face track (or of the audio stream), ranked as in the clip.
        temperature, aggregation, mask: how the scores were made.
        track_logits: aggregated raw logit per stream (track id -> logit).
        decisive: the track whose score is the clip's (None when not scored).
        main: tracks allowed to decide (large faces and the speaking face).
        speaking: the track matched to the speech (best audio-visual agreement), if known.
        sync: audio-visual agreement in [0, 1] per track over its windows with speech.
        segments: (t0, t1, logit) per segment of every window, per track.
        timeline: per-second (t0, t1, calibrated p) over the main tracks.
        modality: raw probabilities of the model's modality heads for the deciding track.
        heard: the speech companion's scores of a video's audio (None: no companion, or not run).
        k: ``k`` of the ``topk`` aggregation.
        pass_method: ``dropout`` or ``tta`` when the streams hold stochastic passes (uncertainty), else None.
    """

    clip: Clip
    status: Status
    message: str
    streams: list[StreamOutputs] = field(default_factory=list)
    temperature: float = 1.0
    aggregation: str = "mean"
    mask: str | None = None
    track_logits: dict[int, float] = field(default_factory=dict)
    decisive: int | None = None
    main: list[int] = field(default_factory=list)
    speaking: int | None = None
    sync: dict[int, float] = field(default_factory=dict)
    segments: dict[int, list[Segment]] = field(default_factory=dict)
    timeline: list[Segment] = field(default_factory=list)
    modality: dict[str, float] = field(default_factory=dict)
    heard: HeardSpeech | None = None
    k: int | float = 3
    pass_method: str | None = None

    @property
    def logit(self) -> float | None:
        """Raw (T = 1) logit of this model for the clip; what its temperature is fitted on."""
        return None if self.decisive is None else self.track_logits[self.decisive]

    @property
    def p_model(self) -> float | None:
        """Calibrated p_fake of this model alone (a video: the visual score of the speech fusion)."""
        return None if self.logit is None else round(float(self.calibrate(self.logit)), 6)

    @property
    def fusion(self) -> dict[str, Any] | None:
        """:func:`~dfdetect.infer.aggregate.fuse_speech` of this model's score and the heard speech."""
        if self.heard is None or self.p_model is None:
            return None
        return fuse_speech(self.p_model, self.heard.p_audio, self.heard.p0)

    @property
    def p_fake(self) -> float | None:
        """Calibrated probability that the clip is fake (fused with the heard speech, if any)."""
        fused = self.fusion
        return self.p_model if fused is None else round(fused["p_fake"], 6)

    def calibrate(self, logits: float | np.ndarray) -> np.ndarray:
        """``sigmoid(logits / temperature)``."""
        return sigmoid(np.asarray(logits, dtype=np.float64) / self.temperature)

    @property
    def n_passes(self) -> int:
        """Stochastic passes held by the streams (0: scored without uncertainty)."""
        return min((len(s.passes) for s in self.streams), default=0) if self.pass_method else 0

    def _fused(self, p: float | np.ndarray, p_audio: float | None) -> float:
        if self.heard is None or p_audio is None:
            return float(p)
        return fuse_speech(float(p), p_audio, self.heard.p0)["p_fake"]

    def pass_scores(self) -> tuple[np.ndarray, list[list[Segment]]]:
        """``(p [N], timelines)``: each stochastic pass's calibrated p_fake and per-second timeline, made by
        the same rules as the clip's (most suspicious main track; fused with the heard speech)."""
        audio = self.clip.kind == "audio"
        end = self.timeline[-1][1] if self.timeline else 0.0
        heard = self.heard.p_audio if self.heard is not None else None
        seconds = {round(a, 3): p for a, _, p in self.heard.scores.timeline} if heard is not None else {}
        ps, lines = [], []
        for i in range(self.n_passes):
            views = {s.track_id: s.pass_view(i) for s in self.streams if s.track_id in self.main}
            z = max(stream_logit(v, self.aggregation, self.k, audio) for v in views.values())
            ps.append(self._fused(self.calibrate(z), heard))
            segs = {tid: stream_segments(v) for tid, v in views.items()}
            line = seconds_timeline(segs, self.main, end, self.temperature) if end else []
            lines.append([(a, b, self._fused(p, seconds.get(round(a, 3)))) for a, b, p in line])
        return np.asarray(ps, dtype=np.float64), lines

    def uncertainty(self, thresholds: tuple[float, float] = VERDICT_BAND) -> Uncertainty | None:
        """The :class:`~dfdetect.types.Uncertainty` of p_fake over the stochastic passes (None without)."""
        if self.n_passes < 2 or self.decisive is None:
            return None
        ps, lines = self.pass_scores()
        mean, std, low, high = spread(ps)
        per_second = []
        for j, (a, b, _) in enumerate(lines[0]):
            _, s_std, s_low, s_high = spread([line[j][2] for line in lines])
            per_second.append((a, b, round(s_std, 5), round(s_low, 5), round(s_high, 5)))
        return Uncertainty(
            method=self.pass_method, passes=len(ps), mean=round(mean, 6), std=round(std, 6),
            low=round(low, 6), high=round(high, 6), level=INTERVAL_LEVEL,
            crosses_band=crosses_band(low, high, thresholds),
            samples=[round(float(p), 6) for p in ps], timeline=per_second,
        )  # fmt: skip

    def stream(self, track_id: int) -> StreamOutputs | None:
        return next((s for s in self.streams if s.track_id == track_id), None)

    def frame_curve(self, track_id: int) -> dict[str, Any]:
        """``{track_id, t, index, p, attention}``: calibrated per-frame p of a face track (``index`` =
        row of the clip's crops)."""
        s = self.stream(track_id)
        if s is None or s.face is None:
            return {"track_id": track_id, "t": [], "index": [], "p": [], "attention": []}
        times, z, att = frame_logits(s)
        stamps = s.face.track.timestamps
        index = np.searchsorted(stamps, times - 1e-3).clip(0, len(stamps) - 1)
        return {
            "track_id": track_id,
            "t": times.tolist(),
            "index": index.tolist(),
            "p": np.round(self.calibrate(z), 5).tolist(),
            "attention": [] if att is None else np.round(att, 5).tolist(),
        }

    def prediction(self, thresholds: tuple[float, float] = VERDICT_BAND, model: str = "") -> Prediction:
        """The JSON-ready :class:`Prediction` of these scores (facts for reports in ``extras``)."""
        if self.decisive is None:
            return Prediction(
                path=self.clip.path,
                kind=self.clip.kind,
                status=self.status,
                message=self.message,
                model=model,
            )
        p_fake = float(self.p_fake)
        timeline, extras = self.timeline, self._extras()
        modality, message, speech = dict(self.modality), self.message, self._speech()
        if self.heard is not None:
            timeline, extras, modality, message, speech = self._heard_parts(extras, modality)
        verdict, unc = verdict_for(p_fake, thresholds), self.uncertainty(thresholds)
        if unc is not None and unc.crosses_band:
            verdict = Verdict.UNCERTAIN
            message += (
                f"; uncertain: the 90 % interval of p_fake over {unc.passes} {unc.method} passes"
                f" ({unc.low:.2f}-{unc.high:.2f}) reaches both sides of the verdict band"
            )
        return Prediction(
            path=self.clip.path,
            kind=self.clip.kind,
            status=self.status,
            p_fake=p_fake,
            verdict=verdict,
            message=message,
            modality=modality,
            tracks=[self._track_score(s) for s in self.streams if s.face is not None],
            timeline=timeline,
            suspicious=suspicious(timeline, thresholds[1], MAX_SUSPICIOUS),
            speech=speech,
            model=model,
            extras=extras,
            fusion=self._fusion_record(),
            uncertainty=unc,
        )

    def _fusion_record(self) -> dict[str, Any]:
        fused = self.fusion
        if fused is None:
            return {}
        rounded = {k: round(v, 6) if isinstance(v, float) else v for k, v in fused.items()}
        return {**rounded, "speech_model": self.heard.model, "speech_status": str(self.heard.scores.status)}

    def _heard_parts(self, extras: dict[str, Any], modality: dict[str, float]) -> tuple:
        """(timeline, extras, modality, message, speech) of a video whose speech was heard.

        The per-second timeline is fused second by second with the same rule as the clip (seconds without
        a scored speech window keep the visual score); the visual and audio timelines stay in extras.
        """
        heard = self.heard
        audio = {round(a, 3): p for a, _, p in heard.scores.timeline}
        timeline = [
            (a, b, round(fuse_speech(p, audio.get(round(a, 3)), heard.p0)["p_fake"], 5))
            for a, b, p in self.timeline
        ]
        extras = {
            **extras,
            "visual_timeline": self.timeline,
            "audio_timeline": heard.scores.timeline,
            "audio_windows": heard.windows(),
        }
        if heard.p_audio is None:
            note = f"speech model {heard.model}: {heard.scores.message}; scored from video only"
            return self.timeline, extras, modality, f"{self.message}; {note}", []
        if "audio" in modality:
            modality["audio_av"] = modality.pop("audio")  # the video model's own audio head
        modality["audio"] = round(float(heard.p_audio), 5)
        fused = self.fusion
        judged = "fake" if fused["audio_excess"] > 0 else "within real voices"
        note = (
            f"speech model {heard.model}: audio p_fake {heard.p_audio:.2f} over"
            f" {len(heard.scores.clip.speech)} speech segment(s) ({judged}; real-voice ceiling"
            f" {heard.p0:.2f}); visual {fused['visual']:.2f};"
            f" decided by {fused['decided_by']}"
        )
        return timeline, extras, modality, f"{self.message}; {note}", heard.scores._speech()

    def audio_windows(self) -> list[list[float]]:
        """``[t0, t1, calibrated p]`` per window of the audio stream (an audio clip's; empty otherwise)."""
        s = self.stream(AUDIO_STREAM)
        if s is None or s.head("logit") is None:
            return []
        p = self.calibrate(s.head("logit").reshape(len(s.windows), -1)[:, 0])  # [W]
        pairs = zip(s.windows, p, strict=True)
        return [[round(w.t0, 4), round(w.t1, 4), round(float(q), 5)] for w, q in pairs]

    def _track_score(self, s: StreamOutputs) -> TrackScore:
        track = s.face.track
        box = np.median(track.boxes, axis=0) if len(track.boxes) else np.zeros(4)
        return TrackScore(
            track_id=s.track_id,
            p_fake=round(float(self.calibrate(self.track_logits[s.track_id])), 6),
            start=float(track.timestamps[0]),
            end=float(track.timestamps[-1]),
            n_frames=len(track.timestamps),
            box=tuple(round(float(v), 2) for v in box),
            speaking=s.track_id == self.speaking,
            sync_score=None if s.track_id not in self.sync else round(self.sync[s.track_id], 5),
        )

    def _speech(self) -> list[Segment]:
        """(t0, t1, calibrated p) of each speech segment of an audio clip (overlap-weighted logits)."""
        if self.clip.kind != "audio" or AUDIO_STREAM not in self.segments:
            return []
        segs, out = self.segments[AUDIO_STREAM], []
        for s0, s1 in self.clip.speech:
            w = np.array([overlap(s0, s1, a, b) for a, b, _ in segs])
            if w.sum() > 1e-6:
                z = aggregate([z for _, _, z in segs], "mean", weights=w, space="logit")
                out.append((round(s0, 3), round(s1, 3), round(float(self.calibrate(z)), 5)))
        return out

    def _extras(self) -> dict[str, Any]:
        calibrated = {
            str(tid): [[round(a, 4), round(b, 4), round(float(self.calibrate(z)), 5)] for a, b, z in v]
            for tid, v in self.segments.items()
        }
        return {
            "logit": float(self.logit),
            "temperature": float(self.temperature),
            "aggregation": self.aggregation,
            "modality_mask": self.mask,
            "decisive_track": self.decisive,
            "main_tracks": self.main,
            "n_windows": sum(len(s.windows) for s in self.streams),
            "segment_scores": calibrated,  # (t0, t1, calibrated p) per track
            "frame_scores": [self.frame_curve(s.track_id) for s in self.streams if s.face is not None],
            "duration": self.clip.info.duration,
            **({"audio_windows": self.audio_windows()} if self.clip.kind == "audio" else {}),
        }


def verdict_for(p_fake: float, thresholds: tuple[float, float] = VERDICT_BAND) -> Verdict:
    """``real`` at or below ``thresholds[0]``, ``fake`` at or above ``thresholds[1]``, else ``uncertain``
    (a band :class:`~dfdetect.infer.options.ScanOptions` checked)."""
    lo, hi = thresholds
    if p_fake >= hi:
        return Verdict.FAKE
    if p_fake <= lo:
        return Verdict.REAL
    return Verdict.UNCERTAIN
