"""Batch-norm folding (``infer.pipeline.for_inference``): the scan's model stage with and without it.

The same real clips (PC-AVS talking heads and FF++ fakes from ../shared/media) are extracted once; then
two detectors of the same checkpoint judge them alternately: one as scans load it (batch norms folded
into the convolutions, channels-last weights) and one with channels-last weights only. Printed: the
"model" stage seconds of each per repeat, their ratio (best and median) and the largest p_fake
difference (the folding must not change what is scored).

    python bench/fold.py [--model v2] [--clips 8] [--repeats 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import MEDIA


def clips(n: int) -> list[Path]:
    """Real talking heads, then the fakes of ../shared/media (up to half of ``n``)."""
    real = sorted((MEDIA / "real").glob("pcavs_*.mp4"))[: n - n // 2]
    return real + sorted((MEDIA / "fake").glob("*.mp4"))[: n // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="v2", help="model name or checkpoint (default: v2)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from dfdetect.infer.pipeline import load_detector

    torch.set_num_threads(args.threads)
    folded = load_detector(args.model, device="cpu", speech=None)
    plain = load_detector(args.model, device="cpu", speech=None)
    plain.model = plain.checkpoint.build_model("cpu").eval().to(memory_format=torch.channels_last)
    extractions = [folded.extract(path) for path in clips(args.clips)]
    seconds: dict[str, list[float]] = {"channels-last only": [], "folded + channels-last": []}
    p_fake: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, detector in zip(seconds, (plain, folded), strict=True):
            preds = [detector.judge(e) for e in extractions]
            seconds[name].append(sum(p.timings.get("model", 0.0) for p in preds))
            p_fake[name] = [p.p_fake for p in preds]
    diff = max(
        (abs(a - b) for a, b in zip(*p_fake.values(), strict=True) if a is not None and b is not None),
        default=0.0,
    )
    setup = f"{args.threads} torch threads, {args.repeats} repeats"
    print(f"{len(extractions)} clips, model {args.model}, {setup}")
    for name, values in seconds.items():
        print(f"{name:24s} model stage (s): {' '.join(f'{v:.3f}' for v in values)}")
    before, after = seconds.values()
    print(
        f"speed-up of folding: {min(before) / min(after):.2f}x (best), "
        f"{statistics.median(before) / statistics.median(after):.2f}x (median); "
        f"max |p_fake difference| {diff:.1e}"
    )


if __name__ == "__main__":
    main()
