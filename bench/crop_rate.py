"""How many face crops a scan of the default needs: verdicts at one crop per 1, 2 and 3 s (issue 23).

Each clip of a manifest's split (``runs/v6c/sets/corpus.csv``, written by ``bench/detect.py manifests``) is
scanned once by the packaged default at one crop per second (its window rate forced to 1 fps), and every
face track's window logits are kept (``--out``, JSON lines per split and model, resumable). A scan at one
crop per ``k`` seconds scores the same crops as every ``k``-th of those windows, so each rate is read off
the same scans: the clip's logit is its most suspicious main face's mean window logit, ``p =
sigmoid(logit / T)``. Printed per rate: crops scored, AUC, reals and fakes at or above the ``fake``
threshold, verdicts that differ from one crop a second.

    python bench/crop_rate.py --split val [--manifest runs/v6c/sets/corpus.csv] [--out runs/crop_rate]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from common import ROOT, WEIGHTS

RATES = (1, 2, 3)  # seconds per crop


def scan_windows(manifest: Path, split: str, out: Path) -> tuple[list[dict], float, tuple[float, float]]:
    """(per clip of ``split`` with a verdict: label and each main track's window logits at one crop a second,
    cached in ``out``; the default's temperature; its verdict band)."""
    import pandas as pd
    from tqdm import tqdm

    from dfdetect.infer.pipeline import load_detector

    rows = pd.read_csv(manifest)
    rows = rows[rows.split == split]
    done = {json.loads(line)["path"]: json.loads(line) for line in out.open()} if out.exists() else {}
    det = load_detector("default", device="cpu", speech=None)
    det.preprocess = det.preprocess.model_copy(update={"fps": 1.0, "segment_seconds": 1.0})
    with out.open("a") as f:
        for row in tqdm(list(rows.itertuples()), desc=f"scanning {split} at 1 crop/s", mininterval=10):
            if row.path in done:
                continue
            rec = {"path": row.path, "label": int(row.label), "tracks": []}
            clip = det.extract(row.path).clip
            scores = det.score(clip, speech=False) if clip is not None else None
            if scores is not None and scores.decisive is not None:
                main = set(scores.main)
                rec["tracks"] = [s.head("logit").tolist() for s in scores.streams if s.track_id in main]
            f.write(json.dumps(rec) + "\n")
            f.flush()
            done[row.path] = rec
    return [done[p] for p in rows.path if done[p]["tracks"]], det.temperature, det.thresholds


def clip_p(tracks: list[list[float]], every: int, temperature: float) -> float:
    """p_fake of a clip scored on every ``every``-th window of each main track."""
    logit = max(float(np.mean(t[::every])) for t in tracks)
    return float(1 / (1 + np.exp(-logit / temperature)))


def main() -> None:
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="val")
    ap.add_argument("--manifest", type=Path, default=ROOT / "runs/v6c/sets/corpus.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/crop_rate")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = hashlib.sha256((WEIGHTS / "default.onnx").read_bytes()).hexdigest()[:12]  # one cache per model
    cache = args.out / f"{args.split}-{model}.jsonl"
    clips, temperature, (low, high) = scan_windows(args.manifest, args.split, cache)
    y = np.array([c["label"] for c in clips])
    base = np.array([clip_p(c["tracks"], 1, temperature) for c in clips])
    print(f"{args.split}: {len(clips)} clips scored ({(y == 0).sum()} real, {(y == 1).sum()} fake)")
    print("| seconds per crop | crops | AUC | reals called fake | fakes called fake | verdicts changed |")
    print("|---|---|---|---|---|---|")
    for every in RATES:
        p = np.array([clip_p(c["tracks"], every, temperature) for c in clips])
        crops = sum(len(t[::every]) for c in clips for t in c["tracks"])
        changed = int((np.digitize(p, [low, high]) != np.digitize(base, [low, high])).sum())
        fa, tp = (
            f"{((p >= high) & (y == 0)).sum()}/{(y == 0).sum()}",
            f"{((p >= high) & (y == 1)).sum()}/{(y == 1).sum()}",
        )
        print(f"| {every} | {crops} | {roc_auc_score(y, p):.4f} | {fa} | {tp} | {changed} |")


if __name__ == "__main__":
    main()
