"""`dfdetect soup --config RUN/config.yaml A.pt B.pt --out soup.pt`: a weight average chosen on val."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soup",
        help="average checkpoints of one recipe into a greedy model soup (chosen on val)",
        description=(
            "Greedy model soup: score each checkpoint on the validation split of the experiment it was "
            "trained with, then average the weights of the best ones while the validation AUC holds. "
            "The checkpoints must share one architecture (runs of one recipe). Test data is never read."
        ),
    )
    p.add_argument("checkpoints", nargs="+", help="checkpoints of one recipe (runs/*/checkpoints/best.pt)")
    p.add_argument("--config", required=True, help="the experiment they were trained with (RUN/config.yaml)")
    p.add_argument("--out", required=True, help="where to write the soup (float16, no training state)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from dfdetect.checkpoint import CheckpointError
    from dfdetect.config import ConfigError
    from dfdetect.data.manifest import ManifestError
    from dfdetect.train.soup import make_soup

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = make_soup(args.config, args.checkpoints, args.out)
    except (ConfigError, CheckpointError, ManifestError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # load_state_dict: the checkpoints do not share one architecture
        print(f"error: these checkpoints cannot be averaged ({str(e).splitlines()[0]})", file=sys.stderr)
        return 2
    print(json.dumps({"steps": result.steps, "members": result.members, "val_auc": result.val_auc}, indent=1))
    print(f"soup of {len(result.members)} -> {args.out}")
    return 0
