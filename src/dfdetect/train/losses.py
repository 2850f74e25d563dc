"""Loss terms of deepfake training; each is a plain function of tensors (no config, no model).

Targets may be missing: a target < 0 (or NaN) is ignored by every term. All terms return a scalar
(0 with a graph-compatible zero when nothing is left to average).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss


def valid_mask(target: torch.Tensor) -> torch.Tensor:
    """True where a target is known (>= 0 and not NaN)."""
    return (target >= 0) & ~torch.isnan(target)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if not bool(mask.any()):
        return ref.sum() * 0.0  # keeps the graph (and DDP) happy when nothing is labelled
    return values[mask].mean()


def smooth_targets(target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Binary label smoothing: 1 -> 1 - s/2, 0 -> s/2."""
    return target * (1.0 - smoothing) + 0.5 * smoothing


def bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    smoothing: float = 0.0,
    pos_weight: float | None = None,
) -> torch.Tensor:
    """Binary cross-entropy with logits over known targets, label smoothing and a fake-class weight.

    Args:
        logits: any shape, e.g. ``[B]`` (window) or ``[B, K]`` (segments).
        target: same shape, 0/1 (negative or NaN = unknown, ignored).
        smoothing: label smoothing ``s`` (targets become ``s/2`` and ``1 - s/2``).
        pos_weight: weight of the positive (fake) class; ``None`` = 1.
    """
    target = target.to(logits.dtype)
    mask = valid_mask(target)
    y = smooth_targets(target.clamp(0, 1).nan_to_num(0.0), smoothing)
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    per = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw, reduction="none")
    return _masked_mean(per, mask, logits)


def segment_bce(
    segment_logits: torch.Tensor,  # [B, K]
    segment_labels: torch.Tensor,  # [B, K]
    smoothing: float = 0.1,
    pos_weight: float | None = None,
) -> torch.Tensor:
    """Per-segment BCE with label smoothing (mean over known segments)."""
    return bce(segment_logits, segment_labels, smoothing, pos_weight)


def video_bce(
    logit: torch.Tensor,  # [B]
    label: torch.Tensor,  # [B]
    smoothing: float = 0.0,
    pos_weight: float | None = None,
) -> torch.Tensor:
    """Window-level BCE."""
    return bce(logit, label, smoothing, pos_weight)


def temporal_consistency(logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference of adjacent probabilities along time.

    Args:
        logits: ``[B, T]`` frame or segment logits.
        labels: optional ``[B, T]``; pairs whose labels differ (a manipulation boundary) or are
            unknown are not penalised.
    """
    if logits.shape[-1] < 2:
        return logits.sum() * 0.0
    p = torch.sigmoid(logits)  # [B, T]
    diff = (p[..., 1:] - p[..., :-1]).pow(2)  # [B, T-1]
    if labels is None:
        return diff.mean()
    labels = labels.to(logits.dtype)
    known = valid_mask(labels)
    mask = known[..., 1:] & known[..., :-1] & (labels[..., 1:] == labels[..., :-1])
    return _masked_mean(diff, mask, logits)


def focal(logit: torch.Tensor, label: torch.Tensor, gamma: float = 2.0, alpha: float = -1.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017; torchvision's implementation) over known labels."""
    label = label.to(logit.dtype)
    mask = valid_mask(label)
    per = sigmoid_focal_loss(logit, label.clamp(0, 1).nan_to_num(0.0), alpha=alpha, gamma=gamma)
    return _masked_mean(per, mask, logit)


def modality_disagreement(
    video_logit: torch.Tensor,  # [B]
    audio_logit: torch.Tensor,  # [B]
    video_label: torch.Tensor,  # [B]
    audio_label: torch.Tensor,  # [B]
    audio_mask: torch.Tensor | None = None,  # [B] bool: False = no audio
) -> torch.Tensor:
    """Squared gap of video and audio fake-probabilities on samples whose modality labels agree."""
    v, a = video_label.to(video_logit.dtype), audio_label.to(video_logit.dtype)
    mask = valid_mask(v) & valid_mask(a) & (v == a)
    if audio_mask is not None:
        mask = mask & audio_mask.bool()
    gap = (torch.sigmoid(video_logit) - torch.sigmoid(audio_logit)).pow(2)  # [B]
    return _masked_mean(gap, mask, video_logit + audio_logit)


def sync_contrastive(
    sync_logit: torch.Tensor,  # [B] out-of-sync logit
    sync_target: torch.Tensor,  # [B] 1 = audio and video do not belong together
    audio_mask: torch.Tensor | None = None,
    margin: float = 2.0,
) -> torch.Tensor:
    """Contrastive sync loss: matched pairs pull the dissonance ``d = softplus(sync_logit)`` to 0,
    mismatched pairs push it beyond ``margin`` (Chugh et al. 2020, on the model's sync score).
    """
    t = sync_target.to(sync_logit.dtype)
    mask = valid_mask(t)
    if audio_mask is not None:
        mask = mask & audio_mask.bool()
    d = F.softplus(sync_logit)  # [B] >= 0
    t = t.clamp(0, 1).nan_to_num(0.0)
    per = (1 - t) * d.pow(2) + t * F.relu(margin - d).pow(2)
    return _masked_mean(per, mask, sync_logit)
