"""`dfdetect train --config configs/experiments/demo.yaml [key=value ...] [--run-dir DIR] [--resume]`.

Multi-process training: ``torchrun --nproc_per_node=N -m dfdetect train --config ...``.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a detector from an experiment YAML",
        description=(
            "Train a detector from an experiment YAML (configs/experiments/*.yaml). Extra arguments "
            "key.sub=value override the config (values are YAML: train.epochs=3 optim.lr=1e-4). "
            "A run resumes exactly from RUN_DIR/checkpoints/last.pt when it exists."
        ),
    )
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--run-dir", default=None, help="output dir (default: the config's run_dir or runs/NAME)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--resume", dest="resume", action="store_const", const=True, default=None,
        help="resume from RUN_DIR/checkpoints/last.pt (an error when it is missing)",
    )  # fmt: skip
    group.add_argument(
        "--no-resume", dest="resume", action="store_const", const=False,
        help="start afresh even when a last.pt exists (overwrites the run)",
    )  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dfdetect.config import ConfigError
    from dfdetect.train.run import dump_experiment, load_experiment

    try:
        cfg = load_experiment(args.config, args.overrides)  # a video or a speech experiment
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_experiment(cfg), end="")
        return 0
    from dfdetect.checkpoint import CheckpointError
    from dfdetect.data.manifest import ManifestError
    from dfdetect.train.run import TrainingError, train

    run_dir = Path(args.run_dir) if args.run_dir else cfg.resolved_run_dir()
    if args.resume and not (run_dir / "checkpoints" / "last.pt").exists():
        print(f"error: --resume: no checkpoint {run_dir}/checkpoints/last.pt", file=sys.stderr)
        return 2
    try:
        out = train(cfg, run_dir=run_dir, resume=args.resume)
    except (TrainingError, ManifestError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"run dir: {out}")
    return 0
