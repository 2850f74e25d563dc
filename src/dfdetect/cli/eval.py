"""`dfdetect eval`: score a manifest with a checkpoint, write predictions.jsonl and a report."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on prepared manifests (predictions.jsonl + report.md/html)",
        description="Score the videos of a prepared manifest and write predictions, metrics and a report.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.pt) from `dfdetect train`")
    p.add_argument(
        "--manifest",
        required=True,
        action="append",
        help="manifest.csv from `dfdetect prepare`; repeat for cross-dataset results (first = in-domain)",
    )
    p.add_argument(
        "--cache",
        action="append",
        help="cache folder per manifest (default: the manifest's folder/cache)",
    )
    p.add_argument("--split", default="test", help="split to score: test, val, train or all (default test)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--aggregation", default="mean", choices=["mean", "max", "topk", "attention"])
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.6, 0.7], help="decision thresholds")
    p.add_argument("--perturb", action="store_true", help="robustness study (JPEG, blur, H.264, audio...)")
    p.add_argument(
        "--perturb-only", nargs="+", metavar="NAME", help="run only these perturbations (implies --perturb)"
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit the temperature on the val split and store it in the checkpoint before scoring",
    )
    p.add_argument(
        "--pseudofakes",
        nargs="*",
        choices=["sbi", "desync", "swap", "sbi_partial"],
        metavar="KIND",
        help="add one held-back pseudo-fake per real video of the split and kind: sbi, desync, swap "
        "(no KIND = all three); for videos without fakes. Rows are keyed <path>#<kind>. sbi_partial "
        "(by name only): a span of the video blended, scored as temporal localization",
    )
    p.add_argument("--ablation", action="store_true", help="also score video only and audio only")
    p.add_argument(
        "--uncertainty",
        type=int,
        default=0,
        metavar="N",
        help="N stochastic passes per video (MC dropout, else test-time augmentation): is the spread "
        "informative? (AUC of the spread for wrong vs right, accuracy after abstaining)",
    )
    add_attack_arguments(p)
    p.add_argument("--run-dir", help="training run folder (metrics.jsonl / tb) for the training curves")
    p.add_argument("--modality", choices=["video", "audio"], help="score with one modality only")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument("--limit", type=int, help="score at most this many videos per manifest")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the CIs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dfdetect.checkpoint import CheckpointError
    from dfdetect.data.manifest import ManifestError
    from dfdetect.eval.evaluate import EvalOptions, evaluate
    from dfdetect.metrics import MetricError

    perturb = args.perturb_only or args.perturb
    try:
        options = EvalOptions(
            split=args.split,
            aggregation=args.aggregation,
            modality_mask=args.modality,
            thresholds=args.thresholds,
            device=args.device,
            batch_size=args.batch_size,
            perturb=list(perturb) if isinstance(perturb, list) else perturb,
            ablation=args.ablation,
            calibrate=args.calibrate,
            run_dir=args.run_dir,
            limit=args.limit,
            progress=not args.no_progress,
            n_boot=args.bootstrap,
            pseudofakes=args.pseudofakes,
            uncertainty=args.uncertainty,
            attack=attack_spec(args),
        )
        report = evaluate(args.checkpoint, args.manifest, args.cache, args.out, options)
    except (CheckpointError, ManifestError, MetricError, ValueError) as e:
        print(f"dfdetect eval: {e}", file=sys.stderr)
        return 2
    print(f"report: {report} (and {report.with_suffix('.html')})")
    print(f"predictions: {report.parent / 'predictions.jsonl'}")
    return 0


def _eps_list(text: str) -> tuple[float, ...]:
    from dfdetect.eval.attack import parse_eps

    try:
        return parse_eps(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _eps_one(text: str) -> float:
    values = _eps_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"give one step size, e.g. 0.5/255, not {text!r}")
    return values[0]


def add_attack_arguments(p: argparse.ArgumentParser) -> None:
    """``--attack``, ``--eps``, ``--steps``, ``--step-size``, ``--attack-source`` (adversarial robustness)."""
    p.add_argument(
        "--attack",
        choices=["fgsm", "pgd"],
        help="white-box attack on the face crops at each --eps (report: AUC and attack success rate)",
    )
    p.add_argument(
        "--eps",
        type=_eps_list,
        default="1/255,2/255,4/255",
        help="attack budgets, L-inf in pixels of [0, 1], comma-separated (default 1/255,2/255,4/255)",
    )
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    p.add_argument("--step-size", type=_eps_one, help="PGD step, e.g. 0.5/255 (default 2.5 x eps / steps)")
    p.add_argument(
        "--attack-source",
        metavar="CHECKPOINT",
        help="craft the attack on this checkpoint and score it with --checkpoint (transfer setting)",
    )


def attack_spec(args: argparse.Namespace) -> dict | None:
    """The ``evaluate(attack=...)`` fields of the parsed flags (None without ``--attack``)."""
    if not args.attack:
        return None
    return {
        "kind": args.attack,
        "eps": args.eps,
        "steps": args.steps,
        "step_size": args.step_size,
        "source": args.attack_source,
    }
