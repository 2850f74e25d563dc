"""The deepfake task: batch (DESIGN.md "Sample") -> model outputs ("Model output") -> weighted losses.

This is the one place that knows both contracts; the loop (``train/loop.py``) stays generic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dfdetect.config import AdversarialConfig, LossConfig, PreprocessConfig
from dfdetect.models import adversarial as adv
from dfdetect.train import losses
from dfdetect.train.loop import Stage

INPUT_KEYS = ("frames", "audio", "audio_mask", "mouths")
SYNC_FAKES = frozenset({"av_desync", "av_swap"})  # pseudo-fake kinds of data/pseudofake.py
HEAD_TARGETS = {"logit": "label", "video_logit": "video_label", "audio_logit": "audio_label"}


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of ``batch`` moved to ``device`` (non-blocking); other values as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The keyword arguments of ``model.forward`` present in ``batch``."""
    return {k: batch[k] for k in INPUT_KEYS if k in batch and batch[k] is not None}


def sync_targets(batch: dict[str, Any]) -> torch.Tensor:
    """``[B]`` 1 = audio and video do not belong together (desync/swap pseudo-fakes), 0 = a real
    sample, -1 = unknown (e.g. a dataset fake whose sync is not labelled)."""
    label = batch["label"]
    metas = batch.get("meta") or [{}] * len(label)
    out = torch.where(label == 0, torch.zeros_like(label), -torch.ones_like(label))
    pseudo = torch.tensor([str(m.get("pseudo", "")) in SYNC_FAKES for m in metas], device=label.device)
    return torch.where(pseudo, torch.ones_like(label), out)


class DeepfakeTask:
    """Weighted loss terms of :class:`~dfdetect.config.LossConfig` over the model's outputs.

    The stage's ``head`` option (``logit`` / ``video_logit`` / ``audio_logit``) selects the output that
    the classification terms train and that validation scores (with its matching label).

    With ``adversarial`` (``train.adversarial``), a share of every training batch is replaced by its PGD
    version (crafted on the stage head in eval mode, pixels de-normalised with ``preprocess``' mean/std);
    the logs get ``adv_share`` and ``adv_acc`` (accuracy on the adversarial samples).
    """

    def __init__(
        self,
        cfg: LossConfig,
        adversarial: AdversarialConfig | None = None,
        preprocess: PreprocessConfig | None = None,
    ) -> None:
        self.cfg = cfg
        self.head = "logit"
        self.adversarial = adversarial
        self.preprocess = preprocess or PreprocessConfig()

    def on_stage(self, stage: Stage) -> None:
        self.head = stage.options.get("head", "logit")

    def _head(self, out: dict[str, torch.Tensor]) -> str:
        if self.head not in out:
            raise KeyError(
                f"the model has no output {self.head!r} (it has {sorted(out)}): fix the stage head"
            )
        return self.head

    def compute_losses(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Every loss term with a non-zero weight (unweighted), keyed by LossConfig field name."""
        c = self.cfg
        head = self._head(out)
        logit, target = out[head].float(), batch[HEAD_TARGETS[head]]
        terms: dict[str, torch.Tensor] = {}
        if c.video:
            terms["video"] = losses.video_bce(logit, target, c.label_smoothing, c.pos_weight)
        if c.segment and head == "logit" and "segment_logits" in out:
            seg = out["segment_logits"].float()  # [B, K]
            terms["segment"] = losses.segment_bce(
                seg, batch["segment_labels"], c.label_smoothing, c.pos_weight
            )
        if c.temporal:
            temporal = out.get("frame_logits", out.get("segment_logits"))
            if temporal is not None:
                labels = batch["segment_labels"] if temporal.shape == batch["segment_labels"].shape else None
                terms["temporal"] = losses.temporal_consistency(temporal.float(), labels)
        if c.focal:
            terms["focal"] = losses.focal(logit, target, c.focal_gamma, c.focal_alpha)
        self._modality_terms(out, batch, terms)
        return terms

    def _modality_terms(self, out: dict, batch: dict, terms: dict[str, torch.Tensor]) -> None:
        c = self.cfg
        mask = batch.get("audio_mask")
        has_both = "video_logit" in out and "audio_logit" in out
        if c.modality and has_both:
            terms["modality"] = losses.modality_disagreement(
                out["video_logit"].float(),
                out["audio_logit"].float(),
                batch["video_label"],
                batch["audio_label"],
                mask,
            )
        if c.modality_heads:
            for name in ("video", "audio"):
                if f"{name}_logit" in out and f"{name}_logit" != self.head:
                    terms[f"{name}_head"] = losses.video_bce(
                        out[f"{name}_logit"].float(), batch[f"{name}_label"], c.label_smoothing
                    )
        if c.sync and "sync_logit" in out:
            terms["sync"] = losses.sync_contrastive(out["sync_logit"].float(), sync_targets(batch), mask)

    def weights(self) -> dict[str, float]:
        c = self.cfg
        return {
            "video": c.video,
            "segment": c.segment,
            "temporal": c.temporal,
            "focal": c.focal,
            "modality": c.modality,
            "sync": c.sync,
            "video_head": c.modality_heads,
            "audio_head": c.modality_heads,
        }

    def training_step(
        self, model: nn.Module, batch: dict[str, Any], device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward a batch and return the weighted loss and its terms (for logging)."""
        batch = to_device(batch, device)
        n_adv = self._adversarial(model, batch) if self.adversarial is not None else 0
        out = model(**model_inputs(batch))
        terms = self.compute_losses(out, batch)
        weights = self.weights()
        loss = sum((weights[k] * v for k, v in terms.items()), start=out["logit"].sum() * 0.0)
        logs = {f"loss_{k}": float(v.detach()) for k, v in terms.items()}
        with torch.no_grad():
            head = self._head(out)
            target = batch[HEAD_TARGETS[head]]
            known = target >= 0
            if bool(known.any()):
                pred = (out[head][known] > 0).float()
                logs["acc"] = float((pred == target[known]).float().mean())
            if self.adversarial is not None:
                logs["adv_share"] = n_adv / len(target)
                if n_adv and bool(known[:n_adv].any()):
                    hit = (out[head][:n_adv] > 0).float() == target[:n_adv]
                    logs["adv_acc"] = float(hit[known[:n_adv]].float().mean())
        return loss, logs

    def _adversarial(self, model: nn.Module, batch: dict[str, Any]) -> int:
        """Replace the first ``ratio`` of ``batch``'s frames (and mouths) by PGD examples, in place.

        Crafted on the unwrapped module (not DDP) in eval mode, each submodule's mode restored after, so
        batch-norm statistics never see the attack's passes. Returns the number of samples replaced.
        """
        c, pre = self.adversarial, self.preprocess
        n = round(c.ratio * len(batch["label"]))
        if n == 0:
            return 0
        module = getattr(model, "module", model)
        modes = {m: m.training for m in module.modules()}
        part = {k: v[:n] for k, v in model_inputs(batch).items()}
        pixels = {
            k: adv.to_pixels(v, pre.mean, pre.std) if k in adv.PIXEL_KEYS else v for k, v in part.items()
        }
        target = batch[HEAD_TARGETS[self.head]][:n]
        module.eval()
        try:
            crafted = adv.pgd(
                module, pixels, target, eps=c.eps, steps=c.steps, step_size=c.step_size,
                mean=pre.mean, std=pre.std, head=self.head,
            )  # fmt: skip
        finally:
            for m, mode in modes.items():
                m.train(mode)
        for key in adv.PIXEL_KEYS:
            if key in part:
                batch[key] = torch.cat([adv.normalise(crafted[key], pre.mean, pre.std), batch[key][n:]])
        return n

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: dict[str, Any], device: torch.device) -> dict:
        """``label``/``score`` of the stage head, plus ``score/<modality>`` of the other heads."""
        batch = to_device(batch, device)
        out = model(**model_inputs(batch))
        head = self._head(out)
        result = {"label": batch[HEAD_TARGETS[head]].float(), "score": torch.sigmoid(out[head].float())}
        for name in ("logit", "video_logit", "audio_logit"):
            if name in out and name != head:
                result[f"score/{name.removesuffix('_logit')}"] = torch.sigmoid(out[name].float())
        return result
