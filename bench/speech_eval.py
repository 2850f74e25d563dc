"""Speech evaluation on held-out speakers: pretrained vs fine-tuned AASIST(-L), clean and perturbed.

    nice -n 5 python bench/speech_eval.py configs/experiments/speech.yaml \
        --model aasist-l --model runs/speech/checkpoints/best.pt --out runs/speech_eval.json

The test split is the speaker-disjoint one of the experiment config (same labels, seed and fractions as
training). Each file: 16 kHz mono -> perturbation (clean, MP3 64 kbit/s, 8 kHz telephone band, noise at
10 dB SNR) -> the experiment's one codec (clean: the first 8 s; perturbed: the first window, as the
official evaluation, to bound CPU time) -> sliding 64600-sample windows -> mean window logit -> p_fake.
Prints EER and AUC with 95 % bootstrap CIs, overall and per generator (each generator's fakes against all
held-out reals), as a markdown table; ``--out`` also writes every score as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def load_model(spec: str) -> torch.nn.Module:
    """A registered name (official weights) or a dfdetect checkpoint path."""
    if spec.endswith(".pt"):
        from dfdetect.train.checkpoint import build_model, load_checkpoint

        return build_model(load_checkpoint(spec))
    from dfdetect.models.factory import create_model

    return create_model(spec, pretrained=True).eval()


@torch.no_grad()
def score(model: torch.nn.Module, audio: np.ndarray) -> float:
    out = model(audio=torch.from_numpy(np.ascontiguousarray(audio))[None])
    return float(torch.sigmoid(out["logit"])[0])


def summary(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000) -> dict:
    from dfdetect.eval.metrics import auc, bootstrap_ci, eer

    e = eer(labels, scores)[0]
    return {
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "auc": auc(labels, scores),
        "auc_ci": bootstrap_ci(labels, scores, lambda y, s: auc(y, s), n_boot),
        "eer": e,
        "eer_ci": bootstrap_ci(labels, scores, lambda y, s: eer(y, s)[0], n_boot),
    }


def main() -> None:
    from dfdetect.data.speech import PERTURBATIONS, perturb, reencode
    from dfdetect.io.audio import load_audio
    from dfdetect.train.speech import load_speech_config, speech_splits

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--model", action="append", required=True, help="registered name or checkpoint .pt")
    p.add_argument("--perturb", nargs="*", default=list(PERTURBATIONS))
    p.add_argument("--split", default="test")
    p.add_argument("--max-seconds", type=float, default=8.0, help="seconds scored per file (clean)")
    p.add_argument(
        "--perturb-seconds", type=float, default=64600 / 16000, help="seconds scored per perturbed file"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_speech_config(args.config)
    rows = speech_splits(cfg.data)[args.split]
    models = {m: load_model(m) for m in args.model}
    raw = {r.path: load_audio(r.path, 16000, max_duration=args.max_seconds)[0] for r in rows}
    scores: dict[str, dict[str, list[float]]] = {m: {c: [] for c in args.perturb} for m in models}
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        for cond in args.perturb:
            audio = raw[row.path] if cond == "clean" else raw[row.path][: round(args.perturb_seconds * 16000)]
            x = reencode(perturb(audio, cond, seed=i), 16000, cfg.data.codec, cfg.data.bitrate)
            for name, model in models.items():
                scores[name][cond].append(score(model, x))
        print(f"{i + 1}/{len(rows)} {time.perf_counter() - t0:.0f}s", end="\r", flush=True)
    labels = np.array([r.label for r in rows])
    methods = np.array([r.method for r in rows])
    result: dict = {"rows": [{"path": r.path, "label": r.label, "method": r.method} for r in rows]}
    print(f"\n{args.split}: {len(rows)} files ({(labels == 0).sum()} real, {(labels == 1).sum()} fake)")
    print("| model | condition | subset | n real/fake | EER (95 % CI) | AUC (95 % CI) |")
    print("|---|---|---|---|---|---|")
    for name in models:
        result[name] = {}
        for cond in args.perturb:
            s = np.array(scores[name][cond])
            subsets = {"all": np.ones(len(rows), bool)}
            if cond == "clean":
                subsets |= {g: (methods == g) | (labels == 0) for g in sorted(set(methods[labels == 1]))}
            result[name][cond] = {"scores": s.tolist()}
            for sub, keep in subsets.items():
                m = summary(labels[keep], s[keep])
                result[name][cond][sub] = m
                print(
                    f"| {Path(name).name} | {cond} | {sub} | {m['n_real']}/{m['n_fake']} | "
                    f"{100 * m['eer']:.1f} % ({100 * m['eer_ci'][0]:.1f}-{100 * m['eer_ci'][1]:.1f}) | "
                    f"{m['auc']:.3f} ({m['auc_ci'][0]:.3f}-{m['auc_ci'][1]:.3f}) |"
                )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
