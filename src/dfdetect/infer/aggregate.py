"""Aggregation of many scores into one, and the rules that turn a clip's window outputs into its score.

Scores are windows of one face track (-> track score), frames of one track (attention pooling),
or seconds of a timeline. :func:`aggregate` runs the same strategies on probabilities
(``space="prob"``) or on logits (``space="logit"``); the scan core aggregates **logits** and applies the
calibration temperature once at the end (``p = sigmoid(logit / T)``), so no probability is ever turned
back into a logit.

Strategies:

- ``mean``: arithmetic mean (weighted mean when ``weights`` are given).
- ``max``: the most suspicious score.
- ``topk``: mean of the ``k`` highest scores (``k`` an int, or a fraction in (0, 1) of the scores,
  at least one).
- ``attention``: weighted mean with ``weights`` (e.g. a model's ``frame_attention``); without
  weights, a soft maximum: weights = softmax of the logits, so confident fake scores dominate
  without a single outlier deciding alone as with ``max``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

STRATEGIES = ("mean", "max", "topk", "attention")
_EPS = 1e-6


def logit(p: np.ndarray | float) -> np.ndarray:
    """Inverse sigmoid, with probabilities clipped to [1e-6, 1 - 1e-6] so the result is finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def _check(scores: np.ndarray, space: str) -> None:
    if scores.size == 0:
        raise ValueError("aggregate() got no scores: there is nothing to aggregate")
    if not np.all(np.isfinite(scores)):
        raise ValueError("aggregate() got NaN or infinite scores: check the model outputs")
    if space == "prob" and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(
            "aggregate(space='prob') needs probabilities in [0, 1]; pass space='logit' for logits"
        )


def _topk_count(n: int, k: int | float) -> int:
    if isinstance(k, float) and 0 < k < 1:
        return max(1, int(np.ceil(k * n)))
    if int(k) < 1:
        raise ValueError(f"topk needs k >= 1 (or a fraction in (0, 1)), got {k}")
    return min(n, int(k))


def aggregate(
    scores: Sequence[float] | np.ndarray,
    strategy: str = "mean",
    k: int | float = 3,
    weights: Sequence[float] | np.ndarray | None = None,
    space: str = "prob",
) -> float:
    """Aggregate 1-D ``scores`` into one value with ``strategy``.

    Args:
        scores: probabilities (``space="prob"``) or logits (``space="logit"``), any length >= 1.
        strategy: one of :data:`STRATEGIES` (see the module docstring).
        k: for ``topk``: how many of the highest scores to average (int), or a fraction (0 < k < 1).
        weights: non-negative weights aligned with ``scores`` (``mean``/``attention``); need not sum to 1.
        space: ``"prob"`` or ``"logit"``: the space the scores are in and the result is returned in.

    Returns:
        The aggregated score, in the same space as ``scores``.

    Raises:
        ValueError: unknown strategy/space, empty or non-finite scores, bad weights.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown aggregation {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if space not in ("prob", "logit"):
        raise ValueError(f"space must be 'prob' or 'logit', got {space!r}")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)  # [N]
    _check(s, space)
    if strategy == "max":
        return float(s.max())
    if strategy == "topk":
        n = _topk_count(s.size, k)
        return float(np.sort(s)[-n:].mean())
    if weights is None and strategy == "attention":
        z = s if space == "logit" else logit(s)
        w = np.exp(z - z.max())  # softmax over the logits
    elif weights is None:
        return float(s.mean())
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != s.shape or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise ValueError(
                f"weights must be {s.size} finite non-negative numbers with a positive sum "
                f"(got shape {w.shape})"
            )
    return float((w * s).sum() / w.sum())


# ---------------------------------------------------------------------------------------------
# Clip rules (all on raw logits of :class:`dfdetect.infer.score.StreamOutputs`)
# ---------------------------------------------------------------------------------------------

Segment = tuple[float, float, float]  # (t0, t1, score)


def track_logit(stream: Any, strategy: str, k: int | float = 3) -> float:
    """Raw logit of one stream: its windows' logits aggregated with ``strategy``.

    ``attention`` pools the model's ``frame_logits`` with its ``frame_attention`` when it has them,
    else it is a soft maximum over the windows.
    """
    frame_logits, att = stream.head("frame_logits"), stream.head("frame_attention")
    if strategy == "attention" and frame_logits is not None and att is not None:
        weights = np.clip(att, 0, None).ravel()
        return aggregate(frame_logits.ravel(), "attention", weights=weights, space="logit")
    return aggregate(stream.head("logit"), strategy, k=k, space="logit")


def stream_logit(stream: Any, strategy: str, k: int | float = 3, audio: bool = False) -> float:
    """Raw logit of a stream: :func:`track_logit` of a face track; the windows of an audio stream
    aggregated with ``strategy`` (``attention`` is their mean: audio windows have no attention)."""
    if not audio:
        return track_logit(stream, strategy, k)
    strategy = "mean" if strategy == "attention" else strategy
    return aggregate(stream.head("logit"), strategy, k=k, space="logit")


def stream_segments(stream: Any, head: str = "segment_logits") -> list[Segment]:
    """(t0, t1, logit) per segment of every window (``head``, else the whole window's logit).

    Segments are cut at the window's last real frame: padding of a short track scores no time.
    """
    seg, logits = stream.head(head), stream.head("logit")
    out: list[Segment] = []
    for w, win in enumerate(stream.windows):
        a, b, ts = float(win.t0), float(win.t1), win.timestamps
        real_end = min(b, float(ts[win.n_real - 1]) + (b - a) / len(ts))
        if seg is None:
            out.append((a, real_end, float(logits[w])))
            continue
        edges = np.linspace(a, b, seg.shape[1] + 1)
        out.extend(
            (float(edges[i]), min(float(edges[i + 1]), real_end), float(seg[w, i]))
            for i in range(seg.shape[1])
            if edges[i] < real_end - 1e-6
        )
    return out


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Length of the intersection of ``[a0, a1]`` and ``[b0, b1]``."""
    return max(0.0, min(a1, b1) - max(a0, b0))


def timeline(
    segs: dict[int, list[Segment]], main: list[int], end: float, temperature: float
) -> list[Segment]:
    """Per-second (t0, t1, calibrated p): overlap-weighted mean segment logit per track, max over ``main``."""
    out = []
    for s in range(int(np.ceil(end))):
        a, b = float(s), min(float(s + 1), end)
        per_track = []
        for tid in main:
            w = np.array([overlap(a, b, s0, s1) for s0, s1, _ in segs[tid]])
            if w.sum() > 1e-6:
                per_track.append(aggregate([z for _, _, z in segs[tid]], "mean", weights=w, space="logit"))
        if per_track:
            out.append((a, b, round(float(sigmoid(max(per_track) / temperature)), 5)))
    return out


def fuse_speech(p_visual: float, p_audio: float | None, p0: float) -> dict[str, Any]:
    """The one rule that fuses a video's visual score with its speech model's score (issue 10).

    ``p_fake = 1 - (1 - p_visual) * (1 - p_audio+)``, ``p_audio+ = clip((p_audio - p0) / (1 - p0), 0, 1)``.

    Why this form:

    - **Only evidence of a fake voice counts.** The speech model is not calibrated on our data and scores
      many real voices well above 0.5 (AASIST-L: AUC 0.78 on held-out speakers). ``p0`` is its *real-voice
      ceiling*: the score that only 5 % of held-out real voices exceed. At or below it the audio term is
      exactly 0, so a real voice never moves the score: the presence of audio alone cannot make a video
      look faker (or more real) than its face does.
    - **Either modality can expose a fake.** A cloned voice laid over a real face is a fake even though
      every frame is real; a face swap with the original voice is a fake even though the voice is real.
      The noisy-OR of two independent pieces of evidence is fake when either is, never lowers the visual
      score (``p_fake >= p_visual``), and needs no joint training data (none exists for the companion).
    - The excess is rescaled to [0, 1] so that a voice the speech model is sure about (p_audio = 1) makes
      the clip fake on its own.

    Args:
        p_visual: calibrated p_fake of the video model.
        p_audio: p_fake of the speech model over the clip's speech (None: no speech was scored).
        p0: the speech model's real-voice ceiling, in [0, 1).

    Returns:
        ``{"p_fake", "visual", "audio", "audio_excess", "p0", "decided_by"}``: ``decided_by`` is
        ``"audio"`` when the audio term is the larger piece of evidence, else ``"visual"`` (also when
        there is no audio term: no speech, or a voice at or below the ceiling).
    """
    if not 0.0 <= p0 < 1.0:
        raise ValueError(f"the real-voice ceiling p0 must be in [0, 1), got {p0}")
    pv = float(np.clip(p_visual, 0.0, 1.0))
    excess = 0.0 if p_audio is None else float(np.clip((float(p_audio) - p0) / (1.0 - p0), 0.0, 1.0))
    return {
        "p_fake": 1.0 - (1.0 - pv) * (1.0 - excess),
        "visual": pv,
        "audio": None if p_audio is None else float(p_audio),
        "audio_excess": excess,
        "p0": float(p0),
        "decided_by": "audio" if excess > pv else "visual",
    }


INTERVAL_LEVEL = 0.9  # the uncertainty interval: 5th to 95th percentile of the passes' p_fake


def spread(samples: Sequence[float] | np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, ...]:
    """``(mean, std, low, high)`` of the ``N`` passes' scores of one clip (or one second).

    ``std`` is the sample standard deviation (``ddof=1``); ``[low, high]`` the central ``level`` interval:
    the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles, linearly interpolated between passes
    (with few passes it lies inside the extremes).
    """
    s = np.asarray(samples, dtype=np.float64).reshape(-1)  # [N]
    if s.size < 2 or not np.all(np.isfinite(s)):
        raise ValueError(f"a spread needs at least 2 finite scores, got {s.size}")
    low, high = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return float(s.mean()), float(s.std(ddof=1)), float(low), float(high)


def crosses_band(low: float, high: float, band: tuple[float, float]) -> bool:
    """The uncertainty rule of a verdict (the one place it is defined).

    An interval ``[low, high]`` of p_fake *crosses* the verdict band ``(lo, hi)`` when it reaches both
    sides of it: ``low <= lo`` (its low end alone would be judged real) and ``high >= hi`` (its high end
    alone would be judged fake), and it has a positive width. The passes then disagree on the verdict, so
    the verdict is ``uncertain`` whatever the point score says. An interval that only reaches into the
    band from one side (e.g. ``[0.50, 0.90]`` for the band ``(0.35, 0.65)``) leaves the verdict as it is.
    """
    lo, hi = band
    return low <= lo and high >= hi and high > low


def suspicious(timeline: list[Segment], fake_p: float, most: int = 3) -> list[Segment]:
    """Runs of consecutive seconds that would be judged fake on their own (calibrated p >= ``fake_p``),
    as (t0, t1, peak p), highest peaks first (at most ``most``)."""
    runs: list[list[float]] = []
    for a, b, p in timeline:
        if p < fake_p:
            continue
        if runs and abs(runs[-1][1] - a) < 1e-6:
            runs[-1][1], runs[-1][2] = b, max(runs[-1][2], p)
        else:
            runs.append([a, b, p])
    runs.sort(key=lambda r: -r[2])
    return [(r[0], r[1], r[2]) for r in runs[:most]]


def frame_logits(stream: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-frame ``(times [F], logits [F], attention [F] or None)`` of a face stream: the frame head
    (else the window's logit) averaged over the windows that cover each frame; padding excluded."""
    heads, att = stream.head("frame_logits"), stream.head("frame_attention")
    window_z = stream.head("logit")
    acc: dict[float, list[tuple[float, float]]] = {}
    for w, win in enumerate(stream.windows):
        for j, t in enumerate(win.timestamps[: win.n_real]):
            z = float(heads[w, j]) if heads is not None else float(window_z[w])
            a = float(att[w, j]) if att is not None else 1.0
            acc.setdefault(round(float(t), 3), []).append((z, a))
    times = np.array(sorted(acc))
    z = np.array([np.mean([v[0] for v in acc[t]]) for t in times])
    a = np.array([np.mean([v[1] for v in acc[t]]) for t in times]) if att is not None else None
    return times, z, a


def abstention(clip: Any, rule: dict[str, float] | None) -> str | None:
    """Why a clip lies outside what the model was trained on, so that it may not be called ``fake``
    (None: it does not). ``rule`` comes from the checkpoint's ``calibration["abstain"]``: ``min_face_px``
    (side of the main face in the original frame, median over its frames) and ``min_sharpness`` (median
    variance of the Laplacian of its crops: blur and heavy re-compression lower it)."""
    if not rule or not getattr(clip, "faces", None):
        return None
    face = clip.faces[0]  # the largest-ranked track
    margin = float((clip.params or {}).get("margin", 1.3))
    side = float(np.median((face.crop_boxes[:, 2] - face.crop_boxes[:, 0]) / margin))
    sharpness = float(np.median(face.blur)) if len(face.blur) else float("inf")
    reasons = []
    if side < float(rule.get("min_face_px", 0.0)):
        least = float(rule["min_face_px"])
        reasons.append(f"the face is {side:.0f} px, smaller than the {least:.0f} px the model knows")
    if sharpness < float(rule.get("min_sharpness", 0.0)):
        reasons.append(
            f"the face is blurrier or more compressed (sharpness {sharpness:.0f}) than the footage the model "
            f"was trained on (>= {rule['min_sharpness']:.0f})"
        )
    return "; ".join(reasons) or None


def abstain(prediction: Any, clip: Any, rule: dict[str, float] | None) -> Any:
    """``prediction`` with a ``fake`` verdict turned ``uncertain`` (message says why) when
    :func:`abstention` finds the clip unlike the training footage; any other prediction unchanged."""
    import dataclasses

    from dfdetect.types import Verdict

    if prediction.verdict != Verdict.FAKE:
        return prediction
    why = abstention(clip, rule)
    if why is None:
        return prediction
    message = "; ".join(x for x in (prediction.message, f"uncertain rather than fake: {why}") if x)
    return dataclasses.replace(prediction, verdict=Verdict.UNCERTAIN, message=message)
