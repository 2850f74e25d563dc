"""Uncertainty of a scan: stochastic passes (MC dropout / TTA) over shared inputs, the verdict rule, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dfdetect.infer import score
from dfdetect.infer.aggregate import crosses_band, spread
from dfdetect.infer.result import verdict_for
from dfdetect.infer.uncertainty import dropout_active, dropout_modules, plan_passes, tta_params
from dfdetect.types import Prediction, Status, Uncertainty, Verdict
from tests.conftest import media
from tests.eval.conftest import StubModel, make_clip


class NoisyStub(nn.Module):
    """The StubModel's scores plus a zero-mean term that only dropout makes non-zero (in eval: exactly 0).

    With ``p = 0.5`` over 4 units the term is large, so the passes spread widely around the score.
    """

    def __init__(self, num_segments: int, scale: float = 2.0) -> None:
        super().__init__()
        self.stub, self.scale = StubModel(num_segments), scale
        self.drop = nn.Dropout(0.5)
        self.norm = nn.BatchNorm1d(4)  # must stay in eval mode during the passes

    def forward(self, frames, audio=None, audio_mask=None, mouths=None):
        out = self.stub(frames, audio, audio_mask, mouths)
        b = frames.shape[0]
        noise = self.scale * (self.drop(torch.ones(b, 4)).mean(1) - 1.0)  # [B], 0 without dropout
        assert not self.norm.training, "BatchNorm must stay in eval mode"
        out["logit"] = out["logit"] + noise
        out["segment_logits"] = out["segment_logits"] + noise[:, None]
        return out


def test_spread_and_the_verdict_rule_on_hand_made_numbers() -> None:
    mean, std, low, high = spread([0.1, 0.2, 0.3, 0.4, 0.5])
    assert mean == pytest.approx(0.3) and std == pytest.approx(np.std([0.1, 0.2, 0.3, 0.4, 0.5], ddof=1))
    assert low == pytest.approx(0.12) and high == pytest.approx(0.48)  # 5th / 95th percentile, interpolated
    band = (0.35, 0.65)
    assert crosses_band(0.30, 0.70, band)  # reaches both sides: the passes disagree on the verdict
    assert crosses_band(0.35, 0.65, band)  # the edges count as real / fake, as in verdict_for
    assert not crosses_band(0.50, 0.90, band)  # reaches into the band from one side only
    assert not crosses_band(0.05, 0.60, band)
    assert not crosses_band(0.40, 0.60, band)  # inside the band (the mean is uncertain anyway)
    assert not crosses_band(0.5, 0.5, (0.5, 0.5))  # no width, no disagreement
    with pytest.raises(ValueError, match="at least 2"):
        spread([0.4])


def test_plan_picks_dropout_or_tta(pre) -> None:
    noisy, stub = NoisyStub(pre.num_segments), StubModel(pre.num_segments)
    assert plan_passes(noisy, 3).method == "dropout"
    assert plan_passes(stub, 3).method == "tta"  # no dropout: test-time augmentation
    assert plan_passes(noisy, 3, "tta").method == "tta"
    assert plan_passes(stub, 0) is None
    with pytest.raises(ValueError, match="at least 2"):
        plan_passes(stub, 1)
    with pytest.raises(ValueError, match="no dropout"):
        plan_passes(stub, 3, "dropout")
    params = tta_params(4)
    assert [p["flip"] for p in params] == [1.0, 0.0, 1.0, 0.0] and params == tta_params(4)
    assert all(0.8 <= p["scale"] <= 1.0 for p in params)


def test_dropout_is_switched_on_only_inside_the_passes(pre) -> None:
    model = NoisyStub(pre.num_segments).eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with dropout_active(model):
        assert all(m.training for m in dropout_modules(model)) and not model.norm.training
        assert not torch.backends.mha.get_fastpath_enabled()
    assert not any(m.training for m in model.modules())
    assert torch.backends.mha.get_fastpath_enabled() == fastpath


def test_mc_dropout_spread_and_verdict(pre, clip) -> None:
    model = NoisyStub(pre.num_segments)
    plain = score.score_clip(model, clip, pre)
    scores = score.score_clip(model, clip, pre, uncertainty=4)
    assert all(len(s.passes) == 4 for s in scores.streams)
    assert scores.p_fake == plain.p_fake, "the passes never change the score itself"
    u = scores.uncertainty()
    assert u.method == "dropout" and u.passes == 4 and u.std > 0
    assert u.low <= u.high and len(set(u.samples)) > 1
    assert score.score_clip(model, clip, pre, uncertainty=4).uncertainty() == u, "seeded: reproducible"
    assert len(u.timeline) == len(plain.timeline)
    assert all(lo <= hi and std >= 0 for _, _, std, lo, hi in u.timeline)
    p = scores.p_fake
    assert u.low < p - 0.01 and u.high > p + 0.01, "the noise spreads the passes on both sides of p"
    band = (p + 0.005, p + 0.01)  # p alone is real; the interval reaches both sides of the band
    assert verdict_for(p, band) == Verdict.REAL
    pred = scores.prediction(band)
    assert pred.verdict == Verdict.UNCERTAIN and pred.uncertainty.crosses_band
    assert "reaches both sides of the verdict band" in pred.message
    far = (min(u.high + 0.01, 0.99), min(u.high + 0.02, 1.0))  # the whole interval is below the band
    assert (
        scores.prediction(far).verdict == Verdict.REAL and not scores.prediction(far).uncertainty.crosses_band
    )


def test_tta_for_a_model_without_dropout_and_json_round_trip(pre, clip) -> None:
    scores = score.score_clip(StubModel(pre.num_segments), clip, pre, uncertainty=3)
    pred = scores.prediction()
    u = pred.uncertainty
    assert isinstance(u, Uncertainty) and u.method == "tta" and u.passes == 3 and u.std > 0
    back = Prediction.from_dict(json.loads(json.dumps(pred.to_dict())))
    assert back == pred and isinstance(back.uncertainty, Uncertainty)
    plain = score.score_clip(StubModel(pre.num_segments), clip, pre).prediction()
    assert plain.uncertainty is None and Prediction.from_dict(plain.to_dict()).uncertainty is None


def test_unscored_clip_has_no_uncertainty(pre) -> None:
    scores = score.score_clip(StubModel(pre.num_segments), make_clip(faces=False), pre, uncertainty=3)
    assert scores.status == Status.NO_FACE and scores.uncertainty() is None
    assert scores.prediction().uncertainty is None


def test_scan_shares_decoding_and_faces(detector, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real clip: one extraction and the same face detection as a plain scan; only the model reruns."""
    import dfdetect.data.extract as extract

    path = media("real/liveportrait_d0.mp4")  # 3 s, one face, no audio
    calls = {"extract": 0, "detect": 0, "model": 0}
    real_extract, det = extract.extract_clip, detector.face_detector
    real_detect, real_forward = det.detect, detector.model.forward

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(extract, "extract_clip", counted("extract", real_extract))
    monkeypatch.setattr(det, "detect", counted("detect", real_detect))
    monkeypatch.setattr(detector.model, "forward", counted("model", real_forward))
    plain = detector.scan(path)
    plain_calls = dict(calls)
    calls.update(extract=0, detect=0, model=0)
    pred = detector.scan(path, uncertainty=3)
    assert pred.status == Status.NO_AUDIO, pred.message
    assert calls["extract"] == 1 and calls["detect"] == plain_calls["detect"]
    assert calls["model"] == 4 * plain_calls["model"], "one plain pass + 3 stochastic ones per batch"
    assert pred.p_fake == plain.p_fake and plain.uncertainty is None
    u = pred.uncertainty
    assert u.method == "dropout" and u.std > 0, "the demo model has dropout"
    assert len(u.timeline) == len(pred.timeline) > 0
    assert not any(m.training for m in detector.model.modules()), "eval mode restored"


def test_cli_flag_table_and_report(tiny_checkpoint, capsys, tmp_path) -> None:
    from dfdetect.cli import main
    from dfdetect.cli.scan import table
    from dfdetect.infer.report import write_report

    clip = str(media("real/liveportrait_d0.mp4"))
    args = ["scan", "--no-progress", "--device", "cpu", clip, "--model", str(tiny_checkpoint)]
    code = main([*args, "--uncertainty", "3", "--json"])
    out = capsys.readouterr().out
    assert code in (0, 1)
    record = json.loads(out)[0]
    assert record["uncertainty"]["passes"] == 3 and record["uncertainty"]["method"] == "dropout"
    pred = Prediction.from_dict(record)
    lines = table([pred]).splitlines()
    assert lines[0].split()[4:7] == ["p_fake", "±", "90%"] and f"{pred.uncertainty.std:.3f}" in lines[1]
    html = write_report(tmp_path / "r.html", [pred]).read_text()
    assert "spread: ± " in html and "3 dropout passes" in html
    assert main([*args, "--uncertainty", "1"]) == 2, "one pass has no spread: a usage error"
    assert "at least 2 passes" in capsys.readouterr().err
