"""Real-voice ceiling ``p0`` of a speech model: the scan score that only 5 % of held-out real voices exceed.

The real files of the speaker-disjoint held-out splits of a speech experiment are scanned exactly as
``dfdetect scan`` scans audio (16 kHz mono, VAD, the windows that overlap speech, the model's own codec,
mean window logit). Only the first ``seconds`` of each file are read (default: one window of the model, 4
s for AASIST, 10 s for the Whisper judge), to bound CPU time; one window spreads wider than a mean over
many, so the ceiling errs on the safe side. Fit it on real speech of many sources the model never trained
on (``data.manifests``: the speech corpus's real sources), not one dataset's speakers: a ceiling from few
sources is crossed by many real voices of others. ``p0`` is the ``quantile`` (0.95) of those scores with
each real source weighing the same (:func:`dfdetect.metrics.source_quantile`; a source is the repository a
corpus file came from, else its dataset), so a few large sources do not set it. The fusion of a video's
scores lets only a voice above ``p0`` raise the verdict (``infer/speech.py``), so a video checkpoint's
speech companion needs it: ``dfdetect calibrate-voice --write`` records it in the speech model's
checkpoint (``calibration.real_voice_ceiling``, with how it was measured)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dfdetect.constants import VERDICT_BAND
from dfdetect.metrics import anchoring_temperature, held_out_exceedance, source_quantile


@dataclass
class VoiceCeiling:
    """``p0`` and how it was measured (``info``), with every real file's score and the files skipped."""

    p0: float
    info: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)


def measure_ceiling(
    config: str | os.PathLike,
    model: str,
    splits: Sequence[str] = ("val",),
    seconds: float | None = None,
    quantile: float = 0.95,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> VoiceCeiling:
    """Scan the real voices of ``splits`` of the speech experiment ``config`` (+ dotted ``overrides``)
    with ``model``, reading ``seconds`` of each (default: one window of the model)."""
    from tqdm import tqdm

    from dfdetect.config import ConfigError, apply_overrides, load_yaml_tree
    from dfdetect.data.speech import SpeechConfig, speech_splits
    from dfdetect.infer.pipeline import load_detector

    section = apply_overrides(load_yaml_tree(config), overrides).get("data") or {}
    try:
        data = SpeechConfig.model_validate(section)
    except ValueError as e:  # pydantic's ValidationError
        raise ConfigError(f"{config}: its data section is not a speech data section: {e}") from None
    held_out = speech_splits(data)
    rows = [r for s in splits for r in held_out[s] if r.label == 0]
    if not rows:
        raise ValueError(f"{config}: no real voices in the split(s) {', '.join(splits)}")
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.infer.lookup import resolve_model

    ckpt = Checkpoint.load(resolve_model(model, onnx=False)[0])
    _refuse_trained_voices(ckpt, data, splits)
    if seconds is None:
        seconds = ckpt.preprocess.segment_seconds
    detector = load_detector(model, device="cpu", max_duration=seconds, onnx=False)
    scores, skipped = {}, []
    for row in tqdm(rows, desc="real voices", unit="file", disable=not progress):
        pred = detector.scan(row.path)
        if pred.p_fake is None:
            skipped.append({"path": row.path, "status": str(pred.status)})
        else:
            scores[row.path] = float(pred.p_fake)
    values = np.array(list(scores.values()))
    source_of = {r.path: r.source or r.dataset for r in rows}
    sources = [source_of[path] for path in scores]
    info = {
        "quantile": quantile,
        "weighting": "each real source the same (its repository, else its dataset)",
        "sources": len(set(sources)),
        "n_real": int(values.size),
        "speakers": len({r.group for r in rows if r.path in scores}),
        "splits": list(splits),
        "data": [data.labels, *data.manifests],
        "seconds_per_file": round(seconds, 4),
        "temperature": detector.temperature,  # of the scores (p = sigmoid(logit / T))
        "command": "dfdetect calibrate-voice " + " ".join(f"--split {s}" for s in splits),
    }
    info["new_source_above"] = held_out_exceedance(values, sources, quantile)
    return VoiceCeiling(source_quantile(values, sources, quantile), info, scores, skipped)


def _refuse_trained_voices(ckpt: Any, data: Any, splits: Sequence[str]) -> None:
    """Raise ValueError when ``splits`` hold the training voices of ``ckpt``: the same labelled files or
    catalogue manifests, split the same way, and the ``train`` split asked for."""
    trained = (ckpt.train_config or {}).get("data") or {}
    files = {os.path.realpath(f) for f in [trained.get("labels"), *(trained.get("manifests") or [])] if f}
    given = {os.path.realpath(f) for f in [data.labels, *data.manifests] if f}
    if "train" in splits and files & given:
        raise ValueError(
            f"{ckpt.path} was trained on the train split of {', '.join(sorted(files & given))}: those voices "
            "are not held out. Its training wrote a ceiling from them scored out of fold; measure on --split "
            "val or test, or point data.labels / data.manifests at data it never trained on"
        )


def anchored(ceiling: VoiceCeiling, at: float = VERDICT_BAND[1]) -> VoiceCeiling:
    """The ceiling after the temperature that puts it at ``at`` (the verdict band's upper edge): ``T' = T *
    logit(p0) / logit(at)``, so a voice is called ``fake`` on its own only above the ceiling, i.e. by ~5 %
    of real voices of many sources; the ranking (AUC) is unchanged. ``info["temperature"]`` holds ``T'``.

    Raises:
        ValueError: ``p0`` is not above 0.5 (no positive temperature moves it to ``at``).
    """
    from dfdetect.infer.aggregate import logit, sigmoid

    if not 0.5 < ceiling.p0 < 1.0 or not 0.5 < at < 1.0:
        raise ValueError(f"cannot anchor a ceiling of {ceiling.p0:.4f} at {at}: both must lie in (0.5, 1)")
    temperature = float(ceiling.info["temperature"])
    t = anchoring_temperature(temperature * float(logit(ceiling.p0)), at)
    scale = temperature / t
    scores = {k: float(sigmoid(logit(v) * scale)) for k, v in ceiling.scores.items()}
    info = {**ceiling.info, "anchored_at": at, "temperature": t, "temperature_before": temperature}
    return VoiceCeiling(at, info, scores, ceiling.skipped)


def write_ceiling(model: str, ceiling: VoiceCeiling) -> str:
    """Record ``ceiling.p0`` in the speech model's ``.pt`` checkpoint (atomically), with the temperature of
    an :func:`anchored` ceiling; returns its path."""
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.infer.lookup import resolve_model

    path, _ = resolve_model(model, onnx=False)
    ckpt = Checkpoint.load(path)
    if "anchored_at" in ceiling.info:
        ckpt = ckpt.with_temperature(ceiling.info["temperature"])
    ckpt.with_real_voice_ceiling(round(ceiling.p0, 4), ceiling.info).save(path)
    return str(path)
