"""Benchmark of `scan --uncertainty N`: what N stochastic passes cost against a plain scan.

The passes share decoding, face detection and the window tensors; only the model reruns. Prints, per
clip and N, the model time and the total scan time as ratios to the plain scan (median of ``--repeat``
runs), and the spread found (std, 90 % interval). Uses the packaged default checkpoint (MC dropout) and,
with ``--tta``, test-time augmentation on the same model.

    python bench/uncertainty.py [--passes 4 8] [--repeat 3] [--tta] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import MEDIA

CLIPS = ("real/pcavs_Audio_Source_00015.mp4", "fake/ffpp_Deepfakes_519_515.mp4")


def _median_scan(detector, path: Path, n: int, repeat: int):  # noqa: ANN001, ANN202
    preds = [detector.scan(path, uncertainty=n) for _ in range(repeat)]
    model = statistics.median(p.timings["model"] for p in preds)
    total = statistics.median(p.timings["total"] for p in preds)
    return preds[-1], model, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-duration", type=float, default=5.0, help="seconds read from each clip")
    ap.add_argument("--tta", action="store_true", help="test-time augmentation instead of MC dropout")
    args = ap.parse_args()
    import torch

    from dfdetect.infer.pipeline import load_detector

    torch.set_num_threads(args.threads)
    method = "tta" if args.tta else "auto"
    detector = load_detector(
        None, device="cpu", max_duration=args.max_duration, speech=None, uncertainty_method=method
    )
    print(f"model {detector.name}, {args.threads} thread(s), {args.max_duration:g} s per clip, median of "
          f"{args.repeat}\n")  # fmt: skip
    head = "clip | N | method | model s | model ratio | total s | total ratio | p_fake | std | 90 % interval"
    print(f"| {head} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rel in CLIPS:
        path = MEDIA / rel
        detector.scan(path)  # warm-up (first call builds the face detector)
        _, model0, total0 = _median_scan(detector, path, 0, args.repeat)
        print(f"| {Path(rel).name} | 0 | - | {model0:.2f} | 1.00 | {total0:.2f} | 1.00 | | | |")
        for n in args.passes:
            pred, model, total = _median_scan(detector, path, n, args.repeat)
            u = pred.uncertainty
            print(
                f"| {Path(rel).name} | {n} | {u.method} | {model:.2f} | {model / model0:.2f} | {total:.2f} | "
                f"{total / total0:.2f} | {pred.p_fake:.3f} | {u.std:.3f} | {u.low:.3f}-{u.high:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
