"""Benchmark: prepare_clip time / decode_all time per clip, with the per-stage breakdown.

    python bench/prepare.py [--repeat 3] [--detect-every 3] [--detect-size 640] [--only-1080p]

decode_all is PyAV alone decoding every frame (the floor any pipeline pays). prepare_clip adds fps
sampling, RGB conversion of the sampled frames, face detection every ``detect_every`` sampled frames,
tracking + crops, audio + VAD (decoding runs in a thread, overlapping detection). Goal: wall ratio
<= 2.0 (naive decode-everything + MTCNN on every sampled frame measured ~6x). The CPU-time ratio is
printed too: it is steadier on a shared machine. Clips: a few real ones from ../shared/media and a
generated 10 s 1080p H.264 talking head (liveportrait_d10 upscaled with PyAV, made in a temp folder).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from clips import SOURCE_1080P, make_1080p
from common import MEDIA, measure

from dfdetect.config import PrepareConfig
from dfdetect.data.prepare import prepare_clip
from dfdetect.faces.detect import detector_from_config
from dfdetect.io.video import decode_all, probe

CLIPS = [
    "real/pcavs_Audio_Source_00015.mp4",
    "real/videoretalking_face_2.mp4",
    "real/face_recognition_short_hamilton_clip.mp4",
    "real/ffpp_orig_519.mp4",
]
STAGES = ("decode", "decode_wait", "detect", "track_crop", "audio")


def bench_clip(path: Path, config: PrepareConfig, detector, repeat: int) -> tuple[float, float]:
    """Interleaved runs (decode_all, prepare_clip) x repeat; median ratios (wall, cpu)."""
    info = probe(path)
    walls, cpus, runs = [], [], []
    for _ in range(repeat):
        d_wall, d_cpu, n = measure(lambda: decode_all(path))
        timings: dict[str, float] = {}
        p_wall, p_cpu, clip = measure(lambda t=timings: prepare_clip(path, config, detector, t))
        walls.append(p_wall / d_wall)
        cpus.append(p_cpu / d_cpu)
        runs.append((d_wall, timings))
    ratio, cpu_ratio = float(np.median(walls)), float(np.median(cpus))
    d_wall, timings = runs[int(np.argsort(walls)[len(walls) // 2])]
    stages = "  ".join(f"{k} {timings.get(k, 0):.2f}" for k in STAGES)
    print(
        f"{path.name[:28]:28s} {info.width}x{info.height} {info.duration:4.1f}s {n:3d}fr | decode_all "
        f"{d_wall:5.2f}s | prepare {timings['total']:5.2f}s = {ratio:4.2f}x wall, {cpu_ratio:4.2f}x cpu | "
        f"{stages} | faces {len(clip.faces)}"
    )
    return ratio, cpu_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--detect-every", type=int, default=None)
    parser.add_argument("--detect-size", type=int, default=None)
    parser.add_argument("--only-1080p", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"detect_every": args.detect_every, "detect_size": args.detect_size}
    config = PrepareConfig(**{k: v for k, v in overrides.items() if v is not None})
    detector = detector_from_config(config)
    detector.detect([np.zeros((64, 64, 3), np.uint8)])  # load the weights outside the timings
    import dfdetect.faces.extract  # noqa: F401  (import cost outside the timings)

    print(f"config: fps {config.fps}, detect_every {config.detect_every}, detect_size {config.detect_size}")
    with tempfile.TemporaryDirectory() as tmp:
        clips = [] if args.only_1080p else [MEDIA / c for c in CLIPS]
        clips.append(make_1080p(SOURCE_1080P, Path(tmp) / "talking_head_1080p.mp4"))
        ratios = [bench_clip(p, config, detector, args.repeat) for p in clips]
    wall, cpu = zip(*ratios, strict=True)
    print(f"prepare / decode_all (1080p): {wall[-1]:.2f}x wall, {cpu[-1]:.2f}x cpu (goal <= 2.0)")
    print(f"all clips: median {np.median(wall):.2f}x wall, {np.median(cpu):.2f}x cpu")


if __name__ == "__main__":
    main()
