"""Audio-only scoring of a 10 s speech clip in-process (goal: <= 0.5 s on 2 CPU cores).

    nice -n 5 python bench/speech.py [--threads 2] [--repeat 5]

Times, per model and window hop: decoding the file to 16 kHz mono (PyAV), the canonical codec round trip
(Opus 48 kbit/s, as in training and evaluation), and the model over the sliding 64600-sample windows;
prints the median of ``--repeat`` runs after one warm-up and the ratio to the 0.5 s goal.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "real" / "tortoise-tts"
GOAL_S = 0.5


def ten_second_wav(folder: Path) -> Path:
    """A 10 s 16 kHz WAV from a real speech clip (looped when shorter)."""
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


def timed(fn, repeat: int) -> tuple[float, object]:  # noqa: ANN001
    """Median wall seconds of ``fn`` over ``repeat`` runs after a warm-up, and its last result."""
    return timed_cpu(fn, repeat)[0], timed_cpu.last


def timed_cpu(fn, repeat: int) -> tuple[float, float]:  # noqa: ANN001
    """Median wall and CPU seconds (all threads of this process) of ``fn``; CPU time is what a shared
    machine cannot inflate: uncontended wall ~ CPU / threads."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        timed_cpu.last = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def gflops_per_window(model: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.forward_official(torch.zeros(1, 64600))
    return counter.get_total_flops() / 1e9


def main() -> None:
    from dfdetect.data.speech import reencode
    from dfdetect.io.audio import load_audio
    from dfdetect.models.aasist import HOP_SAMPLES, WINDOW_SAMPLES, window_starts
    from dfdetect.models.factory import create_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--models", nargs="*", default=["aasist-l", "aasist"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = ten_second_wav(Path(tmp))
        t_decode, (audio, _) = timed(lambda: load_audio(path, 16000), args.repeat)
    t_codec, canon = timed(lambda: reencode(audio, 16000, "opus", 48000), args.repeat)
    x = torch.from_numpy(canon)[None]
    print(f"10 s clip, {args.threads} threads: decode {1000 * t_decode:.0f} ms", end=", ")
    print(f"opus round trip {1000 * t_codec:.0f} ms")
    print("| model | GFLOP/window | hop | windows | model wall ms | model CPU ms | total wall ms | x goal |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for hop in (HOP_SAMPLES, WINDOW_SAMPLES):
            model = create_model(name, pretrained=True, hop_samples=hop)
            with torch.inference_mode():
                t_model, c_model = timed_cpu(lambda m=model: m(audio=x), args.repeat)
            total = t_decode + t_model
            k = len(window_starts(x.shape[1], WINDOW_SAMPLES, hop))
            print(
                f"| {name} | {gflops_per_window(model):.1f} | {hop} | {k} | {1000 * t_model:.0f} | "
                f"{1000 * c_model:.0f} | {1000 * total:.0f} | {total / GOAL_S:.2f} |"
            )


if __name__ == "__main__":
    main()
