"""Fixed cost of a CLI scan: process wall time minus the in-process scan time (goal <= 1.5 s, issue 23).

Runs ``python -m dfdetect scan CLIP --jsonl`` in a fresh process, reads the prediction's ``timings.total``
(the in-process scan of the clip) and prints what is left: interpreter start, imports, model loading and
output. Two paths of one packaged model (``--model``, default ``default``), interleaved: **fast**
(``dfdetect scan CLIP --model NAME --faces yunet``: the ONNX form and ONNX speech judge, YuNet; no torch) and
**torch** (``--model src/dfdetect/weights/NAME.pt --faces mtcnn``: the scan before issue 23). On a shared
machine wall time swings with the load, so it also prints the CPU seconds (user + sys) of a process doing
the same start-up without the scan: parse the command line, load the detector, import the extraction code,
build the face detector; and whether torch was imported.

    python bench/cli_startup.py [--model default|v2] [--repeats 3] [--clip real/pcavs_Audio_Source_00015.mp4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import MEDIA, WEIGHTS

PATHS = ("fast", "torch")


def scan_args(model: str, path: str) -> list[str]:
    """The ``dfdetect scan`` options of ``path`` for the packaged model ``model``."""
    if path == "fast":
        return ["--model", model, "--faces", "yunet"]
    return ["--model", str(WEIGHTS / f"{model}.pt"), "--faces", "mtcnn"]


def run_once(clip: Path, model: str, path: str) -> tuple[float, float]:
    """(process wall seconds, in-process scan seconds) of one ``dfdetect scan`` on ``path``."""
    cmd = [sys.executable, "-m", "dfdetect", "scan", str(clip), "--jsonl", "--no-progress"]
    cmd += ["--device", "cpu", *scan_args(model, path)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1, 3):
        raise SystemExit(f"scan failed ({out.returncode}): {out.stderr[-2000:]}")
    pred = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, float(pred["timings"]["total"])


STARTUP = (
    "import sys; from dfdetect.cli import build_parser; build_parser();"
    "from dfdetect.infer.pipeline import load_detector;"
    "d = load_detector('{model}', device='cpu', onnx={onnx}, faces='{faces}');"
    "import dfdetect.data.extract, dfdetect.faces.extract, dfdetect.io.audio; d.face_detector._model();"
    "print('torch' in sys.modules)"
)


def startup_cpu(model: str, path: str) -> tuple[float, bool]:
    """CPU seconds (user + sys) of a fresh process doing a CLI scan's start-up without the scan, and
    whether it imported torch."""
    import resource

    code = STARTUP.format(model=model, onnx=path == "fast", faces="yunet" if path == "fast" else "mtcnn")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, out.stdout.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs; the best fixed cost is kept")
    parser.add_argument(
        "--clip", default="real/pcavs_Audio_Source_00015.mp4", help="clip under the media dir"
    )
    parser.add_argument("--model", default="default", help="packaged model name (default, v2)")
    args = parser.parse_args()
    clip = MEDIA / args.clip
    runs: dict[str, list[tuple[float, float]]] = {p: [] for p in PATHS}
    for _ in range(args.repeats):
        for path in PATHS:
            runs[path].append(run_once(clip, args.model, path))
    print(f"model {args.model}, clip: {clip.name}; load average {os.getloadavg()}")
    for path, done in runs.items():
        for w, s in done:
            print(f"  {path:5}: wall {w:5.2f} s   scan {s:5.2f} s   fixed {w - s:5.2f} s")
        fixed = min(w - s for w, s in done)
        cpus = [startup_cpu(args.model, path) for _ in range(args.repeats)]
        cpu, torch_imported = min(c for c, _ in cpus), cpus[0][1]
        print(f"{path} path: fixed cost (best of {args.repeats}) {fixed:.2f} s (goal <= 1.5 s); start-up CPU "
              f"{cpu:.2f} s; torch imported: {torch_imported}")  # fmt: skip


if __name__ == "__main__":
    main()
