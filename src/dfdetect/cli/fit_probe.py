"""`dfdetect fit-probe MANIFEST... --features DIR --out DIR`: the default detector's recipe (clip-probe)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-probe",
        help="fit a frozen-tower probe (the default detector's recipe) on manifests with train/val/test rows",
        description=(
            "Cache the frozen CLIP tower's features of every train and val clip (decoded as a scan decodes "
            "it; resumable), fit the candidate heads with and without self-blends on train, keep the one "
            "whose worst set scores best in cross-validation on train holding out whole families, real "
            "sources and repositories (or by val AUC: "
            "--select val), calibrate it on val (temperature and logit shift: Platt scaling), fit the "
            "abstention rule on train, and write OUT/clip-probe.pt (recording this command, the manifests' "
            "sha256 and the feature settings) and OUT/fit.json. Test rows are never read."
        ),
    )
    p.add_argument(
        "manifests",
        nargs="+",
        metavar="MANIFEST",
        help="manifest CSVs or prepared folders (their manifest.csv)",
    )
    p.add_argument(
        "--features",
        type=Path,
        required=True,
        help="feature cache (one folder per manifest, named by its stem)",
    )
    p.add_argument("--out", type=Path, help="where to write clip-probe.pt and fit.json")
    p.add_argument("--encoder", default="clip-vit-b16-int8", help="frozen tower (default: clip-vit-b16-int8)")
    p.add_argument("--feature", default="embeds", help="the tower's feature the head reads (default: embeds)")
    p.add_argument(
        "--max-windows",
        type=int,
        default=3,
        help="frames (1 s windows) per clip at most, evenly spaced (default 3)",
    )
    p.add_argument(
        "--select",
        choices=["cv", "val"],
        default="cv",
        help="choose the head by cross-validation on train, whole generator families and real sources held "
        "out per fold (default; val when the sets are too small), or by val AUC",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the tower (default: its own)")
    p.add_argument("--features-only", action="store_true", help="compute the missing features, fit nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dfdetect.data.manifest import ManifestError
    from dfdetect.metrics import MetricError
    from dfdetect.train.probe_fit import ProbeFitError

    if not args.features_only and args.out is None:
        print(
            "error: give --out DIR (where clip-probe.pt and fit.json go), or --features-only", file=sys.stderr
        )
        return 2
    try:
        return _fit(args)
    except (ManifestError, ProbeFitError, MetricError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _fit(args: argparse.Namespace) -> int:
    """Features, then (unless ``--features-only``) the fit and its two files."""
    import dataclasses
    import json
    import shlex

    import torch

    from dfdetect.io.files import atomic_write_text
    from dfdetect.train import probe_fit as pf

    sets = pf.read_sets(args.manifests)
    settings = pf.feature_settings(args.encoder, args.feature, args.max_windows)
    if args.threads:
        torch.set_num_threads(args.threads)
    extracted = pf.compute_features(sets, args.features, settings, args.threads)
    counts = pf.row_counts(sets, args.features, settings)
    if args.features_only:
        _print_counts(extracted, counts)
        return 0
    rows, feats = pf.read_set_features(sets, args.features, settings)
    names = pf.set_names(sets)
    fit = pf.fit_probe(rows, feats, settings, sets=names, selection=args.select, folds=args.folds)
    command = shlex.join(["dfdetect", *getattr(args, "argv", sys.argv[1:])])
    records = [s.record() for s in sets]
    ckpt = pf.write_probe(args.out / "clip-probe.pt", fit, settings, records, command)
    results = {**fit.results(), "command": command, "manifests": records, "rows": counts,
               "features": dataclasses.asdict(settings), "extracted": extracted}  # fmt: skip
    atomic_write_text(args.out / "fit.json", json.dumps(results, indent=1))
    _print_counts(extracted, counts)
    for name, value in fit.val_auc.items():
        cv = ", ".join(f"{k} {v:.3f}" for k, v in fit.cv_auc.get(name, {}).items())
        cv = f"  cross-validated AUC {cv}" if cv else ""
        print(f"  {name:<28} val AUC {value:.3f}{cv}{'  <- chosen' if name == fit.chosen else ''}")
    by = "its worst set's cross-validated AUC" if fit.selection == "cv" else "val AUC"
    print(f"chosen {fit.chosen} (by {by}), temperature {fit.temperature:.3f}, logit shift {fit.shift:+.3f}")
    _print_anchor(fit.anchor)
    print(f"abstain {fit.rule}")
    print(f"wrote {ckpt} and {args.out / 'fit.json'}")
    return 0


def _print_counts(extracted: dict[str, dict[str, int]], counts: dict[str, dict[str, Any]]) -> None:
    for name, c in extracted.items():
        print(f"features {name}: {c['done']} computed, {c['cached']} cached, {c['no_face']} without a face, "
              f"{c['failed']} failed")  # fmt: skip
    for split, c in counts.items():
        extra = "" if split != "test" else " (not read)"
        print(f"{split}: {c['real']} real, {c['fake']} fake{extra}", end="")
        print(f"; {c['no_face']} without a face, {c['not_cached']} not cached" if not extra else "")


def _print_anchor(anchor: dict[str, Any]) -> None:
    """What the false-alarm anchor of the calibration did (``train.probe_fit.calibrate``)."""
    if anchor:
        edge, share, n, k = anchor["band"][1], 1 - anchor["quantile"], anchor["n_real"], anchor["scale"]
        moved = f"moved onto it (scale {k:.3f})" if k > 1 else "already below it: unchanged"
        who = f"{share:.0%} of {n} val reals ({anchor['sources']} sources alike)"
        print(f"false alarms: {who} at p >= {edge}: their quantile was p {anchor['p_before']:.3f}, {moved}")
