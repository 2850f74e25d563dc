"""Out-of-fold scores of the product's head on two cached features, their sum, and the false alarms each
would raise (issue 21): what cross-validation on train says before test is read.

    python bench/cv_compare.py [--features embeds blocks] [--sets runs/v4/sets] [--fits runs/cvrepo]

For each feature (cached by ``bench/detect.py features --feature F``): the ``mlp64/clean+aug`` head, fitted
fold by fold on the train clips with ``fit-probe``'s folds (whole families, real sources and their
repositories held out; 5 folds x 3 shuffles), scores every held-out clip. Per set: the out-of-fold AUC, TPR
at 5 % FPR, and the share of real clips at or above the verdict band's upper edge after the calibration
``fit-probe`` fitted on val for that feature (``FITS/<feature>/fit.json``: temperature and logit shift),
for each feature and for the sum of the two features' standardised scores. Measured:
docs/model_card_default.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BAND_HIGH = 0.65  # constants.VERDICT_BAND's upper edge


def out_of_fold_scores(sets_dir: Path, feature: str) -> dict[tuple[str, str], tuple[int, float]]:
    """(set, path) -> (label, out-of-fold logit averaged over the shuffles) of every train clip."""
    from dfdetect.train.probe_cv import cv_plan, out_of_fold
    from dfdetect.train.probe_fit import HEADS, feature_settings, read_set_features, read_sets, set_names

    sets = read_sets(sorted(sets_dir.glob("*.csv")))
    settings = feature_settings(feature=feature)
    rows, feats = read_set_features(sets, "runs/features", settings)
    train = [(r, f, n) for r, f, n in zip(rows, feats, set_names(sets), strict=True)
             if r.split == "train" and f is not None]  # fmt: skip
    rows, feats, names = (list(x) for x in zip(*train, strict=True))
    hidden, c = HEADS["mlp64"]
    runs = out_of_fold(settings, hidden, c, ("clean", "aug"), (rows, feats), cv_plan(rows, names))
    mean = np.nanmean(np.stack(runs), axis=0)
    return {(n, r.path): (r.label, float(z)) for r, n, z in zip(rows, names, mean, strict=True)}


def _row(y: np.ndarray, z: np.ndarray, p: np.ndarray | None) -> str:
    from sklearn.metrics import roc_curve

    from dfdetect.metrics import auc

    fpr, tpr, _ = roc_curve(y, z)
    cells = f"AUC {auc(y, z):.3f}, TPR@5%FPR {np.interp(0.05, fpr, tpr):.2f}"
    if p is not None:
        cells += f", reals >= {BAND_HIGH}: {(p[y == 0] >= BAND_HIGH).sum()}/{(y == 0).sum()}"
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", nargs=2, default=["embeds", "blocks"])
    parser.add_argument("--sets", type=Path, default=Path("runs/v4/sets"))
    parser.add_argument("--fits", type=Path, default=Path("runs/cvrepo"), help="FITS/<feature>/fit.json")
    args = parser.parse_args()
    scores = {f: out_of_fold_scores(args.sets, f) for f in args.features}
    keys = sorted(set.intersection(*(set(s) for s in scores.values())))
    for name in sorted({k[0] for k in keys}):
        mine = [k for k in keys if k[0] == name]
        y = np.array([scores[args.features[0]][k][0] for k in mine])
        zs = {f: np.array([scores[f][k][1] for k in mine]) for f in args.features}
        print(f"{name} ({(y == 0).sum()} real + {(y == 1).sum()} fake train clips, out of fold):")
        for f, z in zs.items():
            fit = json.loads((args.fits / f / "fit.json").read_text())
            p = 1 / (1 + np.exp(-(z + fit["shift"]) / fit["temperature"]))
            print(f"  {f}: {_row(y, z, p)}")
        both = sum((z - z.mean()) / z.std() for z in zs.values())
        print(f"  sum of the two, standardised: {_row(y, both, None)}")


if __name__ == "__main__":
    main()
