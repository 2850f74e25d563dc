"""`dfdetect cache pack|unpack`: move a run's training caches to another machine, small (crops as JPEG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="pack a run's train/val cache entries small for another machine, or unpack them there",
        description=(
            "pack: the train and val entries of a run's split manifests (RUN/data/<source>.csv), face crops "
            "re-encoded as JPEG, into one tar.gz; unpack: write them back as ordinary cache entries. "
            "Held-out entries never travel."
        ),
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    pk = verbs.add_parser("pack", help="pack a run's train/val entries")
    pk.add_argument(
        "--run", dest="run_dir", type=Path, required=True, help="the run dir (its data/<source>.csv)"
    )
    pk.add_argument("--prepared", type=Path, default=Path("prepared"), help="folder of prepared sources")
    pk.add_argument("--out", type=Path, required=True, help="the archive to write (.tar.gz)")
    pk.add_argument("--quality", type=int, default=90, help="JPEG quality of the crops (default 90)")
    pk.add_argument("--max-frames", type=int, default=None, help="cut every face track to its first N frames")
    pk.add_argument("--drop-audio", action="store_true", help="leave the audio out (visual-only models)")
    pk.add_argument("--source", action="append", help="prepared source name(s) (default: all of the run's)")
    up = verbs.add_parser("unpack", help="unpack an archive into prepared cache entries")
    up.add_argument("archive", type=Path)
    up.add_argument("--prepared", type=Path, default=Path("prepared"), help="folder of prepared sources")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dfdetect.data.pack import pack, unpack

    try:
        if args.verb == "unpack":
            n = unpack(args.archive, args.prepared)
            print(f"unpacked {n} cache entries into {args.prepared}")
            return 0
        sources = tuple(args.source) if args.source else None
        counts = pack(
            args.run_dir, args.prepared, args.out, args.quality, args.max_frames, args.drop_audio, sources
        )
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for source, n in counts.items():
        print(f"{source}: {n} entries")
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")
    return 0
