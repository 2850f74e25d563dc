"""Loss terms against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from dfdetect.config import LossConfig
from dfdetect.train import losses
from dfdetect.train.task import DeepfakeTask, sync_targets

LN2 = math.log(2)
LN3 = math.log(3)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_bce_label_smoothing_pos_weight_and_unknown_targets():
    assert losses.video_bce(t(0.0), t(1.0)).item() == pytest.approx(LN2)
    # y = 1 - 0.2/2 = 0.9: 0.9 * softplus(-2) + 0.1 * softplus(2)
    expected = 0.9 * math.log1p(math.exp(-2)) + 0.1 * math.log1p(math.exp(2))
    assert losses.video_bce(t(2.0), t(1.0), smoothing=0.2).item() == pytest.approx(expected, rel=1e-5)
    assert losses.video_bce(t(0.0, 0.0), t(1.0, 0.0), pos_weight=3.0).item() == pytest.approx(2 * LN2)
    assert losses.video_bce(t(0.0, 2.0), t(-1.0, 1.0)).item() == pytest.approx(math.log1p(math.exp(-2)))
    seg = losses.segment_bce(torch.zeros(2, 3), torch.tensor([[0.0, 1, 1], [0, float("nan"), 0]]), 0.0)
    assert seg.item() == pytest.approx(LN2)


def test_all_unknown_gives_zero_with_a_graph():
    logit = torch.zeros(3, requires_grad=True)
    loss = losses.video_bce(logit, t(-1, -1, -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logit.grad, torch.zeros(3))


def test_temporal_consistency_skips_label_boundaries():
    logits = torch.tensor([[0.0, 0.0, LN3]])  # p = .5, .5, .75
    assert losses.temporal_consistency(logits).item() == pytest.approx((0 + 0.0625) / 2)
    assert losses.temporal_consistency(logits, torch.tensor([[0.0, 0, 1]])).item() == pytest.approx(0.0)
    assert losses.temporal_consistency(logits, torch.tensor([[1.0, 1, 1]])).item() == pytest.approx(0.03125)
    assert losses.temporal_consistency(torch.zeros(2, 1)).item() == 0.0


def test_focal_loss():
    assert losses.focal(t(0.0), t(1.0), gamma=2.0).item() == pytest.approx(0.25 * LN2)
    assert losses.focal(t(0.0), t(1.0), gamma=0.0).item() == pytest.approx(LN2)
    assert losses.focal(t(0.0), t(1.0), gamma=2.0, alpha=0.25).item() == pytest.approx(0.25 * 0.25 * LN2)


def test_modality_disagreement_only_where_labels_agree():
    v, a = t(0.0, 0.0, 0.0), t(LN3, LN3, LN3)  # p .5 vs .75 -> gap^2 .0625
    out = losses.modality_disagreement(v, a, t(0, 1, 1), t(0, 0, -1))
    assert out.item() == pytest.approx(0.0625)
    masked = losses.modality_disagreement(v, a, t(0, 1, 1), t(0, 0, -1), torch.tensor([False, True, True]))
    assert masked.item() == 0.0


def test_sync_contrastive():
    d = LN2  # softplus(0)
    assert losses.sync_contrastive(t(0.0), t(0.0)).item() == pytest.approx(d**2)
    assert losses.sync_contrastive(t(0.0), t(1.0), margin=2.0).item() == pytest.approx((2 - d) ** 2)
    assert losses.sync_contrastive(t(0.0, 0.0), t(0.0, 1.0)).item() == pytest.approx(
        (d**2 + (2 - d) ** 2) / 2
    )


def test_task_weights_terms_and_uses_the_stage_head():
    out = {
        "logit": t(0.0, 0.0),
        "segment_logits": torch.zeros(2, 2),
        "video_logit": t(0.0, 0.0),
        "audio_logit": t(LN3, LN3),
        "sync_logit": t(0.0, 0.0),
    }
    batch = {
        "label": t(0, 1), "segment_labels": torch.tensor([[0.0, 0], [1, 1]]), "video_label": t(0, 0),
        "audio_label": t(0, -1), "audio_mask": torch.tensor([True, True]),
        "meta": [{"pseudo": ""}, {"pseudo": "av_desync"}],
    }  # fmt: skip
    assert sync_targets(batch).tolist() == [0.0, 1.0]
    task = DeepfakeTask(LossConfig(video=1, segment=0.5, label_smoothing=0, modality=2, sync=1, temporal=1))
    terms = task.compute_losses(out, batch)
    assert terms["video"].item() == pytest.approx(LN2) and terms["segment"].item() == pytest.approx(LN2)
    assert terms["modality"].item() == pytest.approx(0.0625)  # only sample 0 has agreeing labels
    assert terms["temporal"].item() == 0.0
    assert set(terms) == {"video", "segment", "modality", "sync", "temporal"}
