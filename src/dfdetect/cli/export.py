"""`dfdetect export`: a checkpoint without its training state, ready to ship or scan with."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="strip the training state from a checkpoint (for scanning / shipping)",
        description="Copy a checkpoint without optimizer, scheduler and RNG state. "
        "The copy still rebuilds the model and its preprocessing.",
    )
    p.add_argument("checkpoint", help="checkpoint from `dfdetect train` (e.g. runs/demo/checkpoints/best.pt)")
    p.add_argument("out", help="where to write the exported checkpoint (.pt)")
    p.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dfdetect.checkpoint import CheckpointError, export_checkpoint

    try:
        path = export_checkpoint(args.checkpoint, args.out, half=args.half)
    except CheckpointError as e:
        print(f"error: {e}")
        return 2
    print(f"exported {args.checkpoint} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
