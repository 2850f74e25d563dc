"""Does a second frozen tower add to CLIP? The face crops' CLIP embeddings next to another tower's features
(issue 21).

    python bench/detect.py features --encoder dinov2-s-focus --feature cls+patch   # the other tower's cache
    python bench/towers.py [--other dinov2-s-focus --other-feature cls+patch] [--sets runs/v4/sets]

Per clip of the set manifests with both features cached (clean face crops, up to 3 frames, averaged):
clip-level heads on CLIP (the product's tower), the other tower, both concatenated, and the sum of the two
heads' standardised scores; leave-family-out cross-validation on train, then test with paired bootstrap
CIs against the CLIP MLP (``context_frames.compare_inputs``). Measured: docs/model_card_default.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from context_frames import FEATS, compare_inputs


def _table(args: argparse.Namespace) -> tuple:
    """Per clip with both towers' clean features: rows, set names, CLIP features, the other's."""
    from dfdetect.train.probe import read_features
    from dfdetect.train.probe_fit import feature_settings, read_sets

    clip, other = feature_settings(), feature_settings(args.other, args.other_feature)
    rows, names, a, b = [], [], [], []
    for s in read_sets(sorted(Path(args.sets).glob("*.csv"))):
        both = [read_features(s.rows, FEATS / s.name, settings) for settings in (clip, other)]
        for r, fa, fb in zip(s.rows, *both, strict=True):
            if not (_clean(fa) and _clean(fb)):
                continue
            rows.append(r), names.append(s.name)
            a.append(fa["feat_clean"].mean(0)), b.append(fb["feat_clean"].mean(0))
    return rows, np.array(names), np.array(a), np.array(b)


def _clean(features: dict | None) -> bool:
    return features is not None and len(features.get("feat_clean", [])) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="runs/v4/sets", help="folder of the set manifests")
    parser.add_argument("--other", default="dinov2-s-focus", help="the second frozen tower")
    parser.add_argument("--other-feature", default="cls+patch")
    args = parser.parse_args()
    rows, names, clip, other = _table(args)
    print(f"{len(rows)} clips with both towers' features", flush=True)
    inputs = {"clip": clip, "other": other, "concat": np.hstack([clip, other])}
    compare_inputs(rows, names, inputs, base="clip", fused=("clip", "other"))


if __name__ == "__main__":
    main()
