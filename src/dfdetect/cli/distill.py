"""`dfdetect distill --teacher T.pt --student MODEL.yaml --data DATA... [--out DIR] [KEY=VALUE ...]`.

A small student learns a trained teacher's calibrated scores on real clips, the self-blended pseudo-fakes
made from them and the dataset's fakes (``dfdetect.train.distill``); the result ``DIR/student.pt`` is an
ordinary checkpoint for ``dfdetect scan --model`` and ``dfdetect eval``.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="distil a trained detector into a smaller, faster student",
        description=(
            "Train a student model (a model YAML, e.g. configs/models/student.yaml) on the calibrated soft "
            "scores of a teacher checkpoint (and the hard labels where known), in the ordinary training "
            "loop (resumable, logged). --data: one data YAML, or prepared dirs / manifest CSVs (e.g. the "
            "RUN/data/<source>.csv the teacher's training wrote), whose sample settings then come from the "
            "teacher's training data. Extra KEY=VALUE override the config (distill.tau=2 train.epochs=3)."
        ),
    )
    p.add_argument("--teacher", help="teacher checkpoint (.pt) or packaged model name (e.g. v2)")
    p.add_argument("--student", help="student model YAML (configs/models/*.yaml)")
    p.add_argument("--data", action="append", default=[], help="data YAML, prepared dir or manifest CSV "
                   "(repeat for several sources)")  # fmt: skip
    p.add_argument("--cache", action="append", default=[],
                   help="cache dir of a manifest CSV without one beside it (in --data order)")  # fmt: skip
    p.add_argument("--config", default=None, help="base experiment YAML with a distill: section "
                   "(e.g. configs/experiments/distill.yaml)")  # fmt: skip
    p.add_argument("--out", default=None, help="run dir (default: the config's run_dir or runs/NAME)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs")
    p.add_argument("--size", type=int, default=None, help="student input size (default: the teacher's)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", dest="resume", action="store_const", const=True, default=None,
                       help="resume from OUT/checkpoints/last.pt (an error when it is missing)")  # fmt: skip
    group.add_argument("--no-resume", dest="resume", action="store_const", const=False,
                       help="start afresh even when a last.pt exists")  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(run=run)


def _teacher(name: str | None) -> str | None:
    """A checkpoint path as given, or the file of a packaged model name."""
    if name is None:
        return None
    from dfdetect.infer.lookup import ModelNotFoundError, resolve_model

    try:
        return str(resolve_model(name, onnx=False)[0])
    except ModelNotFoundError:
        return name  # reported by the config step with what to do


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dfdetect.checkpoint import CheckpointError
    from dfdetect.config import ConfigError
    from dfdetect.data.manifest import ManifestError
    from dfdetect.train.distill import distill, distill_config, experiment_dict
    from dfdetect.train.run import TrainingError

    overrides = list(args.overrides)
    overrides += [f"train.epochs={args.epochs}"] if args.epochs else []
    overrides += [f"distill.size={args.size}"] if args.size else []
    try:
        cfg, dcfg = distill_config(_teacher(args.teacher), args.student, args.data, args.cache, args.config,
                                   overrides)  # fmt: skip
    except (ConfigError, CheckpointError, ManifestError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(experiment_dict(cfg, dcfg), sort_keys=False), end="")
        return 0
    run_dir = Path(args.out) if args.out else cfg.resolved_run_dir()
    if args.resume and not (run_dir / "checkpoints" / "last.pt").exists():
        print(f"error: --resume: no checkpoint {run_dir}/checkpoints/last.pt", file=sys.stderr)
        return 2
    try:
        out = distill(cfg, dcfg, run_dir=run_dir, resume=args.resume)
    except (TrainingError, ManifestError, CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"student: {out}")
    return 0
