"""The default fused with v2, measured as a scan would run it: both models on the same extracted clip.

For every val and test row of ``bench/detect.py``'s sets (``OUT/sets``), the clip is extracted once as the
default's scan extracts it (its prepare settings: YuNet, 2 fps, 224 px crops); the default's raw logit
``z1`` (its head, Platt shift included) and v2's calibrated logit ``z2 = logit / T_v2`` of that same clip
are cached in ``FEATS/<set>/fusion-scan.jsonl`` (resumable). ``fit`` then fits the fusion on val (logistic
regression on ``(z1, z2)``) and prints, per test set, AUC with CIs, the paired difference against the
default alone, and reals / fakes called ``fake`` at the default band:

    python bench/fusion.py score        # ~1 s a clip on 2 cores
    python bench/fusion.py fit          # weights and tables
    python bench/fusion.py fit --sets DIR   # a folder with some of the set CSVs: fit (and report) on those

Measured 2026-12-07 (docs/model_card_default.md, v5): not shipped, because val on the videos alone gives v2 a
negative weight.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from common import ROOT, WEIGHTS

BAND_HIGH = 0.65  # constants.VERDICT_BAND's upper edge


def _sets(folder: Path) -> dict[str, list]:
    from dfdetect.data.manifest import read_manifest

    return {
        p.stem: [r for r in read_manifest(p) if r.split in ("val", "test")]
        for p in sorted(folder.glob("*.csv"))
    }


def _cache(name: str) -> Path:
    import detect

    return detect.FEATS / name / "fusion-scan.jsonl"


def _done(name: str) -> dict[str, dict]:
    path = _cache(name)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return {r["path"]: r for r in map(json.loads, lines)}


def score(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from dfdetect.infer.pipeline import Detector

    primary = Detector.from_checkpoint(WEIGHTS / "default.onnx", speech=None, device="cpu")
    second = Detector.from_checkpoint(WEIGHTS / "v2.onnx", speech=None, device="cpu", faces="yunet")
    for name, rows in _sets(Path(args.sets)).items():
        done, out = _done(name), _cache(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        for row in tqdm([r for r in rows if r.path not in done], desc=name, unit="clip"):
            rec = {"path": row.path, "z1": None, "z2": None}
            try:
                clip = primary.extract(row.path).clip
                if clip is not None:
                    rec["z1"] = primary.score(clip, temperature=1.0, speech=False).logit
                    z2 = second.score(clip, temperature=1.0, speech=False).logit
                    rec["z2"] = None if z2 is None else z2 / second.temperature
            except Exception as e:  # noqa: BLE001 - a bad clip is recorded, the batch goes on
                print(f"{row.path}: {type(e).__name__}: {e}", file=sys.stderr)
            with out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")


def _arrays(rows: list, done: dict[str, dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = [r for r in rows if done.get(r.path, {}).get("z1") is not None and done[r.path]["z2"] is not None]
    y = np.array([r.label for r in keep])
    return y, np.array([done[r.path]["z1"] for r in keep]), np.array([done[r.path]["z2"] for r in keep])


def fit(args: argparse.Namespace) -> None:
    from sklearn.linear_model import LogisticRegression

    from dfdetect.checkpoint import Checkpoint
    from dfdetect.metrics import auc, bootstrap_ci

    sets = _sets(Path(args.sets))
    done = {k: _done(k) for k in sets}
    val = [_arrays([r for r in rows if r.split == "val"], done[k]) for k, rows in sets.items()]
    y, z1, z2 = (np.concatenate(parts) for parts in zip(*val, strict=True))
    lr = LogisticRegression(C=1.0).fit(np.stack([z1, z2], 1), y)
    w = {"w_self": float(lr.coef_[0, 0]), "w_other": float(lr.coef_[0, 1]), "bias": float(lr.intercept_[0])}
    t1 = Checkpoint.load(WEIGHTS / "default.pt").temperature
    print(f"fusion fitted on val ({len(y)} clips): {w}; the default alone: T {t1:.3f}")
    for name, rows in sets.items():
        y, z1, z2 = _arrays([r for r in rows if r.split == "test"], done[name])
        if len(set(y.tolist())) < 2:
            continue
        alone, fused = z1 / t1, w["w_self"] * z1 + w["w_other"] * z2 + w["bias"]
        diffs, rng = [], np.random.default_rng(0)
        for _ in range(1000):
            i = rng.integers(0, len(y), len(y))
            if len(set(y[i].tolist())) == 2:
                diffs.append(auc(y[i], fused[i]) - auc(y[i], alone[i]))
        for label, s in (("default", alone), ("fused", fused)):
            lo, hi = bootstrap_ci(y, s, auc, n_boot=1000, seed=0)
            called = 1 / (1 + np.exp(-s)) >= BAND_HIGH
            n = f"{(y == 0).sum()}+{(y == 1).sum()}"
            print(f"{name} {label}: AUC {auc(y, s):.3f} [{lo:.2f}, {hi:.2f}] ({n}), reals called fake "
                  f"{int(called[y == 0].sum())}, fakes {int(called[y == 1].sum())}")  # fmt: skip
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        print(f"{name} fused - default: {auc(y, fused) - auc(y, alone):+.3f} [{lo:+.3f}, {hi:+.3f}]")
    (ROOT / "runs" / "fusion.json").write_text(json.dumps(w, indent=1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("score", "fit"):
        sub.add_parser(name).add_argument("--sets", default=str(ROOT / "runs/v4/sets"))
    args = parser.parse_args()
    (score if args.cmd == "score" else fit)(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
