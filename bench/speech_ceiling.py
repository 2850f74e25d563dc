"""Real-voice ceiling ``p0`` of a speech model: the scan score that only 5 % of held-out real voices exceed.

    nice -n 10 python bench/speech_ceiling.py configs/experiments/speech.yaml --model aasist-l \
        --split val --split test --out runs/speech_ceiling.json [--write]

The real files of the speaker-disjoint held-out splits of the experiment config (the speakers
``bench/speech_eval.py`` evaluates on) are scanned exactly as ``dfdetect scan`` scans audio: 16 kHz mono,
VAD, the windows that overlap speech, the model's one codec (``Checkpoint.input_codec``), mean window logit.
Only the first window (``--seconds``, 64600 samples) of each file is read, as the perturbed evaluation does,
to bound CPU time; a single window spreads wider than a mean over many, so the ceiling is on the safe side.
``p0`` is the ``--quantile`` (0.95) of those scores; ``--write`` records it in the model's checkpoint
(``calibration.real_voice_ceiling``, with how it was measured).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from dfdetect.infer.lookup import resolve_model
    from dfdetect.infer.pipeline import load_detector
    from dfdetect.train.speech import load_speech_config, speech_splits

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--model", default="aasist-l", help="speech model name or checkpoint path")
    p.add_argument("--split", action="append", help="held-out split(s) (default: val and test)")
    p.add_argument("--seconds", type=float, default=64600 / 16000, help="seconds read per file")
    p.add_argument("--quantile", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--write", action="store_true", help="record p0 in the model's checkpoint file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = args.split or ["val", "test"]
    cfg = load_speech_config(args.config)
    all_rows = speech_splits(cfg.data)
    rows = [r for s in splits for r in all_rows[s] if r.label == 0]
    detector = load_detector(args.model, device="cpu", max_duration=args.seconds)
    scores, skipped, t0 = {}, [], time.perf_counter()
    for i, row in enumerate(rows):
        pred = detector.scan(row.path)
        if pred.p_fake is None:
            skipped.append({"path": row.path, "status": str(pred.status)})
        else:
            scores[row.path] = pred.p_fake
        print(f"{i + 1}/{len(rows)} {time.perf_counter() - t0:.0f}s", end="\r", flush=True)
    values = np.array(list(scores.values()))
    p0 = float(np.quantile(values, args.quantile))
    speakers = len({r.group for r in rows if r.path in scores})
    info = {
        "quantile": args.quantile,
        "n_real": int(values.size),
        "speakers": speakers,
        "splits": splits,
        "data": cfg.data.labels,
        "seconds_per_file": round(args.seconds, 4),
        "command": "bench/speech_ceiling.py " + " ".join(f"--split {s}" for s in splits),
    }
    print(
        f"\n{args.model}: {values.size} held-out real voices ({speakers} speakers, {len(skipped)} without "
        f"speech skipped): p0 = q{args.quantile:.2f} = {p0:.4f}; median {np.median(values):.4f}, "
        f"max {values.max():.4f}"
    )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"p0": p0, **info, "scores": scores, "skipped": skipped}, indent=1)
        )
    if args.write:
        from dfdetect.checkpoint import Checkpoint

        path, _ = resolve_model(args.model)
        Checkpoint.load(path).with_real_voice_ceiling(round(p0, 4), info).save(path)
        print(f"recorded in {path}")


if __name__ == "__main__":
    main()
