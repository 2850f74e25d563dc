"""Face detection and extraction speed vs PyAV decoding, and detection accuracy by detect_size.

Run from the project root (real clips in ../shared/media):

    python bench/faces.py [--frames 15] [--threads 1]

Prints, per clip: the decode time of the whole clip (PyAV alone, ``io.video.decode_all``), MTCNN
time per sampled frame at several ``detect_size`` values with the box agreement (IoU, recall) against
detection on the full-resolution frame, then the time of the full face extraction (detector +
tracking + crops) at several ``detect_every`` values as a ratio to the decode time. Times are wall
clock and process CPU time (the CPU time is the steadier figure on a shared machine).
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
