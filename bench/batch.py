"""Benchmark of `dfdetect batch` (local Ray, 2 workers) against `dfdetect scan` in one process.

Both commands scan the same folder of real clips from ../shared/media (links in a temporary folder) with
the same model (the packaged default, speech companion included) and run as subprocesses, as a user
runs them. Printed: files per second end to end (process start, model loading and, for batch, Ray
start-up included) and in steady state (scan: the files' own scan seconds; batch: after its workers
started), and their ratios. Goal: batch / scan >= 1.7 on 2 cores. A third run scans with one torch
thread (what each batch worker uses), to tell parallel workers from thread contention; a fourth runs
the batch in two stages (``--extract-workers``: workers that decode and find faces, feeding the others,
which only run the model: the layout for GPU nodes, here all on CPU).

    python bench/batch.py [--clips N] [--workers 2] [--extract-workers 1] [--model default]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MEDIA


def make_folder(root: Path, n: int) -> list[Path]:
    """Links to ``n`` real talking-head clips (PC-AVS 224 px crops, then VideoReTalking heads; the 16 of
    them again, as ``r<k>_<name>``, beyond 16: a batch is scanned afresh, the repeats are not skipped)."""
    clips = sorted((MEDIA / "real").glob("pcavs_*.mp4")) + sorted(
        (MEDIA / "real").glob("videoretalking_face_*.mp4")
    )
    links = []
    for i in range(n):
        clip = clips[i % len(clips)]
        links.append(root / (clip.name if i < len(clips) else f"r{i // len(clips)}_{clip.name}"))
        links[-1].symlink_to(clip)
    return links


def run_scan(folder: Path, model: str, threads: int | None = None) -> tuple[float, float, int]:
    """(wall seconds, sum of per-file scan seconds, files) of `dfdetect scan --jsonl` (``threads``: its
    OMP_NUM_THREADS, hence torch's; None = torch's default, one per core)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "dfdetect", "scan", str(folder), "--model", model, "--jsonl"]
    proc = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t
    preds = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not preds:
        raise SystemExit(f"dfdetect scan failed: {proc.stderr[-2000:]}")
    return wall, sum(p["timings"].get("total", 0.0) for p in preds), len(preds)


def run_batch(folder: Path, out: Path, model: str, workers: int, extract: int = 0) -> tuple[float, dict]:
    """(wall seconds, summary.json) of `dfdetect batch` on a local Ray (``extract``: two stages, with that
    many extract workers)."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "dfdetect", "batch", str(folder), "--out", str(out), "--model", model,
           "--workers", str(workers), "--extract-workers", str(extract), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"dfdetect batch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12, help="real clips scanned (default 12)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    parser.add_argument("--extract-workers", type=int, default=1, help="two-stage run (0: none)")
    parser.add_argument("--model", default="default", help="model name or checkpoint (default: default)")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        n = len(make_folder(folder, args.clips))
        scan_wall, scan_busy, n_scan = run_scan(folder, args.model)
        batch_wall, summary = run_batch(folder, Path(tmp) / "out", args.model, args.workers)
        one_wall, one_busy, n_one = run_scan(folder, args.model, threads=1)
        extract, judges = args.extract_workers, args.workers - args.extract_workers
        staged = run_batch(folder, Path(tmp) / "staged", args.model, judges, extract) if extract else None
    rows = [
        ("scan, 1 process", n_scan / scan_wall, n_scan / scan_busy),
        (f"batch, local Ray, {args.workers} workers", *_rates(batch_wall, summary)),
        ("scan, 1 process, 1 torch thread", n_one / one_wall, n_one / one_busy),
    ]
    if staged:
        rows.append((f"batch, {extract} extract + {judges} model", *_rates(*staged)))
    print(
        f"{n} clips from {MEDIA / 'real'}, model {args.model}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other work slows both)"
    )
    print(f"{'':34s} {'end to end':>12s} {'steady':>12s}   (files/s)")
    for name, e2e, busy in rows:
        print(f"{name:34s} {e2e:12.3f} {busy:12.3f}")
    print(
        f"{'ratio batch / scan':34s} {rows[1][1] / rows[0][1]:12.2f} {rows[1][2] / rows[0][2]:12.2f}"
        "   (goal >= 1.7)"
    )
    print(
        f"{'ratio batch / scan with 1 thread':34s} {rows[1][1] / rows[2][1]:12.2f} "
        f"{rows[1][2] / rows[2][2]:12.2f}"
    )
    if staged:
        two = f"{rows[3][1] / rows[1][1]:12.2f} {rows[3][2] / rows[1][2]:12.2f}"
        print(f"{'ratio two stages / one stage':34s} {two}")
    print(
        f"scan wall {scan_wall:.1f} s (1 thread: {one_wall:.1f} s); batch wall {batch_wall:.1f} s, "
        "of which workers starting "
        f"{summary['startup_seconds']:.1f} s (Ray start-up and imports before: "
        f"{batch_wall - summary['seconds']:.1f} s)"
    )


def _rates(wall: float, summary: dict) -> tuple[float, float]:
    """Files per second of a batch run: end to end, and after its workers started."""
    return summary["done"] / wall, summary["done"] / (summary["seconds"] - summary["startup_seconds"])


if __name__ == "__main__":
    main()
