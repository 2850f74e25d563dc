"""One clock for scan speed: whole scan / PyAV decode, the fast path against the torch path (issue 23).

Clips: a generated 10 s 1920x1080 H.264 talking head with audio (``bench/clips.py``), and the short
256-512 px clips of ``../shared/media`` and ``../shared/data`` (``--short N`` of them, by name). Each clip is
scanned in this process by two warm detectors, interleaved, best of ``--repeats``:

- **fast**: the packaged model's ONNX form (``--model``, default ``default``) and its ONNX speech judge on
  onnxruntime, YuNet faces (what ``dfdetect scan`` runs now; no torch in the process when run alone, see
  ``bench/cli_startup.py``);
- **torch**: its ``.pt`` and speech judge on torch, MTCNN faces (the scan before issue 23).

The ratio is the scan's wall time over ``decode_all`` (PyAV decoding every frame, nothing else) of the same
clip; process start-up is not in it (``bench/cli_startup.py`` measures it). Short clips are also summed
(sum of scans / sum of decodes). Threads: ``--threads`` for torch, onnxruntime and OpenCV alike.

    python bench/scan.py [--model default|v2] [--threads 1] [--repeats 2] [--short 8] [--no-torch]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from clips import SOURCE_1080P, make_1080p
from common import DATA, MEDIA, measure

STAGES = ("decode", "detect", "track_crop", "audio", "model", "speech")


def short_clips(n: int) -> list[Path]:
    """Up to ``n`` clips of 256-512 px (longest side) from ../shared/media and ../shared/data, by name."""
    from dfdetect.io.video import probe

    pool = sorted((MEDIA / "real").glob("*.mp4")) + sorted((MEDIA / "fake").glob("*.mp4"))
    pool += sorted((DATA / "talking_heads").rglob("*.mp4"))
    out = []
    for path in pool:
        info = probe(path)
        if 256 <= max(info.width, info.height) <= 512 and info.duration <= 12:
            out.append(path)
    step = max(1, len(out) // max(n, 1))
    return out[::step][:n]


def detectors(model: str, torch_path: bool) -> dict[str, object]:
    """``{"fast": ..., "torch": ...}`` warm-able detectors of the packaged ``model`` (CPU)."""
    from dfdetect.infer.pipeline import load_detector

    out = {"fast": load_detector(model, device="cpu", onnx=True, faces="yunet")}
    if torch_path:
        out["torch"] = load_detector(model, device="cpu", onnx=False, faces="mtcnn")
    return out


def row(name: str, clip: Path, dets: dict, repeats: int) -> dict[str, float]:
    """Print one table row; returns decode and scan seconds per path."""
    from dfdetect.io.video import decode_all

    base, base_cpu, _ = measure(lambda: decode_all(clip), repeats)
    runs = {k: [] for k in dets}
    for _ in range(repeats):
        for k, det in dets.items():
            t, c = time.perf_counter(), time.process_time()
            pred = det.scan(clip)
            runs[k].append((time.perf_counter() - t, time.process_time() - c, pred))
    best = {k: min(v, key=lambda r: r[0]) for k, v in runs.items()}
    cells = []
    for k in dets:
        wall, cpu, pred = best[k]
        stages = " · ".join(f"{pred.timings.get(s, 0.0):.2f}" for s in STAGES)
        cells.append(
            f"{wall:.2f} s = **{wall / base:.2f}x** (CPU {cpu / base_cpu:.2f}x; {stages}; p {pred.p_fake})"
        )
    print(f"| {name} | {base:.2f} s | " + " | ".join(cells) + " |", flush=True)
    cpus = {f"{k}_cpu": best[k][1] for k in dets}
    return {"decode": base, "decode_cpu": base_cpu, **{k: best[k][0] for k in dets}, **cpus}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="threads of every runtime (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best is kept")
    parser.add_argument("--short", type=int, default=8, help="short 256-512 px clips (default 8)")
    parser.add_argument("--no-torch", action="store_true", help="only the fast path")
    parser.add_argument("--model", default="default", help="packaged model name (default, v2)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # onnxruntime's intra-op threads (OnnxModel)
    import cv2

    cv2.setNumThreads(args.threads)
    dets = detectors(args.model, not args.no_torch)
    if "torch" in dets:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="dfdetect-bench-scan-") as tmp:
        clips = [("1080p talking head, 10 s", make_1080p(SOURCE_1080P, Path(tmp) / "1080p.mp4"))]
        clips += [(p.name[:36], p) for p in short_clips(args.short)]
        for det in dets.values():
            det.scan(clips[-1][1])  # warm-up: models and face detector loaded once per detector
        print(f"model {args.model}, threads {args.threads}, best of {args.repeats}; cells: wall = wall / "
              f"decode_all (CPU / "
              f"decode CPU; {' · '.join(STAGES)} s; p_fake)")  # fmt: skip
        print("| clip | decode_all | " + " | ".join(f"scan, {k} path" for k in dets) + " |")
        print("|---|---|" + "---|" * len(dets))
        rows = [row(name, clip, dets, args.repeats) for name, clip in clips]
    short = rows[1:]
    for k in dets:
        ratio = {u: sum(r[k + u] for r in short) / max(sum(r["decode" + u] for r in short), 1e-9)
                 for u in ("", "_cpu")}  # fmt: skip
        first = {u: rows[0][k + u] / rows[0]["decode" + u] for u in ("", "_cpu")}
        print(f"{k} path: 1080p {first['']:.2f}x decode (CPU {first['_cpu']:.2f}x); short clips summed "
              f"{ratio['']:.2f}x (CPU {ratio['_cpu']:.2f}x)")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
