"""Audio-only scan of a 10 s speech clip in-process (goal: <= 0.5 s on 2 CPU cores), before / after.

    nice -n 5 python bench/speech.py [--threads 2] [--repeat 3] [--baseline REV]

Times, interleaved in one process (before, after, before, after, ...; best of ``--repeat``): silero-vad
over the clip, AASIST-L and AASIST over the clip's windows (64600 samples, hop 32300, as a scan cuts them),
and the whole ``Detector.scan`` of the clip with the packaged ``aasist-l`` speech model. "Before" is the
scan core of ``--baseline`` rebuilt in this process (see ``bench/baseline.py``). Also prints the stages
of the scan, the Opus round trip it includes and the ratio to the 0.5 s goal. Wall times swing with the
machine's load; CPU times (all threads of this process) are steadier.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
from baseline import BASELINE, before, old_aasist
from common import DATA, measure

SPEECH = DATA / "speech" / "real" / "tortoise-tts"
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


def interleaved(pairs: dict[str, tuple], repeat: int) -> dict[str, tuple[float, float, float, float]]:
    """``{row: (before_fn, after_fn)}`` -> ``{row: (before wall, before CPU, after wall, after CPU)}``:
    each function once as a warm-up, then ``repeat`` rounds of before, after; best of each."""
    best: dict[str, list[float]] = {row: [np.inf] * 4 for row in pairs}
    for fns in pairs.values():
        for fn in fns:
            fn()
    for _ in range(repeat):
        for row, fns in pairs.items():
            for i, fn in enumerate(fns):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                best[row][2 * i] = min(best[row][2 * i], wall)
                best[row][2 * i + 1] = min(best[row][2 * i + 1], cpu)
    return {row: tuple(v) for row, v in best.items()}


def gflops_per_window(model: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.forward_official(torch.zeros(1, 64600))
    return counter.get_total_flops() / 1e9


def main() -> None:
    from dfdetect.data.speech import reencode
    from dfdetect.infer.pipeline import load_detector
    from dfdetect.io import audio as io_audio
    from dfdetect.models.aasist import HOP_SAMPLES, WINDOW_SAMPLES, frame_waveform
    from dfdetect.models.factory import create_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline", default=BASELINE, help="git revision of 'before' (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    detector = load_detector("aasist-l", device="cpu")
    old_l = old_aasist("aasist-l", args.baseline)
    with tempfile.TemporaryDirectory() as tmp:
        path = ten_second_wav(Path(tmp))
        audio, _ = io_audio.load_audio(path, 16000)
        windows = frame_waveform(torch.from_numpy(audio), WINDOW_SAMPLES, HOP_SAMPLES)[0]  # [4, 64600]
        models = {"aasist-l": (old_l, detector.model)}
        models["aasist"] = (old_aasist("aasist", args.baseline), create_model("aasist", pretrained=True))

        def forward(model: torch.nn.Module):  # noqa: ANN202
            def run() -> None:
                with torch.inference_mode():
                    model.forward_official(windows)

            return run

        def jit_vad() -> None:
            with before({}):
                io_audio.speech_segments(audio)

        def old_scan() -> None:
            with before({detector: old_l}):
                detector.scan(path)

        pairs = {"silero-vad, 10 s": (jit_vad, lambda: io_audio.speech_segments(audio))}
        for name, (old, new) in models.items():
            pairs[f"{name}, {len(windows)} windows"] = (forward(old), forward(new))
        pairs["audio-only scan (aasist-l)"] = (old_scan, lambda: detector.scan(path))
        rows = interleaved(pairs, args.repeat)
        pred = detector.scan(path)
    t_codec = measure(lambda: reencode(audio, 16000, "opus", 48000), args.repeat).wall
    _print(args, rows, pred, t_codec, {k: gflops_per_window(v[1]) for k, v in models.items()})


def _print(args, rows, pred, t_codec: float, gflops: dict[str, float]) -> None:  # noqa: ANN001
    print(f"10 s speech clip, {args.threads} torch threads, best of {args.repeat}; before = {args.baseline}")
    print("| stage | before wall / CPU (s) | after wall / CPU (s) | speed-up wall / CPU |")
    print("|---|---|---|---|")
    for row, (bw, bc, aw, ac) in rows.items():
        print(f"| {row} | {bw:.3f} / {bc:.3f} | {aw:.3f} / {ac:.3f} | {bw / aw:.2f}x / {bc / ac:.2f}x |")
    stages = ", ".join(f"{k} {v:.3f}" for k, v in pred.timings.items())
    print(f"scan stages (s): {stages}; Opus round trip inside 'model': {t_codec:.3f} s")
    print("GFLOP per 64600-sample window: " + ", ".join(f"{k} {v:.1f}" for k, v in gflops.items()))
    scan = rows["audio-only scan (aasist-l)"][2]
    print(f"audio-only scan: {scan:.3f} s wall = {scan / GOAL_S:.2f}x the {GOAL_S} s goal")


if __name__ == "__main__":
    main()
