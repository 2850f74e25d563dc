"""torch vs onnxruntime: model time on the same windows, and process start-up of a scan.

1. **Model time**: one real clip is prepared once (the checkpoint's own settings); its windows go through
   the torch model and the exported ONNX graph in batches of 8 (what a scan does), forward only, best of
   ``--repeats``; both with ``--threads`` intra-op threads. Also prints the largest |logit| difference.
2. **Start-up**: ``dfdetect scan CLIP --model X --jsonl`` in a fresh process, minus the prediction's own
   ``timings.total`` (interpreter, imports, model loading, output), best of ``--repeats``; and the CPU
   seconds (user + sys) of a fresh process that only imports dfdetect and loads the detector (steadier
   than wall time on a shared machine).

    python bench/onnx_vs_torch.py [--checkpoint src/dfdetect/weights/v2.pt] [--onnx model.onnx]
                         [--clip real/pcavs_Audio_Source_00015.mp4] [--repeats 5] [--threads 1]

Without ``--onnx`` the checkpoint is exported first (``dfdetect export --onnx``, a minute or two).
Prints ratios torch / onnxruntime (> 1: onnxruntime is faster).

3. **Parity** (``--parity``): every file of ``../shared/media`` (videos, images, voice recordings) scanned by
   the packaged default on both runtimes, each with its speech judge in the same runtime (``v2.onnx`` +
   ``aasist-l-ft.onnx`` against ``v2.pt`` + ``aasist-l-ft.pt``), the same face detector (YuNet), the
   first ``--max-duration`` seconds: verdicts and statuses that differ, and the largest |p_fake| and
   modality differences (goal: identical verdicts, p_fake within 1e-3).

    python bench/onnx_vs_torch.py --parity [--max-duration 8]
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

from common import MEDIA, WEIGHTS, measure

BATCH = 8


def batches(checkpoint: Path, clip: Path) -> tuple[object, list[dict]]:
    """(torch model, model-input batches of the clip's windows) prepared with the checkpoint's settings."""
    from dfdetect.data.extract import extract_clip
    from dfdetect.infer.pipeline import load_detector
    from dfdetect.infer.score import _streams, model_inputs

    det = load_detector(checkpoint, device="cpu", speech=None)
    prepared = extract_clip(clip, det.prepare_config, det.face_detector, {}, kinds=det.kinds)
    windows = [w for s in _streams(prepared, det.preprocess) for w in s.windows]
    if not windows:
        raise SystemExit(f"no face track to score in {clip}")
    no_audio = not prepared.has_usable_audio
    out = [
        model_inputs(windows[i : i + BATCH], det.preprocess, "cpu", None, no_audio)
        for i in range(0, len(windows), BATCH)
    ]
    return det.model, out


def best_of(fn, repeats: int) -> float:
    """Best wall seconds of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    return measure(fn, repeats).wall


def model_time(checkpoint: Path, onnx_path: Path, clip: Path, repeats: int, threads: int) -> dict:
    import torch

    from dfdetect.infer.onnx import OnnxModel

    torch.set_num_threads(threads)
    model, data = batches(checkpoint, clip)
    session = OnnxModel(onnx_path, device="cpu", threads=threads)
    keys = ("audio", "audio_mask", "mouths")

    def run_torch() -> list:
        with torch.inference_mode():
            return [model(b["frames"], **{k: b[k] for k in keys}) for b in data]

    def run_onnx() -> list:
        return [session(b["frames"], **{k: b[k] for k in keys}) for b in data]

    diff = max(
        float((a["logit"] - b["logit"]).abs().max()) for a, b in zip(run_torch(), run_onnx(), strict=True)
    )
    n = sum(int(b["frames"].shape[0]) for b in data)
    return {
        "windows": n,
        "torch": best_of(run_torch, repeats),
        "onnx": best_of(run_onnx, repeats),
        "diff": diff,
    }


def fixed_cost(model: Path, clip: Path) -> float:
    """Seconds of a fresh ``dfdetect scan`` process that are not the scan itself."""
    cmd = [sys.executable, "-m", "dfdetect", "scan", str(clip), "--model", str(model), "--jsonl"]
    cmd += ["--no-progress", "--no-speech", "--device", "cpu"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1, 3):
        raise SystemExit(f"scan failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall - float(json.loads(out.stdout.strip().splitlines()[-1])["timings"]["total"])


def load_cpu(model: Path) -> float:
    """CPU seconds (user + sys) of a fresh process that imports dfdetect and loads ``model``."""
    import resource

    code = f"import dfdetect; dfdetect.load_detector({str(model)!r}, device='cpu', speech=None)"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ratio_line(times: dict[str, float], digits: int = 2) -> str:
    """``torch X s   onnxruntime Y s   ratio Z x`` (torch / onnxruntime)."""
    t, o = times["torch"], times["onnx"]
    return f"  torch {t:.{digits}f} s   onnxruntime {o:.{digits}f} s   ratio {t / o:.2f}x"


def parity(max_duration: float | None) -> None:
    """Scan every file of ../shared/media on both runtimes and print what differs (see the docstring)."""
    from dfdetect.infer.pipeline import load_detector
    from dfdetect.io.files import expand_inputs

    options = {"device": "cpu", "faces": "yunet", "max_duration": max_duration}
    fast, slow = load_detector(None, onnx=True, **options), load_detector(None, onnx=False, **options)
    assert fast.checkpoint.path.suffix == ".onnx" and slow.checkpoint.path.suffix == ".pt"
    files, _ = expand_inputs([str(MEDIA)])
    worst, differ, scored = 0.0, [], 0
    for path in files:
        a, b = fast.scan(path), slow.scan(path)
        gaps = [abs(a.p_fake - b.p_fake)] if a.p_fake is not None and b.p_fake is not None else []
        gaps += [abs(a.modality[k] - b.modality[k]) for k in set(a.modality) & set(b.modality)]
        worst, scored = max([worst, *gaps]), scored + (a.p_fake is not None)
        same = a.status == b.status and a.verdict == b.verdict and set(a.modality) == set(b.modality)
        if not same:
            differ.append(Path(path).name)
        print(f"  {Path(path).name[:44]:44} {a.status!s:9} {a.verdict!s:9} onnx {a.p_fake} torch {b.p_fake}"
              f"{'' if same else '  DIFFERENT'}", flush=True)  # fmt: skip
    print(f"parity on {len(files)} files of {MEDIA} ({scored} scored): {len(files) - len(differ)} identical "
          f"statuses and verdicts, different: {differ or 'none'}; largest |p_fake or modality difference| "
          f"{worst:.1e}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parity", action="store_true", help="ONNX vs torch scans of all ../shared/media")
    parser.add_argument("--max-duration", type=float, default=None, help="--parity: seconds read per file")
    parser.add_argument("--checkpoint", type=Path, default=WEIGHTS / "v2.pt")
    parser.add_argument("--onnx", type=Path, help="the exported model (default: export the checkpoint)")
    parser.add_argument("--clip", default="real/pcavs_Audio_Source_00015.mp4", help="under ../shared/media")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    args = parser.parse_args()
    if args.parity:
        return parity(args.max_duration)
    clip = MEDIA / args.clip
    onnx_path = args.onnx or Path(tempfile.mkdtemp()) / f"{args.checkpoint.stem}.onnx"
    if args.onnx is None:
        from dfdetect.infer.onnx_export import export_onnx

        t = time.perf_counter()
        export_onnx(args.checkpoint, onnx_path)
        print(f"export: {time.perf_counter() - t:.1f} s -> {onnx_path}")
    m = model_time(args.checkpoint, onnx_path, clip, args.repeats, args.threads)
    print(
        f"model time, {m['windows']} windows of {args.clip}, {args.threads} thread(s), best of {args.repeats}"
    )
    print(ratio_line(m, 3))
    print(f"  max |logit difference| {m['diff']:.1e}")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    models = {"torch": args.checkpoint, "onnx": onnx_path}
    cost = {k: min(fixed_cost(p, clip) for _ in range(args.repeats)) for k, p in models.items()}
    print(f"start-up of `dfdetect scan` (fresh process, wall minus the scan), best of {args.repeats}:")
    print(ratio_line(cost))
    cpu = {k: min(load_cpu(p) for _ in range(args.repeats)) for k, p in models.items()}
    print(f"import + load_detector, CPU seconds (user + sys), best of {args.repeats}:")
    print(ratio_line(cpu))


if __name__ == "__main__":
    main()
