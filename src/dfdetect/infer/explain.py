"""Explanations of a scan: Grad-CAM heatmaps on the most suspicious face crops, and curves over time.

- **Grad-CAM** (Selvaraju et al. 2017) on the model's ``cam_layer``: forward/backward hooks capture
  the layer's activations and the gradient of the window logit; the channel-weighted activation map,
  rectified and normalised to [0, 1], is upsampled to the crop size. Models without a ``cam_layer``
  fall back to input-gradient saliency, and models without a visual path to frame attention alone.
- **Curves**: per-frame fake probability and the model's frame attention (from the scoring extras),
  and the audio-visual sync agreement per window of the explained track (``1 - sigmoid(sync_logit)``,
  per frame when the model has a per-frame sync head).

Everything here works on one prepared :class:`~dfdetect.types.Clip`; :meth:`Explanation.to_extras`
turns the result into JSON-friendly values (images as files or ``data:`` URIs).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dfdetect.config import PreprocessConfig
from dfdetect.types import Clip, Prediction

_FRAME_SYNC_KEYS = ("frame_sync_logits", "sync_frame_logits", "sync_logits")


@dataclass
class FrameExplanation:
    """One explained face crop."""

    track_id: int
    time: float  # seconds
    score: float  # fake probability of this frame (calibrated)
    crop: np.ndarray  # [S, S, 3] uint8 RGB
    heatmap: np.ndarray | None  # [S, S] float32 in [0, 1]; None when the model has no visual path
    overlay: np.ndarray | None  # [S, S, 3] uint8 RGB crop blended with the heatmap


@dataclass
class Explanation:
    """Explanation of one scanned video (see the module docstring)."""

    method: str  # "gradcam", "saliency" or "attention"
    track_id: int | None
    frames: list[FrameExplanation] = field(default_factory=list)  # most suspicious first
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {t, value, track_id, label}
    thumbnails: dict[int, np.ndarray] = field(default_factory=dict)  # track_id -> [s, s, 3] uint8

    def to_extras(self, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """JSON-friendly form: images written under ``out_dir`` (paths), else inline ``data:`` URIs.

        Thumbnails are not included: see :func:`thumbnail_extras`.
        """
        out = Path(out_dir) if out_dir is not None else None
        frames = []
        for i, f in enumerate(self.frames):
            stem = f"track{f.track_id}_{i:02d}_t{f.time:07.2f}"
            frames.append(
                {
                    "track_id": f.track_id,
                    "time": round(f.time, 3),
                    "score": round(f.score, 5),
                    "crop": encode_image(f.crop, out, f"{stem}_crop"),
                    "overlay": None if f.overlay is None else encode_image(f.overlay, out, f"{stem}_cam"),
                }
            )
        return {"method": self.method, "track_id": self.track_id, "frames": frames, "curves": self.curves}


def encode_image(image: np.ndarray, out_dir: Path | None, stem: str, quality: int = 88) -> str:
    """An RGB uint8 image as a JPEG file path under ``out_dir``, or a ``data:image/jpeg`` URI."""
    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape}")
    if out_dir is None:
        return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
    from dfdetect.io.files import atomic_write_bytes

    return str(atomic_write_bytes(out_dir / f"{stem}.jpg", buf.tobytes()))


def overlay_heatmap(crop: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (jet colour map) onto an RGB uint8 crop of the same size."""
    from matplotlib import colormaps

    heat = (colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0).astype(np.float32)  # [S, S, 3]
    return np.clip((1 - alpha) * crop.astype(np.float32) + alpha * heat, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------


def _as_nchw(act: Any, n: int) -> Any:
    """Layer output -> [N, C, h, w] (accepts NCHW, NHWC and ViT tokens [N, L, C]); None if impossible."""
    if act.dim() == 4 and act.shape[0] == n:
        if act.shape[1] == act.shape[2] and act.shape[3] > act.shape[1]:  # NHWC (e.g. some timm stages)
            act = act.permute(0, 3, 1, 2)
        return act
    if act.dim() == 3 and act.shape[0] == n:
        tokens = act.shape[1]
        for drop in (0, 1):
            side = int(round((tokens - drop) ** 0.5))
            if side * side == tokens - drop:
                return act[:, drop:].transpose(1, 2).reshape(n, act.shape[2], side, side)
    return None


def _cam_maps(acts: list, grads: dict[int, Any], n: int) -> Any:
    """Grad-CAM maps [N, h, w] from the first hooked output with N = B*T rows; None if none fits."""
    import torch

    for i, act in enumerate(acts):
        a, g = _as_nchw(act, n), grads.get(i)
        if a is None or g is None:
            continue
        g = _as_nchw(g, n)
        weights = g.mean(dim=(2, 3), keepdim=True)  # [N, C, 1, 1]
        return torch.relu((weights * a).sum(dim=1))  # [N, h, w]
    return None


def _forward_backward(model: Any, batch: dict[str, Any], layer: Any) -> tuple[dict, Any, Any]:
    """Run the model with hooks on ``layer``; backpropagate the sum of window logits.

    Returns:
        ``(outputs, cam [N, h, w] or None, input gradient [B, T, 3, H, W] or None)``.
    """
    import torch

    acts: list = []
    grads: dict[int, Any] = {}

    def hook(_module: Any, _inp: Any, out: Any) -> None:
        t = out[0] if isinstance(out, list | tuple) else out
        if torch.is_tensor(t) and t.requires_grad:
            i = len(acts)
            acts.append(t)
            t.register_hook(lambda g, i=i: grads.__setitem__(i, g))

    handle = layer.register_forward_hook(hook) if layer is not None else None
    frames = batch["frames"].clone().requires_grad_(True)  # [B, T, 3, H, W]
    try:
        with torch.enable_grad():
            out = model(frames, audio=batch["audio"], audio_mask=batch["audio_mask"], mouths=batch["mouths"])
            model.zero_grad(set_to_none=True)
            out["logit"].sum().backward()
    finally:
        if handle is not None:
            handle.remove()
    b, t = frames.shape[:2]
    cam = _cam_maps(acts, grads, b * t) if acts else None
    return out, cam, frames.grad


def _normalise(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[N, h, w] non-negative maps -> [N, H, W] float32 in [0, 1] (each map divided by its maximum)."""
    out = np.zeros((len(maps), *size), np.float32)
    for i, m in enumerate(maps):
        m = cv2.resize(m.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        m = np.clip(m, 0, None)
        peak = float(m.max())
        out[i] = m / peak if peak > 1e-12 else 0.0
    return out


def _saliency(grad: Any) -> np.ndarray:
    """Input-gradient saliency [N, H, W]: |grad| max over colour channels, lightly smoothed."""
    g = grad.detach().abs().amax(dim=2).flatten(0, 1).float().cpu().numpy()  # [N, H, W]
    return np.stack([cv2.GaussianBlur(m, (0, 0), sigmaX=max(1.0, m.shape[0] / 56)) for m in g])


# ---------------------------------------------------------------------------------------------
# Clip-level explanation
# ---------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray | float, temperature: float = 1.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64) / temperature))


def _choose_track(clip: Clip, prediction: Prediction | None) -> int:
    """Index in ``clip.faces`` of the track to explain: the decisive one, else the most suspicious."""
    ids = [f.track.track_id for f in clip.faces]
    if prediction is not None:
        decisive = prediction.extras.get("decisive_track")
        if decisive in ids:
            return ids.index(decisive)
        if prediction.tracks:
            best = max(prediction.tracks, key=lambda t: t.p_fake)
            if best.track_id in ids:
                return ids.index(best.track_id)
    return 0


def _frame_curve(prediction: Prediction | None, track_id: int) -> dict[str, Any] | None:
    if prediction is None:
        return None
    for entry in prediction.extras.get("frame_scores", []) or []:
        if entry.get("track_id") == track_id:
            return entry
    return None


def _window_rank(windows: list, frame_curve: dict[str, Any] | None) -> list[int]:
    """Window indices, most suspicious first (mean per-frame p inside the window; else input order)."""
    if not frame_curve or not frame_curve.get("t"):
        return list(range(len(windows)))
    t, p = np.asarray(frame_curve["t"]), np.asarray(frame_curve["p"])
    scores = []
    for w in windows:
        inside = (t >= w.t0 - 1e-6) & (t <= w.t1 + 1e-6)
        scores.append(float(p[inside].mean()) if inside.any() else 0.0)
    return list(np.argsort(-np.asarray(scores), kind="stable"))


def _batch(windows: list, pre: PreprocessConfig, device: str, no_audio: bool) -> dict[str, Any]:
    import torch

    from dfdetect.data.dataset import window_tensors

    tensors = [window_tensors(w, pre) for w in windows]
    frames = torch.stack([torch.as_tensor(t["frames"]) for t in tensors]).to(device)  # [B, T, 3, H, W]
    audio = torch.stack([torch.as_tensor(t["audio"]) for t in tensors]).to(device)  # [B, S]
    mask = torch.as_tensor([bool(t["audio_mask"]) and not no_audio for t in tensors], device=device)  # [B]
    mouths = None
    if tensors[0].get("mouths") is not None:
        mouths = torch.stack([torch.as_tensor(t["mouths"]) for t in tensors]).to(device)  # [B, T, 3, m, m]
    if no_audio:
        audio = torch.zeros_like(audio)
    return {"frames": frames, "audio": audio, "audio_mask": mask, "mouths": mouths}


def _frame_p(out: dict, frame_curve: dict | None, windows: list, temperature: float) -> np.ndarray:
    """[B, T] calibrated per-frame probabilities: frame head, else the scoring curve, else the window's."""
    logits = out.get("frame_logits")
    if logits is not None:
        return _sigmoid(logits.detach().float().cpu().numpy(), temperature)
    win = _sigmoid(out["logit"].detach().float().cpu().numpy(), temperature)  # [B]
    p = np.repeat(win[:, None], len(windows[0].timestamps), axis=1)
    if frame_curve and frame_curve.get("t"):
        t, fp = np.asarray(frame_curve["t"]), np.asarray(frame_curve["p"])
        for b, w in enumerate(windows):
            idx = np.abs(t[None, :] - np.asarray(w.timestamps)[:, None]).argmin(axis=1)
            p[b] = _sigmoid(np.log(fp[idx] + 1e-9) - np.log1p(-fp[idx] + 1e-9), temperature)
    return p


def _top_frames(windows, p, maps, method, track_id, top_k) -> list[FrameExplanation]:
    """The ``top_k`` most suspicious distinct frames of the explained windows."""
    order = np.argsort(-p.ravel(), kind="stable")
    seen: set[float] = set()
    frames: list[FrameExplanation] = []
    t_per = p.shape[1]
    for flat in order:
        b, j = divmod(int(flat), t_per)
        ts = round(float(windows[b].timestamps[j]), 3)
        if ts in seen:
            continue
        seen.add(ts)
        crop = np.ascontiguousarray(windows[b].frames[j])  # [S, S, 3] uint8
        heat = None if maps is None else _normalise(maps[flat : flat + 1], crop.shape[:2])[0]
        overlay = None if heat is None else overlay_heatmap(crop, heat)
        frames.append(FrameExplanation(track_id, ts, float(p[b, j]), crop, heat, overlay))
        if len(frames) >= top_k:
            break
    return frames


def thumbnail_extras(clip: Clip, out_dir: str | os.PathLike | None = None, size: int = 96) -> dict[str, str]:
    """``{track_id: image}`` middle crop of every track (file path under ``out_dir``, else data URI)."""
    out = Path(out_dir) if out_dir is not None else None
    return {str(k): encode_image(v, out, f"track{k}_thumb") for k, v in _thumbnails(clip, size).items()}


def _thumbnails(clip: Clip, size: int = 96) -> dict[int, np.ndarray]:
    """Middle crop of every face track, resized to ``size``."""
    thumbs = {}
    for face in clip.faces:
        if len(face.crops):
            crop = face.crops[len(face.crops) // 2]
            thumbs[face.track.track_id] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return thumbs


def _per_frame(windows: list, values: np.ndarray) -> dict[str, list[float]]:
    """Average [W, T] per-frame values over overlapping windows -> {t, value} sorted by time."""
    acc: dict[float, list[float]] = {}
    for w, win in enumerate(windows):
        for j, t in enumerate(win.timestamps):
            acc.setdefault(round(float(t), 3), []).append(float(values[w, j]))
    times = sorted(acc)
    return {"t": times, "value": [round(float(np.mean(acc[t])), 5) for t in times]}


def _forward_all(model: Any, windows: list, pre: PreprocessConfig, device: str, no_audio: bool) -> dict:
    """Outputs (numpy) of every window, in batches of 8, without gradients."""
    import torch

    outs: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for i in range(0, len(windows), 8):
            batch = _batch(windows[i : i + 8], pre, device, no_audio)
            out = model(
                batch["frames"], audio=batch["audio"], audio_mask=batch["audio_mask"], mouths=batch["mouths"]
            )
            for k, v in out.items():
                if torch.is_tensor(v) and v.dim() >= 1:
                    outs.setdefault(k, []).append(v.detach().float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def _curves(
    model: Any,
    windows: list,
    pre: PreprocessConfig,
    device: str,
    no_audio: bool,
    frame_curve: dict | None,
    track_id: int,
    temperature: float,
) -> dict[str, dict[str, Any]]:
    """Fake-probability, frame-attention and audio-visual sync curves of one track over time."""
    wants_sync = "sync" in set(getattr(model, "modalities", set()) or set()) and not no_audio
    out = _forward_all(model, windows, pre, device, no_audio) if (wants_sync or not frame_curve) else {}
    curves: dict[str, dict[str, Any]] = {}
    if frame_curve and frame_curve.get("t"):
        p = np.asarray(frame_curve["p"], dtype=np.float64)
        calibrated = _sigmoid(np.log(p + 1e-9) - np.log1p(-p + 1e-9), temperature)
        curves["fake_probability"] = {"t": list(frame_curve["t"]), "value": np.round(calibrated, 5).tolist()}
        if frame_curve.get("attention"):
            curves["attention"] = {"t": list(frame_curve["t"]), "value": list(frame_curve["attention"])}
    elif "logit" in out:
        logits = out.get("frame_logits")
        if logits is None:
            logits = np.repeat(out["logit"][:, None], len(windows[0].timestamps), axis=1)
        curves["fake_probability"] = _per_frame(windows, _sigmoid(logits, temperature))
        if "frame_attention" in out:
            curves["attention"] = _per_frame(windows, out["frame_attention"])
    frame_sync = next((out[k] for k in _FRAME_SYNC_KEYS if k in out and out[k].ndim == 2), None)
    if wants_sync and frame_sync is not None:
        curves["sync"] = _per_frame(windows, 1.0 - _sigmoid(frame_sync))
    elif wants_sync and "sync_logit" in out:
        centres = [round((w.t0 + w.t1) / 2, 3) for w in windows]
        agreement = np.round(1.0 - _sigmoid(out["sync_logit"].reshape(-1)), 5)
        curves["sync"] = {"t": centres, "value": agreement.tolist()}
    for c in curves.values():
        c["track_id"] = track_id
    return curves


def explain_clip(
    model: Any,
    clip: Clip,
    pre: PreprocessConfig,
    prediction: Prediction | None = None,
    temperature: float = 1.0,
    device: str = "cpu",
    top_k: int = 6,
    max_windows: int = 2,
) -> Explanation:
    """Explain the score of one prepared clip.

    Args:
        model: the dfdetect model that scored the clip (``cam_layer`` used when present).
        clip: the prepared video.
        pre: the checkpoint's preprocessing.
        prediction: the clip's Prediction from ``score_clip`` (chooses the track and windows to explain
            and gives the per-frame curves); without it the most suspicious windows of the first track.
        temperature: calibration temperature of the checkpoint.
        device: device the model is on.
        top_k: number of face crops explained with heatmaps.
        max_windows: number of model windows Grad-CAM runs on (the most suspicious ones).

    Returns:
        The :class:`Explanation` (heatmaps have the crops' size, values in [0, 1]).
    """
    from dfdetect.data.dataset import clip_windows
    from dfdetect.types import AudioStatus

    thumbs = _thumbnails(clip)
    if not clip.faces:
        return Explanation("attention", None, thumbnails=thumbs)
    index = _choose_track(clip, prediction)
    track_id = clip.faces[index].track.track_id
    windows = clip_windows(clip, pre, track_index=index)
    if not windows:
        return Explanation("attention", track_id, thumbnails=thumbs)
    no_audio = clip.audio_status != AudioStatus.OK or np.asarray(clip.audio).size == 0
    frame_curve = _frame_curve(prediction, track_id)
    chosen = [windows[i] for i in _window_rank(windows, frame_curve)[: max(1, max_windows)]]
    model.eval()
    out, cam, grad = _forward_backward(
        model, _batch(chosen, pre, device, no_audio), getattr(model, "cam_layer", None)
    )
    if cam is not None:
        method, maps = "gradcam", cam.detach().float().cpu().numpy()  # [N, h, w]
    elif grad is not None and float(grad.abs().sum()) > 0:
        method, maps = "saliency", _saliency(grad)  # [N, H, W]
    else:
        method, maps = "attention", None
    p = _frame_p(out, frame_curve, chosen, temperature)  # [B, T]
    frames = _top_frames(chosen, p, maps, method, track_id, top_k)
    model.zero_grad(set_to_none=True)
    curves = _curves(model, windows, pre, device, no_audio, frame_curve, track_id, temperature)
    return Explanation(method, track_id, frames, curves, thumbs)
