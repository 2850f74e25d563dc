"""Windows -> model -> typed scores: the one place that runs a model over a prepared clip.

:func:`run_windows` cuts a :class:`~dfdetect.types.Clip` into model windows (one stream per face track,
or one audio stream for an audio file), runs the model in batches and keeps every raw output head per
window (:class:`StreamOutputs`). Nothing is converted to probabilities here: scores stay logits until
:mod:`dfdetect.infer.aggregate` applies the calibration temperature once, at the end.

:func:`score_clip` applies the rules of :mod:`dfdetect.infer.aggregate` and returns the typed
:class:`~dfdetect.infer.result.ClipScores` that scan, eval and explain all read, so ``--explain`` needs no
second forward pass over the windows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from dfdetect.config import PreprocessConfig
from dfdetect.constants import DEFAULT_FPS, MAIN_FACE_RATIO
from dfdetect.infer.aggregate import (
    aggregate,
    overlap,
    sigmoid,
    stream_logit,
    stream_segments,
    timeline,
    track_logit,
)
from dfdetect.infer.result import AUDIO_STREAM, ClipScores, StreamOutputs
from dfdetect.infer.uncertainty import PassPlan, plan_passes, stochastic_outputs
from dfdetect.types import Clip, Status

MODALITY_MASKS = (None, "video", "audio")
HEADS = (
    "logit",
    "segment_logits",
    "video_logit",
    "audio_logit",
    "audio_segment_logits",
    "sync_logit",
    "frame_logits",
    "frame_attention",
    "frame_sync_logits",
)


def model_inputs(chunk: list[Any], pre: PreprocessConfig, device: str, mask: str | None, no_audio: bool):
    """Batched, normalised tensors of ``chunk`` windows with the modality ``mask`` applied."""
    if device == "numpy":
        return _array_inputs(chunk, pre, mask, no_audio)
    import torch

    from dfdetect.data.windows import window_tensors

    tensors = [window_tensors(w, pre) for w in chunk]
    frames = torch.stack([t["frames"] for t in tensors]).to(device)  # [B, T, 3, H, W]
    audio = torch.stack([t["audio"] for t in tensors]).to(device)  # [B, S]
    amask = torch.stack([t["audio_mask"] for t in tensors]).to(device)  # [B]
    mouths = torch.stack([t["mouths"] for t in tensors]).to(device)  # [B, T, 3, m, m]
    if no_audio or mask == "video":
        amask, audio = torch.zeros_like(amask), torch.zeros_like(audio)
    if mask == "audio":
        frames = torch.zeros_like(frames)  # normalised zeros = the mean image: no visual evidence
        mouths = torch.zeros_like(mouths)
    return {"frames": frames, "audio": audio, "audio_mask": amask, "mouths": mouths}


def _array_inputs(chunk: list[Any], pre: PreprocessConfig, mask: str | None, no_audio: bool) -> dict:
    """:func:`model_inputs` as numpy arrays, for a model that takes them (``numpy_inputs``; no torch)."""
    from dfdetect.data.windows import window_arrays

    arrays = [window_arrays(w, pre) for w in chunk]
    x = {k: np.stack([a[k] for a in arrays]) for k in ("frames", "audio", "audio_mask", "mouths")}
    if no_audio or mask == "video":
        x["audio_mask"], x["audio"] = np.zeros_like(x["audio_mask"]), np.zeros_like(x["audio"])
    if mask == "audio":
        x["frames"], x["mouths"] = np.zeros_like(x["frames"]), np.zeros_like(x["mouths"])
    return x


def _call(model: Any, x: dict[str, Any]) -> dict[str, np.ndarray]:
    """One forward pass of a batch of model inputs; numpy outputs per head in :data:`HEADS`."""
    out = model(x["frames"], audio=x["audio"], audio_mask=x["audio_mask"], mouths=x["mouths"])
    return {k: _numpy(out[k]) for k in HEADS if out.get(k) is not None}


def _numpy(value: Any) -> np.ndarray:
    """A model output (torch tensor or numpy array) as a float32 numpy array."""
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    return value.detach().float().cpu().numpy()


def forward_passes(
    model: Any,
    windows: list[Any],
    pre: PreprocessConfig,
    device: str,
    batch_size: int,
    mask: str | None,
    no_audio: bool,
    plan: PassPlan | None = None,
) -> Iterator[list[dict[str, np.ndarray]]]:
    """Per batch of ``windows``: ``[outputs of the model as it is, then one per pass of plan]``.

    Each batch's inputs are built once and shared by every pass (see :mod:`dfdetect.infer.uncertainty`).
    A model with ``numpy_inputs`` (one on onnxruntime) gets numpy arrays, and torch is not imported.
    """
    arrays = getattr(model, "numpy_inputs", False) and plan is None
    with contextlib.nullcontext() if arrays else _inference_mode():
        for b, i in enumerate(range(0, len(windows), batch_size)):
            x = model_inputs(windows[i : i + batch_size], pre, "numpy" if arrays else device, mask, no_audio)
            outs = [_call(model, x)]
            if plan is not None:
                outs += stochastic_outputs(model, _call, x, plan, b, pre)
            yield outs


def _inference_mode() -> Any:
    import torch

    return torch.inference_mode()


def _streams(clip: Clip, pre: PreprocessConfig, mouths: bool = True) -> list[StreamOutputs]:
    """Empty streams with their windows: one per face track, or the audio stream of an audio clip
    (``mouths``: cut the mouth crops that only a sync head reads)."""
    from dfdetect.data.windows import audio_windows, clip_windows

    if clip.kind == "audio":  # only the windows that overlap speech are judged (and computed)
        windows = [w for w in audio_windows(clip, pre) if _hears_speech(w, clip.speech)]
        return [StreamOutputs(AUDIO_STREAM, None, windows)] if windows else []
    streams = {face.track.track_id: StreamOutputs(face.track.track_id, face) for face in clip.faces}
    for w in clip_windows(clip, pre, mouths=mouths):
        streams[w.track_id].windows.append(w)
    return [s for s in streams.values() if s.windows]


def _hears_speech(window: Any, speech: list[tuple[float, float]]) -> bool:
    return any(overlap(window.t0, window.t1, a, b) > 0 for a, b in speech)


def run_windows(
    model: Any,
    clip: Clip,
    pre: PreprocessConfig,
    device: str = "cpu",
    batch_size: int = 8,
    mask: str | None = None,
    plan: PassPlan | None = None,
) -> list[StreamOutputs]:
    """Run every window of every stream of ``clip`` through ``model``; raw outputs grouped by stream.

    Args:
        model: a dfdetect model (``forward(frames, audio, audio_mask, mouths) -> dict``), in eval mode.
        clip: the prepared clip (video, image or audio).
        pre: the checkpoint's preprocessing.
        device: the device the model is on.
        batch_size: windows per forward pass.
        mask: ``None`` (fused), ``"video"`` (audio masked out) or ``"audio"`` (frames zeroed).
        plan: stochastic passes (uncertainty) to run on the same inputs; their outputs go to
            ``StreamOutputs.passes``.

    Returns:
        The streams that have at least one window, ranked as in the clip.
    """
    if mask not in MODALITY_MASKS:
        raise ValueError(f"modality_mask must be None, 'video' or 'audio', got {mask!r}")
    streams = _streams(clip, pre, mouths="sync" in getattr(model, "modalities", {"sync"}))
    windows = [w for s in streams for w in s.windows]
    if not windows:
        return []
    model.eval()
    no_audio = not clip.has_usable_audio
    batches = list(forward_passes(model, windows, pre, device, batch_size, mask, no_audio, plan))
    for j in range(len(batches[0])):  # j = 0: the model as it is; 1..N: the stochastic passes
        merged = {k: np.concatenate([b[j][k] for b in batches]) for k in batches[0][j]}
        start = 0
        for s in streams:
            n = len(s.windows)
            heads = {k: v[start : start + n] for k, v in merged.items()}
            start += n
            if j == 0:
                s.heads = heads
            else:
                s.passes.append(heads)
    return streams


# ---------------------------------------------------------------------------------------------
# Scoring rules
# ---------------------------------------------------------------------------------------------


def score_clip(
    model: Any,
    clip: Clip,
    pre: PreprocessConfig,
    temperature: float = 1.0,
    aggregation: str = "mean",
    device: str = "cpu",
    modality_mask: str | None = None,
    batch_size: int = 8,
    k: int | float = 3,
    uncertainty: int = 0,
    uncertainty_method: str = "auto",
) -> ClipScores:
    """Score one prepared clip (video, image or audio) with ``model``.

    How a clip's score is made: every window of every stream goes through the model
    (:func:`run_windows`); a stream's logit aggregates its windows (``aggregate.track_logit``);
    a video is as fake as its most suspicious *main* face (the speaking face, when known, and every
    track at least :data:`~dfdetect.constants.MAIN_FACE_RATIO` of the largest face's size: small
    background faces are scored and listed but do not decide); an audio clip is its windows that overlap
    speech (only those are computed). ``p_fake = sigmoid(logit / temperature)``; modality scores are raw
    probabilities of the model's ``video_logit``/``audio_logit``/``sync_logit`` heads.

    Args:
        model: a dfdetect model on ``device``.
        clip: the prepared clip (``data.extract.extract_clip`` or ``data.cache.read_entry``).
        pre: the checkpoint's preprocessing.
        temperature: calibration temperature.
        aggregation: window -> track strategy (``mean``, ``max``, ``topk``, ``attention``).
        device: torch device of the model.
        modality_mask: ``None`` (fused), ``"video"`` (audio masked out) or ``"audio"`` (frames zeroed).
        batch_size: windows per forward pass.
        k: ``k`` of the ``topk`` strategy.
        uncertainty: ``N`` more passes over the same windows (0: none) whose spread is the score's
            uncertainty (:meth:`ClipScores.uncertainty`); see :mod:`dfdetect.infer.uncertainty`.
        uncertainty_method: ``auto`` (Monte-Carlo dropout when the model has dropout, else test-time
            augmentation), ``dropout`` or ``tta``.

    Returns:
        The :class:`ClipScores` (``decisive`` None when the clip could not be scored; status says why).
    """
    if modality_mask not in MODALITY_MASKS:
        raise ValueError(f"modality_mask must be None, 'video' or 'audio', got {modality_mask!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    plan = plan_passes(model, uncertainty, uncertainty_method)
    base = {"temperature": float(temperature), "aggregation": aggregation, "mask": modality_mask}
    unscored = _unscorable(clip, modality_mask)
    if unscored is not None:
        return ClipScores(clip, *unscored, **base)
    base.update(k=k, pass_method=plan.method if plan else None)
    streams = run_windows(model, clip, pre, device, batch_size, modality_mask, plan)
    if not streams:
        msg = "no face track was long enough to score (no verdict): the faces were too short or too small"
        return ClipScores(clip, Status.NO_FACE, msg, **base)
    if clip.kind == "audio":
        return _assemble_audio(clip, streams[0], base, k)
    return _assemble(model, clip, streams, base, k)


def _unscorable(clip: Clip, mask: str | None) -> tuple[Status, str] | None:
    """(status, message) of a clip that cannot be scored, else None."""
    if clip.kind == "audio":
        if not clip.has_usable_audio:
            return Status.NO_SPEECH, f"the audio is {clip.audio_status}: nothing to score (no verdict)"
        if not clip.speech:
            return Status.NO_SPEECH, "no speech was found in the audio, so it was not scored (no verdict)"
        return None
    if not clip.faces:
        return Status.NO_FACE, _no_face_message(clip)
    if mask == "audio" and not clip.has_usable_audio:
        return Status.NO_AUDIO, "no audio to score in the audio-only ablation"
    return None


def _no_face_message(clip: Clip) -> str:
    what = "image" if clip.kind == "image" else "video"
    min_face = clip.params.get("min_face_size")
    w, h = clip.info.width, clip.info.height
    if min_face and min(w, h) < min_face:
        return (
            f"no face: the {what} is too small ({w}x{h} pixels; faces under {min_face} px are not scored),"
            " so it was not scored (no verdict)"
        )
    return f"no face was found in the {what}, so it was not scored (no verdict): check that a face is visible"


def _analysed_end(clip: Clip) -> float:
    """End (seconds) of the part of the clip that was prepared."""
    step = 1.0 / float(clip.params.get("fps", DEFAULT_FPS))
    ends = [float(f.track.timestamps[-1]) + step for f in clip.faces if len(f.track.timestamps)]
    if np.asarray(clip.audio).size and clip.sample_rate:
        ends.append(np.asarray(clip.audio).size / clip.sample_rate)
    end = max(ends) if ends else 0.0
    return min(end, clip.info.duration) if clip.info.duration and clip.info.duration > 0 else end


def _sync_scores(streams: list[StreamOutputs], clip: Clip, mask: str | None) -> dict[int, float]:
    """Audio-visual agreement per track over its windows that overlap speech (empty when unknown).

    ``sync_logit`` is read like every other logit: high = audio and lips disagree (fake); the
    agreement is ``1 - mean(sigmoid(sync_logit))``.
    """
    if not clip.has_usable_audio or mask is not None or not clip.speech:
        return {}
    scores = {}
    for s in streams:
        sync = s.head("sync_logit")
        if sync is None:
            return {}
        speech = [
            w
            for w, win in enumerate(s.windows)
            if any(overlap(win.t0, win.t1, a, b) > 0 for a, b in clip.speech)
        ]
        if speech:
            scores[s.track_id] = float(1.0 - sigmoid(sync[speech]).mean())
    return scores


def _main_tracks(streams: list[StreamOutputs], speaking: int | None) -> list[int]:
    biggest = max(s.size for s in streams)
    return [s.track_id for s in streams if s.size >= MAIN_FACE_RATIO * biggest or s.track_id == speaking]


def _modality(model: Any, scores: ClipScores, k: int | float) -> dict[str, float]:
    """Raw per-modality probabilities of the deciding track (audio/sync: of the speaking face if known)."""
    voice = scores.speaking if scores.speaking is not None else scores.decisive
    heads = {
        "visual": ("video_logit", scores.decisive),
        "audio": ("audio_logit", voice),
        "sync": ("sync_logit", voice),
    }
    strategy = scores.aggregation if scores.aggregation != "attention" else "mean"
    no_audio = not scores.clip.has_usable_audio or scores.mask == "video"
    out: dict[str, float] = {}
    for name, (head, tid) in heads.items():
        if (name != "visual" and no_audio) or (name == "visual" and scores.mask == "audio"):
            continue
        values = scores.stream(tid).head(head)
        if values is not None:
            out[name] = round(float(sigmoid(aggregate(values, strategy, k=k, space="logit"))), 5)
    mods = set(getattr(model, "modalities", set()) or set())
    if not out and mods and mods <= {"video", "frequency"}:
        out["visual"] = scores.p_fake
    elif not out and mods == {"audio"} and not no_audio:
        out["audio"] = scores.p_fake
    return out


def _assemble(model: Any, clip: Clip, streams: list[StreamOutputs], base: dict, k: int | float) -> ClipScores:
    """Decide a video's (or image's) score from the raw outputs of its face streams."""
    mask = base["mask"]
    logits = {s.track_id: track_logit(s, base["aggregation"], k) for s in streams}
    sync = _sync_scores(streams, clip, mask)
    speaking = max(sync, key=sync.get) if sync else None
    main = _main_tracks(streams, speaking)
    decisive = max(main, key=lambda tid: logits[tid])
    segs = {s.track_id: stream_segments(s) for s in streams}
    line = timeline(segs, main, _analysed_end(clip), base["temperature"]) if clip.kind == "video" else []
    status, message = _status_message(clip, mask, len(streams), decisive, speaking)
    scores = ClipScores(
        clip, status, message, streams, **base, track_logits=logits, decisive=decisive, main=main,
        speaking=speaking, sync=sync, segments=segs, timeline=line,
    )  # fmt: skip
    scores.modality = _modality(model, scores, k)
    return scores


def _assemble_audio(clip: Clip, stream: StreamOutputs, base: dict, k: int | float) -> ClipScores:
    """Score an audio clip from its windows (those with speech; the model's audio heads when fused)."""
    for heads in [stream.heads, *stream.passes]:
        if "audio_logit" in heads:
            heads["logit"] = heads["audio_logit"]
            if "audio_segment_logits" in heads:
                heads["segment_logits"] = heads["audio_segment_logits"]
    z = stream_logit(stream, base["aggregation"], k, audio=True)
    segs = {AUDIO_STREAM: stream_segments(stream)}
    n = len(clip.speech)
    message = f"scored from audio alone: {len(stream.windows)} window(s), {n} speech segment(s)"
    line = timeline(segs, [AUDIO_STREAM], _analysed_end(clip), base["temperature"])
    scores = ClipScores(
        clip, Status.OK, message, [stream], **base, track_logits={AUDIO_STREAM: z}, decisive=AUDIO_STREAM,
        main=[AUDIO_STREAM], segments=segs, timeline=line,
    )  # fmt: skip
    scores.modality = {"audio": scores.p_fake}
    return scores


def _status_message(clip: Clip, mask: str | None, n_tracks: int, decisive: int, speaking: int | None):
    parts = [f"{n_tracks} face track(s) scored; the score is that of track {decisive}"]
    if clip.kind == "image":
        return (
            Status.OK,
            f"still image: {n_tracks} face(s) scored as one-frame clips; the score is face {decisive}'s",
        )
    if speaking is not None:
        parts.append(f"track {speaking} is the speaking face")
    if mask == "video":
        parts.append("scored from video only (audio masked out: modality ablation)")
    elif mask == "audio":
        parts.append("scored from audio only (frames masked out: modality ablation)")
    if not clip.has_usable_audio:
        parts.append("the video has no usable audio (no stream or silence), so it was scored from video only")
        return Status.NO_AUDIO, "; ".join(parts)
    return Status.OK, "; ".join(parts)
