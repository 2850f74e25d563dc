"""Audio-only scan of a 10 s speech clip, in-process, per speech model (goal: <= 0.5 s on 2 CPU cores).

    nice -n 10 python bench/speech_scan.py --model aasist-l --model runs/speech_whisper/checkpoints/best.pt

Each model is loaded once (``load_detector``), scans the clip once as a warm-up, then ``--repeat`` times
interleaved with the other models (best of each: the machine is shared, wall times swing with its load).
Prints wall and CPU seconds, the scan's stages and the ratio to the goal; also whether torch was imported
by loading and scanning with the models given (run with a whisper-speech checkpoint alone to check that
its scan path stays torch-free).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import DATA

GOAL_S = 0.5
SPEECH = DATA / "speech" / "real" / "tortoise-tts"


def ten_second_wav(folder: Path) -> Path:
    """The 10 s 16 kHz WAV of ``bench/speech.py`` (a real clip, looped), written without torch."""
    import wave

    import numpy as np

    from dfdetect.io.audio import load_audio

    audio, _ = load_audio(SPEECH / "voices__angie__1.wav", 16000)
    audio = np.tile(audio, int(np.ceil(160000 / audio.size)))[:160000]
    path = folder / "speech10s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def main() -> None:
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="speech model name or checkpoint")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from dfdetect.infer.pipeline import load_detector

    detectors = {m: load_detector(m, device="cpu") for m in args.model}
    best = {m: [float("inf"), float("inf")] for m in args.model}
    with tempfile.TemporaryDirectory() as tmp:
        path = ten_second_wav(Path(tmp))
        preds = {m: d.scan(path) for m, d in detectors.items()}  # warm-up
        for _ in range(args.repeat):
            for m, d in detectors.items():
                t0, c0 = time.perf_counter(), time.process_time()
                preds[m] = d.scan(path)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                best[m] = [min(best[m][0], wall), min(best[m][1], cpu)]
    print(f"10 s speech clip, {args.threads} threads, best of {args.repeat}")
    print("| model | scan wall / CPU (s) | / goal | p_fake | stages (s) |")
    print("|---|---|---|---|---|")
    for m, (wall, cpu) in best.items():
        stages = ", ".join(f"{k} {v:.3f}" for k, v in preds[m].timings.items())
        p_fake = preds[m].p_fake if preds[m].p_fake is not None else float("nan")
        print(f"| {Path(m).name} | {wall:.3f} / {cpu:.3f} | {wall / GOAL_S:.2f}x | {p_fake:.3f} | {stages} |")
    print(f"torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
