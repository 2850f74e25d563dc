"""Face detection and extraction speed vs PyAV decoding, and detection accuracy by detect_size.

Run from the project root (real clips in ../shared/media):

    python bench/faces.py [--frames 15] [--threads 1]

Prints, per clip: the decode time of the whole clip (PyAV alone, ``io.video.decode_all``), MTCNN
time per sampled frame at several ``detect_size`` values with the box agreement (IoU, recall) against
detection on the full-resolution frame, then the time of the full face extraction (detector +
tracking + crops) at several ``detect_every`` values as a ratio to the decode time, and last the
region-of-interest detection (``FaceExtractor(roi=True)``) against full-frame detection on every
keyframe: detector CPU time, and per-frame IoU of the track boxes (every reference track box must
have a box of the ROI run at the same time). Times are wall clock and process CPU time (the CPU
time is the steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dfdetect.config import PrepareConfig
from dfdetect.faces.detect import MTCNNDetector
from dfdetect.faces.extract import extract_faces
from dfdetect.faces.track import box_iou
from dfdetect.io.video import decode_all, iter_frames, probe

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLIPS = [
    "real/videoretalking_face_2.mp4",
    "real/videoretalking_face_1.mp4",
    "real/pcavs_Audio_Source_00015.mp4",
    "real/ffpp_orig_519.mp4",
    "real/face_recognition_short_hamilton_clip.mp4",
]


def _timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _agreement(ref: list, got: list) -> tuple[float, float]:
    """Mean IoU of matched reference faces and the share of reference faces found (IoU > 0.5)."""
    ious, found, total = [], 0, 0
    for r, g in zip(ref, got, strict=True):
        total += len(r)
        if len(r) and len(g):
            best = box_iou(r.boxes, g.boxes).max(1)  # [R]
            ious.extend(best[best > 0.5].tolist())
            found += int((best > 0.5).sum())
    return (float(np.mean(ious)) if ious else float("nan")), (found / total if total else float("nan"))


class _CpuTimed:
    """Adds the detector's CPU seconds and calls (keeps the ``min_face_size`` keyword of ROI search)."""

    def __init__(self, inner: MTCNNDetector) -> None:
        self.inner, self.name, self.cpu, self.calls = inner, inner.name, 0.0, 0

    def detect(self, images: list[np.ndarray], min_face_size: float | None = None) -> list:
        t = time.process_time()
        try:
            return self.inner.detect(images, min_face_size=min_face_size)
        finally:
            self.cpu, self.calls = self.cpu + time.process_time() - t, self.calls + 1


def _track_agreement(ref: list, got: list) -> tuple[float, float, float]:
    """Mean and 5th-percentile IoU of every reference track box with the best box of ``got`` at that
    time, and the share of reference boxes matched with IoU > 0.5."""
    ious = []
    for face in ref:
        for t, box in zip(face.track.timestamps, face.track.boxes, strict=True):
            same = [g.track.boxes[np.isclose(g.track.timestamps, t)] for g in got]
            same = [b for b in same if len(b)]
            ious.append(float(box_iou(box[None], np.concatenate(same)).max()) if same else 0.0)
    ious = np.asarray(ious)
    return float(ious.mean()), float(np.percentile(ious, 5)), float((ious > 0.5).mean())


def bench_roi(frames: list, config: PrepareConfig, networks) -> None:
    """Full-frame detection on every keyframe vs ROI detection between full-frame searches."""
    runs = {}
    for roi in (False, True):
        det = MTCNNDetector(detect_size=config.detect_size, min_face_size=0.8 * config.min_face_size)
        det._mtcnn = networks
        timed = _CpuTimed(det)
        runs[roi] = extract_faces(frames, timed, config, roi=roi)
        print(
            f"  roi={roi!s:5}: detector {timed.cpu:.2f} s cpu in {timed.calls} calls, "
            f"tracks {[len(f.track.timestamps) for f in runs[roi]]}"
        )
    mean, p5, matched = _track_agreement(runs[False], runs[True])
    print(f"  ROI vs full-frame track boxes: IoU mean {mean:.3f}, 5th pct {p5:.3f}, matched {matched:.3f}")


def bench_clip(rel: str, n_frames: int, sizes: list[int], every: list[int]) -> None:
    path = MEDIA / rel
    info = probe(path)
    _, decode_wall, decode_cpu = _timed(decode_all, path)
    print(
        f"\n{rel}: {info.width}x{info.height}, {info.duration:.1f} s; PyAV decode {decode_wall:.2f} s "
        f"wall / {decode_cpu:.2f} s cpu"
    )
    config = PrepareConfig()
    frames = list(iter_frames(path, fps=config.fps, max_duration=config.max_duration))
    sample = frames[:: max(1, len(frames) // n_frames)][:n_frames]
    images = [f.image for f in sample]
    min_face = 0.8 * config.min_face_size
    full = MTCNNDetector(detect_size=max(images[0].shape[:2]), min_face_size=min_face)
    full.detect(images[:1])  # load the weights outside the timings
    reference, wall, cpu = _timed(full.detect, images)
    print(f"  full res : {wall / len(images):.3f} s/frame wall, {cpu / len(images):.3f} cpu")
    for size in sizes:
        det = MTCNNDetector(detect_size=size, min_face_size=min_face)
        det._mtcnn = full._mtcnn  # same networks
        got, wall, cpu = _timed(det.detect, images)
        iou, recall = _agreement(reference, got)
        print(
            f"  size {size:4d}: {wall / len(images):.3f} s/frame wall, {cpu / len(images):.3f} cpu, "
            f"IoU vs full {iou:.3f}, recall {recall:.2f}"
        )
    for k in every:
        cfg = PrepareConfig(detect_every=k)
        det = MTCNNDetector(detect_size=cfg.detect_size, min_face_size=min_face)
        det._mtcnn = full._mtcnn
        faces, wall, cpu = _timed(extract_faces, frames, det, cfg)
        lengths = [len(f.track.timestamps) for f in faces]
        print(
            f"  extract detect_every={k} size={cfg.detect_size}: {wall:.2f} s wall / {cpu:.2f} cpu "
            f"= {wall / decode_wall:.2f}x / {cpu / decode_cpu:.2f}x decode; {len(frames)} frames, "
            f"tracks {lengths}"
        )
    bench_roi(frames, config, full._mtcnn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=15, help="sampled frames for the detect_size table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 480, 320])
    parser.add_argument("--every", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--clips", nargs="+", default=CLIPS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for rel in args.clips:
        bench_clip(rel, args.frames, args.sizes, args.every)


if __name__ == "__main__":
    main()
