"""Student vs teacher: AUC on the held-out benchmark sets and model time on the same windows.

1. ``dfdetect eval`` of the student on the ``test`` split of each set (``RUN/data/<set>.csv``, the splits the
   teacher's training wrote; never trained on), temperature fitted on the face-image ``val`` split first,
   as ``bench/detect.py`` does; the teacher's predictions are read from a ``bench/detect.py`` output
   (``--teacher-out``) or made the same way. Then one table: AUC with its 95 % bootstrap CI for both and
   the paired difference (student - teacher, the same items resampled together).
2. Model time: both models score the same windows (every window of ``--timing-videos`` held-out FF++
   videos, each cut with its model's own preprocessing, as ``dfdetect scan`` does), batch 32, alternating
   teacher and student ``--repeats`` times; best and median wall and CPU time per window and their ratios
   (on a shared machine the CPU time of a 1-thread run is the steadier measure).
3. Scan model time (``--scan-clips N``): both models, loaded as ``dfdetect scan`` loads them, judge the
   same extracted real clips of ../shared/media; the "model" stage of each scan (cutting and resizing
   windows included) summed per repeat, and the ratio.

    python bench/distill.py --teacher src/dfdetect/weights/v2.pt --student runs/student/student.pt \
        --run runs/default --teacher-out runs/bench --out runs/bench-student
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from common import MEDIA

from dfdetect.metrics import auc, bootstrap_ci

SETS = {  # name -> (manifest in RUN/data, prepared cache); bench/detect.py's sets
    "face_images": ("face_images.csv", "prepared/face_images/cache"),
    "ffpp": ("ffpp_c23.csv", "prepared/ffpp_c23/cache"),
    "talking_heads": ("talking_heads.csv", "prepared/talking_heads/cache"),
}


def run_eval(checkpoint: str, run: Path, out: Path, name: str, calibrate: bool) -> None:
    """``dfdetect eval --manifest RUN/data/<set>.csv --cache <cache> --split test [--calibrate]``."""
    from dfdetect.eval.evaluate import evaluate

    manifest, cache = SETS[name]
    print(f"eval {checkpoint} on {name} (calibrate={calibrate})", flush=True)
    evaluate(checkpoint, run / "data" / manifest, cache_dir=cache, split="test", out_dir=out / name,
             calibrate=calibrate, progress=False)  # fmt: skip


def scores(out: Path) -> dict[str, tuple[int, float]]:
    """``path -> (label, p_fake)`` of the scored items of an eval output folder."""
    lines = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    recs = [r for r in map(json.loads, lines) if r.get("p_fake") is not None]
    return {r["path"]: (int(r["extras"]["label"]), float(r["p_fake"])) for r in recs}


def paired_delta(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 1000) -> tuple[float, float]:
    """95 % bootstrap CI of AUC(b) - AUC(a) over the same resampled items."""
    rng = np.random.default_rng(0)
    deltas = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if len(set(y[i])) == 2:
            deltas.append(auc(y[i], b[i]) - auc(y[i], a[i]))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return float(lo), float(hi)


def _auc_cell(y: np.ndarray, s: np.ndarray) -> str:
    lo, hi = bootstrap_ci(y, s, auc, n_boot=1000, seed=0)
    return f"{auc(y, s):.3f} [{lo:.2f}, {hi:.2f}]"


def compare(teacher_out: Path, student_out: Path) -> str:
    """The markdown table of both models on every set both scored (items scored by both)."""
    head = (
        "| set (reals+fakes) | teacher AUC [95 % CI] | student AUC [95 % CI] | student - teacher [95 % CI] |"
    )
    rows = [head, "|---|---|---|---|"]
    for name in SETS:
        if not all((d / name / "predictions.jsonl").is_file() for d in (teacher_out, student_out)):
            continue
        t, s = scores(teacher_out / name), scores(student_out / name)
        keys = sorted(set(t) & set(s))
        y = np.array([t[k][0] for k in keys])
        pt, ps = np.array([t[k][1] for k in keys]), np.array([s[k][1] for k in keys])
        lo, hi = paired_delta(y, pt, ps)
        n = f"{int((y == 0).sum())}+{int((y == 1).sum())}"
        rows.append(f"| {name} ({n}) | {_auc_cell(y, pt)} | {_auc_cell(y, ps)} | "
                    f"{auc(y, ps) - auc(y, pt):+.3f} [{lo:+.3f}, {hi:+.3f}] |")  # fmt: skip
    return "\n".join(rows)


def timing_frames(checkpoints: dict[str, object], run: Path, n_videos: int) -> dict[str, list]:
    """Per model, the batches (32 windows) of frames ``[B, T, 3, H, W]`` of the same windows: every
    window of the first ``n_videos`` held-out FF++ videos, cut with the model's own preprocessing."""
    import torch

    from dfdetect.data.cache import entry_path
    from dfdetect.data.dataset import clip_windows, open_entry, window_tensors
    from dfdetect.data.manifest import read_manifest

    manifest, cache = SETS["ffpp"]
    rows = [r for r in read_manifest(run / "data" / manifest) if r.split == "test"][:n_videos]
    clips = [open_entry(entry_path(cache, r.path)) for r in rows]
    out: dict[str, list] = {}
    for name, ckpt in checkpoints.items():
        frames = [window_tensors(w, ckpt.preprocess)["frames"] for c in clips
                  for w in clip_windows(c, ckpt.preprocess, track_index=0, mouths=False)]  # fmt: skip
        out[name] = [torch.stack(frames[i : i + 32]) for i in range(0, len(frames), 32)]
    return out


def time_models(teacher: str, student: str, run: Path, n_videos: int, repeats: int, threads: int) -> str:
    """Seconds per window of both frame models on the same windows, alternating, with channels-last
    weights as a scan runs them; returns a report."""
    import torch

    from dfdetect.checkpoint import Checkpoint
    from dfdetect.infer.pipeline import for_inference

    torch.set_num_threads(threads)
    ckpts = {"teacher": Checkpoint.load(teacher), "student": Checkpoint.load(student)}
    models = {k: for_inference(c.build_model()) for k, c in ckpts.items()}
    batches = timing_frames(ckpts, run, n_videos)
    n = sum(len(b) for b in batches["teacher"])
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first pass warms up and is dropped
            for name, model in models.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                for x in batches[name]:
                    model(x)
                wall[name].append((time.perf_counter() - start) / n)
                cpu[name].append((time.process_time() - start_cpu) / n)
    lines = [f"{n} windows of {n_videos} FF++ test videos, {threads} threads, {repeats} repeats"]
    for name, ckpt in ckpts.items():
        params = sum(p.numel() for p in models[name].parameters()) / 1e6
        lines.append(f"{name}: {ckpt.preprocess.size} px, {params:.2f} M params; wall {_stats(wall[name])}; "
                     f"CPU time {_stats(cpu[name])}")  # fmt: skip
    for label, t in (("wall", wall), ("CPU time", cpu)):
        best = min(t["teacher"][1:]) / min(t["student"][1:])
        med = statistics.median(t["teacher"][1:]) / statistics.median(t["student"][1:])
        lines.append(f"model time ratio teacher/student ({label}): {best:.2f}x (best), {med:.2f}x (median)")
    return "\n".join(lines)


def time_scans(teacher: str, student: str, n_clips: int, repeats: int, threads: int) -> str:
    """Seconds of the scan's "model" stage of both models over the same extracted clips; returns a report."""
    import torch

    from dfdetect.infer.pipeline import load_detector

    torch.set_num_threads(threads)
    detectors = {name: load_detector(path, device="cpu", speech=None)
                 for name, path in (("teacher", teacher), ("student", student))}  # fmt: skip
    paths = [*sorted((MEDIA / "real").glob("pcavs_*.mp4")), *sorted((MEDIA / "fake").glob("*.mp4"))]
    extractions = [detectors["teacher"].extract(p) for p in paths[:n_clips]]  # same prepare settings
    seconds: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(repeats):
        for name, detector in detectors.items():
            seconds[name].append(sum(detector.judge(e).timings.get("model", 0.0) for e in extractions))
    best = min(seconds["teacher"]) / min(seconds["student"])
    med = statistics.median(seconds["teacher"]) / statistics.median(seconds["student"])
    return (f"scan model stage, {len(extractions)} clips, {threads} threads, {repeats} repeats: teacher "
            f"{min(seconds['teacher']):.2f} s, student {min(seconds['student']):.2f} s (best); ratio "
            f"{best:.2f}x (best), {med:.2f}x (median)")  # fmt: skip


def _stats(times: list[float]) -> str:
    t = times[1:]
    return f"best {min(t) * 1e3:.2f} / median {statistics.median(t) * 1e3:.2f} ms per window"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="src/dfdetect/weights/v2.pt")
    parser.add_argument("--student", default="runs/student/student.pt")
    parser.add_argument("--run", default="runs/default", help="the teacher's training run (data/<set>.csv)")
    parser.add_argument("--teacher-out", default="runs/bench", help="bench/detect.py output of the teacher "
                        "(evaluated here when a set is missing)")  # fmt: skip
    parser.add_argument("--out", default="runs/bench-student")
    parser.add_argument("--sets", nargs="+", default=["face_images", "ffpp"], choices=list(SETS))
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--timing-videos", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scan-clips", type=int, default=0, help="also time whole scans' model stage")
    args = parser.parse_args()
    run, out, teacher_out = Path(args.run), Path(args.out), Path(args.teacher_out)
    if not args.timing_only:
        for name in args.sets:
            calibrate = name == "face_images"
            if not (teacher_out / name / "predictions.jsonl").is_file():  # calibrated already: kept as is
                run_eval(args.teacher, run, teacher_out, name, calibrate=False)
            run_eval(args.student, run, out, name, calibrate)
        print(compare(teacher_out, out))
    print(time_models(args.teacher, args.student, run, args.timing_videos, args.repeats, args.threads))
    if args.scan_clips:
        print(time_scans(args.teacher, args.student, args.scan_clips, args.repeats, args.threads))


if __name__ == "__main__":
    main()
