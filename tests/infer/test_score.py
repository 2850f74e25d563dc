"""infer.score.score_clip on clips built from real frames: statuses, rules, timeline, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfdetect.infer import score
from dfdetect.infer.result import verdict_for
from dfdetect.types import MediaKind, Prediction, Status, Verdict
from tests.eval.conftest import StubModel, make_clip


def score_clip(*args, **kwargs) -> Prediction:
    """The Prediction of infer.score.score_clip (its ClipScores, made JSON-ready)."""
    return score.score_clip(*args, **kwargs).prediction()


def _roundtrip(pred: Prediction) -> None:
    back = Prediction.from_dict(json.loads(json.dumps(pred.to_dict())))
    assert back == pred


def test_stub_scores_statuses_and_timeline(pre, clip):
    pred = score_clip(StubModel(pre.num_segments), clip, pre)
    assert pred.status == Status.OK
    assert 0 <= pred.p_fake <= 1 and pred.verdict == verdict_for(pred.p_fake)
    # per-second timeline covers the 3 s clip without gaps
    starts = [t0 for t0, _, _ in pred.timeline]
    assert starts == [0.0, 1.0, 2.0] and pred.timeline[-1][1] == pytest.approx(3.0, abs=0.25)
    assert set(pred.modality) == {"visual", "audio", "sync"}
    assert pred.tracks[0].speaking and pred.tracks[0].sync_score is not None
    assert pred.kind == MediaKind.VIDEO
    frames = pred.extras["frame_scores"][0]
    assert len(frames["t"]) == len(clip.faces[0].track.timestamps)  # every cached frame scored once
    assert pred.extras["segment_scores"]["0"]
    _roundtrip(pred)


def test_no_face_is_never_a_hidden_score(pre):
    pred = score_clip(StubModel(pre.num_segments), make_clip(faces=False), pre)
    assert pred.status == Status.NO_FACE and pred.p_fake is None and pred.verdict is None
    assert "no face" in pred.message
    _roundtrip(pred)


def test_no_audio_scores_video_only(pre):
    pred = score_clip(StubModel(pre.num_segments), make_clip(audio=False), pre)
    assert pred.status == Status.NO_AUDIO and pred.p_fake is not None
    assert "video only" in pred.message
    assert "audio" not in pred.modality and "sync" not in pred.modality
    assert not any(t.speaking for t in pred.tracks)
    audio_only = score_clip(StubModel(pre.num_segments), make_clip(audio=False), pre, modality_mask="audio")
    assert audio_only.status == Status.NO_AUDIO and audio_only.p_fake is None


def test_modality_masks_change_the_inputs(pre, clip):
    model = StubModel(pre.num_segments)
    fused = score_clip(model, clip, pre)
    video = score_clip(model, clip, pre, modality_mask="video")
    audio = score_clip(model, clip, pre, modality_mask="audio")
    assert video.p_fake == pytest.approx(fused.p_fake)  # the stub's fused logit ignores audio
    assert "audio" not in video.modality and "visual" not in audio.modality
    assert audio.p_fake == pytest.approx(0.5)  # zeroed frames: logit 0
    with pytest.raises(ValueError, match="modality_mask"):
        score_clip(model, clip, pre, modality_mask="text")


def test_video_rule_small_faces_do_not_decide(pre):
    model = StubModel(pre.num_segments)
    small = score_clip(model, make_clip(n_tracks=2, second_scale=0.3), pre)
    big = score_clip(model, make_clip(n_tracks=2, second_scale=0.9), pre)
    p = {t.track_id: t.p_fake for t in small.tracks}
    assert p[0] != p[1] and len(small.tracks) == 2
    if p[1] > p[0]:  # the background face is more suspicious: it only decides when it is large
        assert small.p_fake == pytest.approx(p[0])
        assert big.p_fake == pytest.approx(max(t.p_fake for t in big.tracks))
    assert big.extras["main_tracks"] == [0, 1]
    # the speaking face is the track with the best audio-visual agreement
    best = max(big.tracks, key=lambda t: t.sync_score)
    assert best.speaking and sum(t.speaking for t in big.tracks) == 1


def test_temperature_and_aggregations(pre, clip):
    model = StubModel(pre.num_segments)
    base = score_clip(model, clip, pre)
    hot = score_clip(model, clip, pre, temperature=4.0)
    z = base.extras["logit"]
    assert hot.p_fake == pytest.approx(1 / (1 + np.exp(-z / 4.0)), abs=1e-5)
    assert abs(hot.p_fake - 0.5) < abs(base.p_fake - 0.5)
    ps = {a: score_clip(model, clip, pre, aggregation=a).p_fake for a in ("mean", "max", "topk", "attention")}
    assert ps["max"] >= ps["topk"] >= ps["mean"] - 1e-9
    assert verdict_for(0.9) == Verdict.FAKE and verdict_for(0.1) == Verdict.REAL
    assert verdict_for(0.5) == Verdict.UNCERTAIN


def test_suspicious_segments_are_runs_of_seconds_judged_fake_on_their_own():
    from dfdetect.infer.aggregate import suspicious

    timeline = [(0.0, 1.0, 0.9), (1.0, 2.0, 0.7), (2.0, 3.0, 0.55), (3.0, 4.0, 0.95), (5.0, 6.0, 0.66)]
    assert suspicious(timeline, 0.65) == [(3.0, 4.0, 0.95), (0.0, 2.0, 0.9), (5.0, 6.0, 0.66)]
    assert suspicious(timeline, 0.99) == []


def test_scores_keep_every_window_and_stay_logits(pre, clip):
    """The typed result keeps each window's outputs; p_fake is sigmoid(logit / T) of the kept logits."""
    result = score.score_clip(StubModel(pre.num_segments), clip, pre, temperature=2.0)
    stream = result.stream(result.decisive)
    assert len(stream.windows) == len(stream.head("logit")) == stream.head("frame_logits").shape[0]
    assert result.p_fake == pytest.approx(1 / (1 + np.exp(-np.mean(stream.head("logit")) / 2.0)), abs=1e-6)
    curve = result.frame_curve(result.decisive)
    assert len(curve["p"]) == len(curve["t"]) and all(0 <= p <= 1 for p in curve["p"])


def test_image_clip_has_no_timeline(pre):
    import dataclasses

    image = dataclasses.replace(make_clip(seconds=0.1, audio=False), kind=MediaKind.IMAGE)
    pred = score_clip(StubModel(pre.num_segments), image, pre)
    assert pred.status == Status.OK and pred.kind == MediaKind.IMAGE and pred.p_fake is not None
    assert pred.timeline == [] and "image" in pred.message


def test_audio_clip_is_scored_from_speech_windows(pre):
    import dataclasses

    voice = dataclasses.replace(make_clip(faces=False), kind=MediaKind.AUDIO)
    pred = score_clip(StubModel(pre.num_segments), voice, pre)
    assert pred.status == Status.OK and pred.kind == MediaKind.AUDIO, pred.message
    assert pred.timeline and pred.speech and set(pred.modality) == {"audio"}
    assert all(0 <= p <= 1 for _, _, p in pred.speech)
    silent = dataclasses.replace(voice, speech=[])
    assert score_clip(StubModel(pre.num_segments), silent, pre).status == Status.NO_SPEECH
