"""Benchmark of `scan`: wall time of Detector.scan (model included) / PyAV decode_all time.

Clips: a generated 10 s 1920x1080 H.264 clip (a real 512 px face clip upscaled and letterboxed, with its
audio) and a few clips of ../shared/media. Uses the packaged default checkpoint when present, else a
randomly initialised demo model (configs/models/demo_tiny.yaml): the model's weights do not change its
speed. Goals: scan <= 2x decode_all and model time (frame model + speech companion) <= 0.5x decode_all on
the 1080p clip (issue 9; the first scan-core goal was 1.5x).

Each clip is scanned "before" (the scan core of ``--baseline`` rebuilt in this process, see
``bench/baseline.py``) and "after" (this tree), interleaved, best of ``--repeats`` each.

    python bench/scan.py [--threads 1] [--clips N] [--repeats 2] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from baseline import BASELINE, before, nchw, old_aasist
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
    parser.add_argument(
        "--baseline", default=BASELINE, help="git revision of 'before' (default: %(default)s)"
    )
    args = parser.parse_args()

    import torch

    from dfdetect.infer.lookup import WEIGHTS_DIR
    from dfdetect.infer.pipeline import load_detector

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
        olds = {detector: nchw(detector.model)}
        if detector.speech is not None:
            olds[detector.speech.detector] = old_aasist(detector.speech.detector.model.arch, args.baseline)
        print(f"before = {args.baseline} rebuilt in this process (bench/baseline.py); best of {args.repeats}")
        print(
            "| clip | decode_all | scan before / after | scan / decode before / after (CPU after) "
            "| model + speech / decode before / after | decode · detect · track · audio · model · speech "
            "| p_fake before / after |"
        )
        print("|---|---|---|---|---|---|---|")  # fmt: skip
        for clip in clips:
            _row(detector, clip, olds, args.repeats)


def _row(detector, clip: Path, olds: dict, repeats: int) -> None:  # noqa: ANN001
    """One clip: decode_all, then before/after scans interleaved (best of ``repeats`` each)."""
    from dfdetect.io.video import decode_all

    base, base_cpu = _best(lambda: decode_all(clip), repeats)
    runs: dict[str, list] = {"before": [], "after": []}
    for _ in range(repeats):
        for name in runs:
            with before(olds) if name == "before" else contextlib.nullcontext():
                t, c = time.perf_counter(), time.process_time()
                pred = detector.scan(clip)
                t, c = time.perf_counter() - t, time.process_time() - c
                runs[name].append((t, c, pred.timings, pred.p_fake))
    (bw, _, bt, bp), (aw, ac, at, ap) = (min(runs[k], key=lambda r: r[0]) for k in ("before", "after"))
    model = [(t.get("model", 0.0) + t.get("speech", 0.0)) / base for t in (bt, at)]
    stages = " · ".join(
        f"{at.get(k, 0.0):.2f}" for k in ("decode", "detect", "track_crop", "audio", "model", "speech")
    )
    print(
        f"| {clip.name[:34]} | {base:.2f} s | {bw:.2f} / {aw:.2f} s | {bw / base:.2f}x / {aw / base:.2f}x "
        f"({ac / base_cpu:.2f}x) | {model[0]:.2f}x / {model[1]:.2f}x | {stages} | {bp} / {ap} |"
    )


if __name__ == "__main__":
    main()
