"""Two fitted heads of the default detector on the same held-out clips (issue 21): AUC with CIs, the paired
difference, TPR at 5 % FPR and the reals each calls ``fake`` at its own calibration, per set and per corpus
test family / real source.

    python bench/heads_compare.py runs/v5/clip-probe.pt runs/v6/clip-probe.pt [--sets runs/v6/sets]

Both heads read the same cached features (``bench/detect.py features``; the checkpoints must share a tower
and feature). Measured: docs/model_card_default.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from detect import FEATS
from detect_fit import BAND_HIGH, paired_difference

from dfdetect.metrics import auc, bootstrap_ci, tpr_at_fpr


def test_logits(ckpt_path: Path, sets_dir: Path, split: str) -> dict[str, dict]:
    """Per set: labels, paths, families and the head's calibrated logits (logit / T) of the ``split`` rows."""
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.train.probe import clip_logits, read_features
    from dfdetect.train.probe_fit import feature_settings, read_sets

    ckpt = Checkpoint.load(ckpt_path)
    model = ckpt.build_model()
    cfg = ckpt.model_config
    settings = feature_settings(cfg.get("encoder", "clip-vit-b16-int8"), cfg.get("feature", "embeds"))
    sets = read_sets(sorted(sets_dir.glob("*.csv")))
    out: dict[str, dict] = {}
    for part in sets:
        rows = [r for r in part.rows if r.split == split]
        for r, f in zip(rows, read_features(rows, FEATS / part.name, settings), strict=True):
            if f is not None:
                _add(out.setdefault(part.name, {"y": [], "paths": [], "unit": [], "f": []}), r, f)
    for s in out.values():
        s["z"] = clip_logits(model, s.pop("f")) / ckpt.temperature
        s["y"] = np.array(s["y"])
    return out


def _add(s: dict, r, f: dict) -> None:
    s["y"].append(r.label), s["paths"].append(r.path), s["f"].append(f)
    s["unit"].append((r.family or "?") if r.label == 1 else (r.source or r.dataset))


def _cell(y: np.ndarray, z: np.ndarray) -> str:
    lo, hi = bootstrap_ci(y, z, auc)
    called = int((1 / (1 + np.exp(-z[y == 0])) >= BAND_HIGH).sum())
    tpr = tpr_at_fpr(y, z, 0.05)
    return f"{auc(y, z):.3f} [{lo:.2f}, {hi:.2f}], TPR {tpr:.2f}, fake {called}/{(y == 0).sum()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--sets", type=Path, default=Path("runs/v6/sets"))
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    a, b = (test_logits(p, args.sets, args.split) for p in (args.a, args.b))
    joint = {}
    for name in a:
        common = sorted(set(a[name]["paths"]) & set(b[name]["paths"]))
        ia = [a[name]["paths"].index(p) for p in common]
        ib = [b[name]["paths"].index(p) for p in common]
        y = a[name]["y"][ia]
        if len(set(y.tolist())) < 2:
            continue  # one class only: no AUC
        joint[name] = {"y": y, "a": a[name]["z"][ia], "b": b[name]["z"][ib]}
        print(f"{name} ({len(y)} clips, {int(y.sum())} fake)\n  A {_cell(y, joint[name]['a'])}")
        print(f"  B {_cell(y, joint[name]['b'])}")
        units = np.array(a[name]["unit"])[ia]
        _per_unit(y, units, joint[name]["a"], joint[name]["b"])
    for name, d in paired_difference(joint, "b", "a").items():
        print(f"B - A {name}: {d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]")


def _per_unit(y: np.ndarray, units: np.ndarray, za: np.ndarray, zb: np.ndarray) -> None:
    """Per fake family: AUC against all the set's reals (A / B); per real source with any false alarm: the
    reals each calls fake."""
    reals = y == 0
    for u in sorted(set(units[~reals])):
        m = reals | (units == u)
        print(f"    {u}: {auc(y[m], za[m]):.2f} / {auc(y[m], zb[m]):.2f} ({(units == u).sum()})")
    for u in sorted(set(units[reals])):
        m = reals & (units == u)
        fa, fb = ((1 / (1 + np.exp(-z[m])) >= BAND_HIGH).sum() for z in (za, zb))
        if fa or fb:
            print(f"    real {u}: fake {fa} / {fb} of {m.sum()}")


if __name__ == "__main__":
    main()
