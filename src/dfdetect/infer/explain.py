"""Explanations of a scan: Grad-CAM heatmaps on the most suspicious face crops, and curves over time.

- **Grad-CAM** (Selvaraju et al. 2017) on the model's ``cam_layer``: forward/backward hooks capture
  the layer's activations and the gradient of the window logit; the channel-weighted activation map,
  rectified and normalised to [0, 1], is upsampled to the crop size. Models without a ``cam_layer``
  fall back to input-gradient saliency, and models without a visual path to frame attention alone.
- **Curves**: per-frame fake probability and the model's frame attention, and the audio-visual sync
  agreement per window of the explained track (``1 - sigmoid(sync_logit)``, per frame when the model
  has a per-frame sync head).

Everything here reads the :class:`~dfdetect.infer.result.ClipScores` the scan already made: its windows
and per-window outputs are kept, so the curves need no second forward pass and no probability is turned
back into a logit; only the few windows Grad-CAM explains run again, with gradients.
:meth:`Explanation.to_extras` turns the result into JSON-friendly values (images as files or ``data:`` URIs).
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
from dfdetect.infer.aggregate import sigmoid
from dfdetect.infer.result import ClipScores, StreamOutputs
from dfdetect.types import Clip

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
    note: str = ""  # what could not be explained, and why (e.g. no Grad-CAM for an ONNX model)

    def to_extras(self, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """JSON-friendly form: images written under ``out_dir`` (paths), else inline ``data:`` URIs."""
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
        out = {"method": self.method, "track_id": self.track_id, "frames": frames, "curves": self.curves}
        return {**out, "note": self.note} if self.note else out


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


def _forward_backward(model: Any, batch: dict[str, Any], layer: Any) -> tuple[Any, Any]:
    """Run the model with hooks on ``layer``; backpropagate the sum of window logits.

    Returns:
        ``(cam [N, h, w] or None, input gradient [B, T, 3, H, W] or None)``.
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
    return cam, frames.grad


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
# Explanation of a scored clip
# ---------------------------------------------------------------------------------------------


def thumbnails_of(clip: Clip, size: int = 96) -> dict[int, np.ndarray]:
    """Middle crop of every face track, resized to ``size`` (computed once per scan)."""
    thumbs = {}
    for face in clip.faces:
        if len(face.crops):
            crop = np.asarray(face.crops[len(face.crops) // 2])
            thumbs[face.track.track_id] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return thumbs


def thumbnail_extras(
    thumbs: dict[int, np.ndarray], out_dir: str | os.PathLike | None = None
) -> dict[str, str]:
    """``{track_id: image}`` of :func:`thumbnails_of` (file path under ``out_dir``, else data URI)."""
    out = Path(out_dir) if out_dir is not None else None
    return {str(k): encode_image(v, out, f"track{k}_thumb") for k, v in thumbs.items()}


def waveform_envelope(audio: np.ndarray, sample_rate: int, buckets: int = 600) -> dict[str, Any]:
    """A waveform small enough for a report: ``{t, lo, hi}``, min and max of ``buckets`` equal slices."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)  # [S]
    n = max(1, min(buckets, audio.size))
    edges = np.linspace(0, audio.size, n + 1).astype(int)
    lo = [float(audio[a:b].min()) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    hi = [float(audio[a:b].max()) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    t = (edges[:-1] + edges[1:]) / 2 / float(sample_rate)
    return {"t": np.round(t, 3).tolist(), "lo": np.round(lo, 4).tolist(), "hi": np.round(hi, 4).tolist()}


def _window_rank(stream: StreamOutputs, curve: dict[str, Any]) -> list[int]:
    """Window indices, most suspicious first (mean per-frame p inside the window)."""
    t, p = np.asarray(curve["t"]), np.asarray(curve["p"])
    scores = []
    for w in stream.windows:
        inside = (t >= w.t0 - 1e-6) & (t <= w.t1 + 1e-6)
        scores.append(float(p[inside].mean()) if inside.any() else 0.0)
    return list(np.argsort(-np.asarray(scores), kind="stable"))


def _frame_p(scores: ClipScores, stream: StreamOutputs, chosen: list[int]) -> np.ndarray:
    """[B, T] calibrated per-frame probabilities of the ``chosen`` windows (frame head, else window's)."""
    heads = stream.head("frame_logits")
    if heads is not None:
        return scores.calibrate(heads[chosen])
    window = stream.head("logit")[chosen]  # [B]
    return scores.calibrate(np.repeat(window[:, None], len(stream.windows[0].timestamps), axis=1))


def _top_frames(windows: list, p: np.ndarray, maps: np.ndarray | None, track_id: int, top_k: int) -> list:
    """The ``top_k`` most suspicious distinct frames of the explained windows."""
    order = np.argsort(-p.ravel(), kind="stable")
    seen: set[float] = set()
    frames: list[FrameExplanation] = []
    t_per = p.shape[1]
    for flat in order:
        b, j = divmod(int(flat), t_per)
        if j >= windows[b].n_real:
            continue  # padding repeats a real frame
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


def _per_frame(windows: list, values: np.ndarray) -> dict[str, list[float]]:
    """Average [W, T] per-frame values over overlapping windows -> {t, value} sorted by time."""
    acc: dict[float, list[float]] = {}
    for w, win in enumerate(windows):
        for j, t in enumerate(win.timestamps[: win.n_real]):
            acc.setdefault(round(float(t), 3), []).append(float(values[w, j]))
    times = sorted(acc)
    return {"t": times, "value": [round(float(np.mean(acc[t])), 5) for t in times]}


def _curves(model: Any, scores: ClipScores, stream: StreamOutputs) -> dict[str, dict[str, Any]]:
    """Fake-probability, frame-attention and audio-visual sync curves of one track over time."""
    curve = scores.frame_curve(stream.track_id)
    curves: dict[str, dict[str, Any]] = {"fake_probability": {"t": curve["t"], "value": curve["p"]}}
    if curve["attention"]:
        curves["attention"] = {"t": curve["t"], "value": curve["attention"]}
    hears = "sync" in set(getattr(model, "modalities", set()) or set()) and scores.clip.has_usable_audio
    frame_sync, sync = stream.head("frame_sync_logits"), stream.head("sync_logit")
    if hears and frame_sync is not None and frame_sync.ndim == 2:
        curves["sync"] = _per_frame(stream.windows, 1.0 - sigmoid(frame_sync))
    elif hears and sync is not None:
        centres = [round((w.t0 + w.t1) / 2, 3) for w in stream.windows]
        curves["sync"] = {"t": centres, "value": np.round(1.0 - sigmoid(sync.reshape(-1)), 5).tolist()}
    for c in curves.values():
        c["track_id"] = stream.track_id
    return curves


def explain_scores(
    model: Any,
    scores: ClipScores,
    pre: PreprocessConfig,
    device: str = "cpu",
    top_k: int = 6,
    max_windows: int = 2,
    track_id: int | None = None,
) -> Explanation:
    """Explain the score of a scored clip: its decisive track (or ``track_id``).

    Args:
        model: the dfdetect model that made ``scores`` (``cam_layer`` used when present).
        scores: the :class:`ClipScores` of the clip (its windows and outputs are reused).
        pre: the checkpoint's preprocessing.
        device: device the model is on.
        top_k: number of face crops explained with heatmaps.
        max_windows: number of model windows Grad-CAM runs on (the most suspicious ones).
        track_id: the track to explain (default: the decisive one).

    Returns:
        The :class:`Explanation` (heatmaps have the crops' size, values in [0, 1]).
    """
    from dfdetect.infer.score import model_inputs

    tid = scores.decisive if track_id is None else track_id
    stream = scores.stream(tid) if tid is not None else None
    if stream is None or stream.face is None:
        return Explanation("attention", tid)
    curve = scores.frame_curve(stream.track_id)
    chosen = _window_rank(stream, curve)[: max(1, max_windows)]
    windows = [stream.windows[i] for i in chosen]
    if getattr(model, "differentiable", True) is False:  # an ONNX model: no gradients, so no Grad-CAM
        frames = _top_frames(windows, _frame_p(scores, stream, chosen), None, stream.track_id, top_k)
        note = str(getattr(model, "explain_note", "the model has no gradients: no Grad-CAM heatmaps"))
        return Explanation("attention", stream.track_id, frames, _curves(model, scores, stream), note)
    model.eval()
    batch = model_inputs(windows, pre, device, None, not scores.clip.has_usable_audio)
    cam, grad = _forward_backward(model, batch, getattr(model, "cam_layer", None))
    model.zero_grad(set_to_none=True)
    if cam is not None:
        method, maps = "gradcam", cam.detach().float().cpu().numpy()  # [N, h, w]
    elif grad is not None and float(grad.abs().sum()) > 0:
        method, maps = "saliency", _saliency(grad)  # [N, H, W]
    else:
        method, maps = "attention", None
    frames = _top_frames(windows, _frame_p(scores, stream, chosen), maps, stream.track_id, top_k)
    return Explanation(method, stream.track_id, frames, _curves(model, scores, stream))
