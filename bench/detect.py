"""Detection benchmark of a checkpoint on the held-out sets of ../shared/data (docs/model_card_default.md).

Runs one ``dfdetect eval`` per held-out set (unless ``--summarise-only``), then prints one markdown table:
AUC with its 95 % bootstrap CI, EER, accuracy at 0.5, the same split by clips with and without audio, and
AUC under re-encoding (JPEG, H.264, half resolution). The sets are the ``test`` splits that training wrote
to ``RUN/data/<source>.csv`` (never trained or calibrated on); the temperature is fitted on the face-image
``val`` split first (``--calibrate``), as the model card says.

    python bench/detect.py --checkpoint runs/default/default.pt --run runs/default --out runs/bench
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dfdetect.metrics import auc, bootstrap_ci, eer

SETS = {  # name -> (manifest in RUN/data, prepared cache)
    "face_images": ("face_images.csv", "prepared/face_images/cache"),
    "ffpp": ("ffpp_c23.csv", "prepared/ffpp_c23/cache"),
    "talking_heads": ("talking_heads.csv", "prepared/talking_heads/cache"),
}
SHOWN = {"jpeg": 70, "resize": 0.5, "h264": 30}  # the severities in the table (nearest to JPEG 75 / CRF 28)


def run_eval(checkpoint: str, run: Path, out: Path, name: str, calibrate: bool) -> None:
    """``dfdetect eval --manifest RUN/data/<set>.csv --cache <cache> --split test`` with the table's
    re-encodings only (one severity each) and, for the first set, ``--calibrate``."""
    from dfdetect.eval.evaluate import evaluate

    manifest, cache = SETS[name]
    print(f"eval {name} (calibrate={calibrate})", flush=True)
    evaluate(checkpoint, run / "data" / manifest, cache_dir=cache, split="test", out_dir=out / name,
             perturb={k: [v] for k, v in SHOWN.items()}, calibrate=calibrate, progress=False)  # fmt: skip


def _scored(out: Path) -> list[dict]:
    lines = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("p_fake") is not None]


def _label(record: dict) -> int:
    return int(record["extras"]["label"])


def _cell(records: list[dict]) -> str:
    y = np.array([_label(r) for r in records])
    s = np.array([r["p_fake"] for r in records])
    if len(set(y)) < 2:
        return f"n={len(y)} (one class)"
    lo, hi = bootstrap_ci(y, s, auc, n_boot=1000, seed=0)
    return f"{auc(y, s):.3f} [{lo:.2f}, {hi:.2f}] (n={int((y == 0).sum())}+{int((y == 1).sum())})"


def _perturbed(out: Path) -> dict[str, float]:
    path = out / "perturb.json"
    if not path.is_file():
        return {}
    table = json.loads(path.read_text(encoding="utf-8"))
    return {
        r["perturbation"]: r["auc"]
        for r in table
        if r["perturbation"] in SHOWN and float(r["severity"]) == SHOWN[r["perturbation"]]
    }


def summarise(out: Path) -> str:
    rows = ["| set | AUC [95 % CI] (reals+fakes) | EER | acc@0.5 | with audio | without audio | "
            + " | ".join(f"{k} {v}" for k, v in SHOWN.items()) + " |",
            "|---" * (6 + len(SHOWN)) + "|"]  # fmt: skip
    for name in SETS:
        if not (out / name / "predictions.jsonl").is_file():
            continue
        recs = _scored(out / name)
        y = np.array([_label(r) for r in recs])
        s = np.array([r["p_fake"] for r in recs])
        audio = [r for r in recs if r["status"] == "ok" and r.get("kind") == "video"]
        silent = [r for r in recs if r not in audio]
        pert = _perturbed(out / name)
        rows.append(
            f"| {name} | {_cell(recs)} | {eer(y, s)[0]:.3f} | {float(np.mean((s >= 0.5) == y)):.3f} | "
            f"{_cell(audio) if audio else '-'} | {_cell(silent) if silent else '-'} | "
            + " | ".join(f"{pert[k]:.3f}" if k in pert else "-" for k in SHOWN)
            + " |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/default/default.pt")
    parser.add_argument("--run", default="runs/default", help="training run dir (holds data/<source>.csv)")
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument("--summarise-only", action="store_true", help="only print the table of earlier runs")
    parser.add_argument("--no-calibrate", action="store_true", help="keep the checkpoint's temperature")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.summarise_only:
        for i, name in enumerate(SETS):
            run_eval(args.checkpoint, Path(args.run), out, name, calibrate=i == 0 and not args.no_calibrate)
    print(summarise(out))


if __name__ == "__main__":
    main()
