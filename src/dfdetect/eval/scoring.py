"""Clip -> Prediction with a model: the one place that scores a prepared video (eval and scan use it).

How a video's score is made (all documented in the Prediction's ``extras``):

1. Every window of every face track (``data.dataset.clip_windows``) goes through the model in batches.
   A window's probability is ``sigmoid(logit)`` (raw, uncalibrated).
2. A track's probability aggregates its windows with :func:`dfdetect.eval.aggregate.aggregate`
   (``mean``/``max``/``topk``; ``attention`` pools the model's ``frame_logits`` with its
   ``frame_attention`` when it has them, else a soft maximum over the windows).
3. **Video rule**: a video is as fake as its most suspicious *main* face. Main faces are the speaking
   face (when known) and every track whose mean face size is at least :data:`MAIN_FACE_RATIO` of the
   largest track's. Small background faces are scored and listed but do not decide: their crops are
   low-resolution and raise false alarms. ``extras["logit"]`` is the raw video logit.
4. Calibration: ``p_fake = sigmoid(logit / temperature)`` (temperature from the checkpoint); the same
   temperature is applied to track scores and to the timeline. Modality scores are raw probabilities
   of the model's ``video_logit``/``audio_logit``/``sync_logit`` heads (not calibrated).
5. Verdict: ``real`` when ``p_fake <= lo``, ``fake`` when ``p_fake >= hi``, else ``uncertain``.

``sync_logit`` is read like every other logit: high = audio and lips disagree (fake). A track's
``sync_score`` is the agreement ``1 - mean(sigmoid(sync_logit))`` over its windows that overlap speech;
the speaking face is the track with the highest agreement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dfdetect.config import PreprocessConfig
from dfdetect.eval.aggregate import aggregate, logit, sigmoid
from dfdetect.types import AudioStatus, Clip, Prediction, Status, TrackScore, Verdict

MAIN_FACE_RATIO = 0.5  # tracks smaller than this share of the largest face do not decide the video
MAX_SUSPICIOUS = 3
MODALITY_MASKS = (None, "video", "audio")
_HEADS = (
    "logit",
    "segment_logits",
    "video_logit",
    "audio_logit",
    "sync_logit",
    "frame_logits",
    "frame_attention",
)


@dataclass
class _Track:
    """Raw (uncalibrated) model outputs of one face track, window by window."""

    face: Any  # FaceCrops
    t0: list[float] = field(default_factory=list)  # [W] window starts
    t1: list[float] = field(default_factory=list)  # [W] window ends
    times: list[np.ndarray] = field(default_factory=list)  # [W] x [T] frame timestamps
    n_real: list[int] = field(default_factory=list)  # [W] frames that are not padding
    out: dict[str, list[np.ndarray]] = field(default_factory=dict)  # head -> [W] x per-window array

    def head(self, name: str) -> np.ndarray | None:
        vals = self.out.get(name)
        return None if not vals else np.stack(vals)


def verdict_for(p_fake: float, thresholds: tuple[float, float] = (0.35, 0.65)) -> Verdict:
    """``real`` at or below ``thresholds[0]``, ``fake`` at or above ``thresholds[1]``, else ``uncertain``."""
    lo, hi = thresholds
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"thresholds must satisfy 0 <= lo <= hi <= 1, got {thresholds}")
    if p_fake >= hi:
        return Verdict.FAKE
    if p_fake <= lo:
        return Verdict.REAL
    return Verdict.UNCERTAIN


def calibrate(p_raw: float | np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of raw probabilities: ``sigmoid(logit(p) / T)``."""
    return sigmoid(logit(p_raw) / float(temperature))


def _no_audio(clip: Clip) -> bool:
    return clip.audio_status != AudioStatus.OK or np.asarray(clip.audio).size == 0


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", "") or type(model).__name__)


def _batches(model: Any, tensors: list[dict], device: str, batch_size: int, mask: str | None, no_audio: bool):
    """Yield the model's outputs (numpy, per head) for ``tensors`` in batches."""
    import torch

    for i in range(0, len(tensors), batch_size):
        chunk = tensors[i : i + batch_size]
        frames = torch.stack([torch.as_tensor(t["frames"]) for t in chunk]).to(device)  # [B, T, 3, H, W]
        audio = torch.stack([torch.as_tensor(t["audio"]) for t in chunk]).to(device)  # [B, S]
        amask = torch.as_tensor([bool(t["audio_mask"]) for t in chunk], device=device)  # [B]
        mouths = None
        if chunk[0].get("mouths") is not None:
            mouths = torch.stack([torch.as_tensor(t["mouths"]) for t in chunk]).to(device)  # [B, T, 3, m, m]
        if no_audio or mask == "video":
            amask = torch.zeros_like(amask)
            audio = torch.zeros_like(audio)
        if mask == "audio":
            frames = torch.zeros_like(frames)  # normalised zeros = the mean image: no visual evidence
            mouths = None if mouths is None else torch.zeros_like(mouths)
        out = model(frames, audio=audio, audio_mask=amask, mouths=mouths)
        yield {k: out[k].detach().float().cpu().numpy() for k in _HEADS if out.get(k) is not None}


def _run_model(model, clip, pre, device, batch_size, mask, no_audio) -> list[_Track]:
    """Run every window of every track; returns the raw outputs grouped by track (ranked as in the clip)."""
    import torch

    from dfdetect.data.dataset import clip_windows, window_tensors

    tracks = {face.track.track_id: _Track(face=face) for face in clip.faces}
    windows = clip_windows(clip, pre)
    tensors = [window_tensors(w, pre) for w in windows]
    model.eval()
    with torch.inference_mode():
        outs = list(_batches(model, tensors, device, batch_size, mask, no_audio))
    merged = {k: np.concatenate([o[k] for o in outs]) for k in (outs[0] if outs else {})}
    for j, w in enumerate(windows):
        tr = tracks[w.track_id]
        tr.t0.append(float(w.t0))
        tr.t1.append(float(w.t1))
        tr.times.append(np.asarray(w.timestamps, dtype=np.float64))
        tr.n_real.append(int(getattr(w, "n_real", len(w.timestamps))))
        for k, v in merged.items():
            tr.out.setdefault(k, []).append(v[j])
    return [t for t in tracks.values() if t.t0]


def _frame_scores(tr: _Track) -> dict[str, Any]:
    """Per-frame raw probabilities (frame head, else the window's) averaged over overlapping windows."""
    frame_logits, att = tr.head("frame_logits"), tr.head("frame_attention")
    window_p = sigmoid(tr.head("logit"))  # [W]
    acc: dict[float, list[tuple[float, float]]] = {}
    for w, ts in enumerate(tr.times):
        for j, t in enumerate(ts[: tr.n_real[w]]):
            p = float(sigmoid(frame_logits[w, j])) if frame_logits is not None else float(window_p[w])
            a = float(att[w, j]) if att is not None else 1.0
            acc.setdefault(round(float(t), 3), []).append((p, a))
    times = np.array(sorted(acc))
    index = np.searchsorted(tr.face.track.timestamps, times - 1e-3).clip(0, len(tr.face.track.timestamps) - 1)
    return {
        "track_id": tr.face.track.track_id,
        "t": times.tolist(),
        "index": index.tolist(),  # row of the cached crops
        "p": [round(float(np.mean([v[0] for v in acc[t]])), 5) for t in times],
        "attention": [round(float(np.mean([v[1] for v in acc[t]])), 5) for t in times]
        if att is not None
        else [],
    }


def _track_p(tr: _Track, strategy: str, k: int | float) -> float:
    """Raw probability of one track (see the module docstring, step 2)."""
    frame_logits, att = tr.head("frame_logits"), tr.head("frame_attention")
    if strategy == "attention" and frame_logits is not None and att is not None:
        return aggregate(sigmoid(frame_logits).ravel(), "attention", weights=np.clip(att, 0, None).ravel())
    return aggregate(sigmoid(tr.head("logit")), strategy, k=k)


def _segments(tr: _Track) -> list[tuple[float, float, float]]:
    """(t0, t1, raw p) per segment of every window (segment_logits, else the whole window).

    Segments are cut at the window's last real frame: padding of a short track scores no time.
    """
    seg = tr.head("segment_logits")
    logits = tr.head("logit")
    out = []
    for w, (a, b) in enumerate(zip(tr.t0, tr.t1, strict=True)):
        ts = tr.times[w]
        real_end = min(b, float(ts[tr.n_real[w] - 1]) + (b - a) / len(ts))
        if seg is None:
            out.append((a, real_end, float(sigmoid(logits[w]))))
            continue
        edges = np.linspace(a, b, seg.shape[1] + 1)
        out.extend(
            (float(edges[i]), min(float(edges[i + 1]), real_end), float(sigmoid(seg[w, i])))
            for i in range(seg.shape[1])
            if edges[i] < real_end - 1e-6
        )
    return out


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _sync_scores(tracks: list[_Track], clip: Clip, no_audio: bool, mask: str | None) -> dict[int, float]:
    """Audio-visual agreement per track over its windows that overlap speech (empty when unknown)."""
    if no_audio or mask is not None or not clip.speech:
        return {}
    scores = {}
    for tr in tracks:
        sync = tr.head("sync_logit")
        if sync is None:
            return {}
        speech = [
            w
            for w in range(len(tr.t0))
            if any(_overlap(tr.t0[w], tr.t1[w], s0, s1) > 0 for s0, s1 in clip.speech)
        ]
        if speech:
            scores[tr.face.track.track_id] = float(1.0 - sigmoid(sync[speech]).mean())
    return scores


def _analysed_end(clip: Clip) -> float:
    """End (seconds) of the part of the video that was prepared."""
    ends = [
        float(f.track.timestamps[-1]) + 1.0 / float(clip.params.get("fps", 5.0))
        for f in clip.faces
        if len(f.track.timestamps)
    ]
    if np.asarray(clip.audio).size and clip.sample_rate:
        ends.append(np.asarray(clip.audio).size / clip.sample_rate)
    end = max(ends) if ends else 0.0
    return min(end, clip.info.duration) if clip.info.duration and clip.info.duration > 0 else end


def _timeline(
    segs: dict[int, list], main: list[int], end: float, temperature: float
) -> list[tuple[float, float, float]]:
    """Per-second (t0, t1, p): overlap-weighted mean of a track's segments, max over main tracks."""
    out = []
    for s in range(int(np.ceil(end))):
        a, b = float(s), min(float(s + 1), end)
        per_track = []
        for tid in main:
            w = np.array([_overlap(a, b, s0, s1) for s0, s1, _ in segs[tid]])
            if w.sum() > 1e-6:
                per_track.append(aggregate([p for _, _, p in segs[tid]], "mean", weights=w))
        if per_track:
            out.append((a, b, round(float(calibrate(max(per_track), temperature)), 5)))
    return out


Segment = tuple[float, float, float]  # (t0, t1, p)


def _suspicious(timeline: list[Segment], fake_p: float) -> list[Segment]:
    """Runs of consecutive seconds that would be judged fake on their own (calibrated p >= ``fake_p``),
    as (t0, t1, peak p), highest peaks first."""
    runs: list[list[float]] = []
    for a, b, p in timeline:
        if p < fake_p:
            continue
        if runs and abs(runs[-1][1] - a) < 1e-6:
            runs[-1][1], runs[-1][2] = b, max(runs[-1][2], p)
        else:
            runs.append([a, b, p])
    runs.sort(key=lambda r: -r[2])
    return [(r[0], r[1], r[2]) for r in runs[:MAX_SUSPICIOUS]]


def _main_tracks(tracks: list[_Track], speaking: int | None) -> list[int]:
    sizes = {t.face.track.track_id: t.face.track.mean_size for t in tracks}
    biggest = max(sizes.values())
    return [tid for tid, s in sizes.items() if s >= MAIN_FACE_RATIO * biggest or tid == speaking]


def _modality(model, tracks, decide, speaking, p_fake, strategy, k, no_audio, mask) -> dict[str, float]:
    """Raw per-modality probabilities of the deciding track (audio/sync: of the speaking face if known)."""
    by_id = {t.face.track.track_id: t for t in tracks}
    out: dict[str, float] = {}
    voice = speaking if speaking is not None else decide
    heads = {
        "visual": ("video_logit", decide),
        "audio": ("audio_logit", voice),
        "sync": ("sync_logit", voice),
    }
    for name, (head, tid) in heads.items():
        if name != "visual" and (no_audio or mask == "video"):
            continue
        if name == "visual" and mask == "audio":
            continue
        values = by_id[tid].head(head)
        if values is not None:
            out[name] = round(
                aggregate(sigmoid(values), strategy if strategy != "attention" else "mean", k=k), 5
            )
    mods = set(getattr(model, "modalities", set()) or set())
    if not out and mods and mods <= {"video", "frequency"}:
        out["visual"] = p_fake
    elif not out and mods == {"audio"} and not no_audio:
        out["audio"] = p_fake
    return out


def _empty(clip: Clip, status: Status, message: str, model: Any, t_start: float) -> Prediction:
    return Prediction(
        path=clip.path,
        status=status,
        message=message,
        model=_model_name(model),
        timings={"score": round(time.perf_counter() - t_start, 4)},
    )


def score_clip(
    model: Any,
    clip: Clip,
    pre: PreprocessConfig,
    temperature: float = 1.0,
    aggregation: str = "mean",
    device: str = "cpu",
    modality_mask: str | None = None,
    thresholds: tuple[float, float] = (0.35, 0.65),
    batch_size: int = 8,
    k: int | float = 3,
) -> Prediction:
    """Score one prepared clip with ``model`` (see the module docstring for every rule).

    Args:
        model: a dfdetect model (``forward(frames, audio, audio_mask, mouths) -> dict``).
        clip: the prepared video (``data.prepare.prepare_clip`` or ``data.cache.read_entry``).
        pre: the checkpoint's preprocessing.
        temperature: calibration temperature (``train.checkpoint.temperature(state)``).
        aggregation: window -> track strategy (``mean``, ``max``, ``topk``, ``attention``).
        device: torch device for the model's inputs (the model must already be there).
        modality_mask: ``None`` (fused), ``"video"`` (audio masked out) or ``"audio"`` (frames zeroed).
        thresholds: ``(lo, hi)`` of the uncertain band.
        batch_size: windows per forward pass.
        k: ``k`` of the ``topk`` strategy.

    Returns:
        A :class:`Prediction`: status ``ok``/``no_audio`` with ``p_fake``, or ``no_face`` without a score.
    """
    if modality_mask not in MODALITY_MASKS:
        raise ValueError(f"modality_mask must be None, 'video' or 'audio', got {modality_mask!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t_start = time.perf_counter()
    no_audio = _no_audio(clip)
    if not clip.faces:
        msg = (
            "no face was found in the video, so it was not scored (no verdict): check that a face is visible"
        )
        return _empty(clip, Status.NO_FACE, msg, model, t_start)
    if no_audio and modality_mask == "audio":
        return _empty(clip, Status.NO_AUDIO, "no audio to score in the audio-only ablation", model, t_start)
    tracks = _run_model(model, clip, pre, device, batch_size, modality_mask, no_audio)
    if not tracks:
        msg = "no face track was long enough to score (no verdict): the faces were too short or too small"
        return _empty(clip, Status.NO_FACE, msg, model, t_start)
    return _assemble(
        model, clip, tracks, temperature, aggregation, k, modality_mask, thresholds, no_audio, t_start
    )


def _assemble(
    model, clip, tracks, temperature, strategy, k, mask, thresholds, no_audio, t_start
) -> Prediction:
    """Turn the raw outputs of every track into the Prediction."""
    raw = {t.face.track.track_id: _track_p(t, strategy, k) for t in tracks}
    sync = _sync_scores(tracks, clip, no_audio, mask)
    speaking = max(sync, key=sync.get) if sync else None
    main = _main_tracks(tracks, speaking)
    decide = max(main, key=lambda tid: raw[tid])
    p_fake = round(float(calibrate(raw[decide], temperature)), 6)
    segs = {t.face.track.track_id: _segments(t) for t in tracks}
    timeline = _timeline(segs, main, _analysed_end(clip), temperature)
    track_scores = [_track_score(t, raw, temperature, speaking, sync) for t in tracks]
    status, message = _status_message(no_audio, mask, len(tracks), decide, speaking)
    extras = {
        "logit": float(logit(raw[decide])),
        "temperature": float(temperature),
        "aggregation": strategy,
        "modality_mask": mask,
        "decisive_track": decide,
        "main_tracks": main,
        "n_windows": sum(len(t.t0) for t in tracks),
        "segment_scores": {str(tid): [[round(x, 4) for x in s] for s in v] for tid, v in segs.items()},
        "frame_scores": [_frame_scores(t) for t in tracks],
    }
    return Prediction(
        path=clip.path,
        status=status,
        p_fake=p_fake,
        verdict=verdict_for(p_fake, thresholds),
        message=message,
        modality=_modality(model, tracks, decide, speaking, p_fake, strategy, k, no_audio, mask),
        tracks=track_scores,
        timeline=timeline,
        suspicious=_suspicious(timeline, thresholds[1]),
        timings={"score": round(time.perf_counter() - t_start, 4)},
        model=_model_name(model),
        extras=extras,
    )


def _track_score(tr: _Track, raw: dict, temperature: float, speaking: int | None, sync: dict) -> TrackScore:
    tid = tr.face.track.track_id
    box = np.median(tr.face.track.boxes, axis=0) if len(tr.face.track.boxes) else np.zeros(4)
    return TrackScore(
        track_id=tid,
        p_fake=round(float(calibrate(raw[tid], temperature)), 6),
        start=float(tr.face.track.timestamps[0]),
        end=float(tr.face.track.timestamps[-1]),
        n_frames=len(tr.face.track.timestamps),
        box=tuple(round(float(v), 2) for v in box),
        speaking=tid == speaking,
        sync_score=None if tid not in sync else round(sync[tid], 5),
    )


def _status_message(no_audio: bool, mask: str | None, n_tracks: int, decide: int, speaking: int | None):
    parts = [f"{n_tracks} face track(s) scored; the score is that of track {decide}"]
    if speaking is not None:
        parts.append(f"track {speaking} is the speaking face")
    if mask == "video":
        parts.append("scored from video only (audio masked out: modality ablation)")
    elif mask == "audio":
        parts.append("scored from audio only (frames masked out: modality ablation)")
    if no_audio:
        parts.append("the video has no usable audio (no stream or silence), so it was scored from video only")
        return Status.NO_AUDIO, "; ".join(parts)
    return Status.OK, "; ".join(parts)
