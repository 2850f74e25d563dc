"""Benchmark of `scan`: wall time of Detector.scan (model included) / PyAV decode_all time.

Clips: a generated 10 s 1920x1080 H.264 clip (a real 512 px face clip upscaled and letterboxed, with its
audio) and a few clips of ../shared/media. Uses the packaged default checkpoint when present, else a
randomly initialised demo model (configs/models/demo_tiny.yaml): the model's weights do not change its
speed. Goal: ratio <= 1.5.

    python bench/scan.py [--threads 1] [--clips N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from clips import MEDIA, SOURCE_1080P, make_1080p

ROOT = Path(__file__).resolve().parents[1]
CLIPS = (
    "real/ffpp_orig_519.mp4",
    "real/videoretalking_face_1.mp4",
    "real/pcavs_Audio_Source_00015.mp4",
    "real/face_recognition_short_hamilton_clip.mp4",
)


def tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised demo model saved as a checkpoint, with the demo's preprocessing.

    The preprocessing (crop size, frames per window) is the one ``configs/data/demo.yaml`` trains the
    demo model with, so the scan does the work a trained demo checkpoint would make it do.
    """
    import yaml

    from dfdetect.config import PreprocessConfig
    from dfdetect.models.factory import create_model
    from dfdetect.train.checkpoint import save_checkpoint

    data = yaml.safe_load((ROOT / "configs" / "data" / "demo.yaml").read_text())
    pre = PreprocessConfig(**(data.get("preprocess") or {}))
    cfg = yaml.safe_load((ROOT / "configs" / "models" / "demo_tiny.yaml").read_text())
    cfg = {**cfg, "pretrained": False, "fps": pre.fps, "segment_seconds": pre.segment_seconds}
    cfg.pop("pretrained_path", None)
    name = cfg.pop("name")
    model = create_model(name, **cfg)
    pre = pre.model_copy(update={"mouth_size": int(cfg.get("mouth_size", 48))})  # the sync head's size
    state = {
        "model_state": model.state_dict(),
        "model_config": {"name": name, **cfg},
        "preprocess": pre.model_dump(),
    }
    return save_checkpoint(path, state)


def resized(path: Path, size: int, out: Path) -> Path:
    """A copy of the checkpoint whose crops (prepare and model input) have side ``size``: same weights,
    so only the speed is meaningful."""
    from dataclasses import replace

    from dfdetect.checkpoint import Checkpoint

    ckpt = Checkpoint.load(path)
    ckpt = replace(ckpt, preprocess=ckpt.preprocess.model_copy(update={"size": size}),
                   prepare=ckpt.prepare.model_copy(update={"size": size}))  # fmt: skip
    return ckpt.save(out)


def _best(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of ``repeats`` runs of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clips", type=int, default=len(CLIPS), help="how many shared clips (default all)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best is kept")
    parser.add_argument("--checkpoint", help="checkpoint to scan with (default: the packaged default)")
    parser.add_argument("--size", type=int, help="crop size given to the model instead of the checkpoint's")
    parser.add_argument("--no-speech", action="store_true", help="leave out the speech companion")
    args = parser.parse_args()

    import torch

    from dfdetect.infer.pipeline import WEIGHTS_DIR, load_detector
    from dfdetect.io.video import decode_all, probe

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="dfdetect-bench-scan-") as tmp:
        tmp_dir = Path(tmp)
        default = Path(args.checkpoint) if args.checkpoint else WEIGHTS_DIR / "default.pt"
        ckpt = default if default.is_file() else tiny_checkpoint(tmp_dir / "demo_tiny.pt")
        label = ckpt if ckpt == default else "demo_tiny (random weights)"
        if args.size:
            ckpt, label = resized(ckpt, args.size, tmp_dir / "resized.pt"), f"{label} at {args.size} px"
        print(f"checkpoint: {label}; torch threads {args.threads}")
        detector = load_detector(ckpt, device="cpu", **({"speech": None} if args.no_speech else {}))
        clips = [make_1080p(SOURCE_1080P, tmp_dir / "upscaled_1080p_10s.mp4")]
        clips += [MEDIA / c for c in CLIPS[: args.clips]]
        detector.scan(clips[-1])  # warm-up: MTCNN and the model are loaded once per Detector
        head = f"{'clip':34} {'res':>9} {'dur':>5} {'decode_all':>10} {'scan':>6} {'ratio':>6} {'cpu':>5} | "
        print(head + " ".join(f"{k:>7}" for k in ("decode", "detect", "track", "audio", "model")))
        ratios, cpu_ratios = [], []
        for clip in clips:
            info = probe(clip)
            base, base_cpu = _best(lambda c=clip: decode_all(c), args.repeats)
            preds: list = []
            scan, scan_cpu = _best(lambda c=clip, out=preds: out.append(detector.scan(c)), args.repeats)
            t = preds[-1].timings
            ratios.append(scan / base)
            cpu_ratios.append(scan_cpu / base_cpu)
            stages = " ".join(
                f"{t.get(k, 0.0):7.2f}" for k in ("decode", "detect", "track_crop", "audio", "model")
            )
            print(
                f"{clip.name[:34]:34} {info.width:>4}x{info.height:<4} {info.duration:5.1f} {base:10.2f} "
                f"{scan:6.2f} {scan / base:6.2f} {scan_cpu / base_cpu:5.2f} | {stages}   [{preds[-1].status}]"
            )
        print(f"1080p ratio scan / decode_all: {ratios[0]:.2f} wall, {cpu_ratios[0]:.2f} cpu (goal <= 1.5)")
        print(
            f"median ratio scan / decode_all: {statistics.median(ratios):.2f} wall, "
            f"{statistics.median(cpu_ratios):.2f} cpu"
        )


if __name__ == "__main__":
    main()
