"""Command line: ``dfdetect <command>``; each command module has ``add_parser(sub)`` and ``run(args)``.

The command modules import the heavy library parts (torch, PyAV) only inside ``run``, so
``dfdetect --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dfdetect._version import __version__

COMMANDS = (
    "prepare", "train", "eval", "scan", "batch", "export", "serve", "distill",
    "soup", "cache", "calibrate_voice", "fit_probe",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfdetect",
        description="Audio-visual deepfake detection: prepare datasets, train, evaluate, scan videos.",
    )
    parser.add_argument("--version", action="version", version=f"dfdetect {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"dfdetect.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a command that writes a model records it
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
