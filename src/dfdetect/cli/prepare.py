"""`dfdetect prepare SOURCE ROOT --out DIR`: a dataset (or a folder of videos) -> manifest + cache.

`dfdetect prepare catalog CATALOG [CATALOG ...] --git-root DIR --out DIR`: corpus catalogues of git blobs
(extracted, verified, cut, split by generator family) -> manifest + cache.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dfdetect.config import PrepareConfig
    from dfdetect.data.catalog import CatalogSummary
    from dfdetect.data.prepare import PrepareSummary

SOURCE_NAMES = ("ffpp", "celebdf", "dfdc", "fakeavceleb", "lavdf", "avdeepfake1m", "folder", "catalog")
# CLI flag -> PrepareConfig field (None = keep the config's default)
_CONFIG_FLAGS = {
    "fps": "fps",
    "size": "size",
    "margin": "margin",
    "max_frames": "max_frames",
    "detect_every": "detect_every",
    "detect_size": "detect_size",
    "max_faces": "max_faces",
    "min_face_size": "min_face_size",
    "detector": "detector",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="decode videos once, track faces, extract audio, write a manifest + cache",
        description=(
            "Prepare a dataset in its official layout (ffpp, celebdf, dfdc, fakeavceleb, lavdf, "
            "avdeepfake1m), your own "
            "folder of videos (`dfdetect prepare folder PATH`) or corpus catalogues of git blobs "
            "(`dfdetect prepare catalog corpus/video --git-root DIR`) into OUT/manifest.csv, OUT/cache/, "
            "OUT/prepare_report.jsonl and OUT/prepare_config.json. Re-running resumes: videos already "
            "prepared with the same settings are skipped."
        ),
    )
    p.add_argument("source", choices=SOURCE_NAMES, metavar="SOURCE", help=f"one of {', '.join(SOURCE_NAMES)}")
    p.add_argument(
        "root", metavar="ROOT", nargs="+",
        help="dataset folder (or folder of videos, or a labels CSV); catalog: catalogue CSVs or folders",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="output folder (default: ./prepared/SOURCE)")
    p.add_argument("--fps", type=float, help="frames sampled per second (default 5)")
    p.add_argument("--size", type=int, help="side of the square face crops, pixels (default 224)")
    p.add_argument("--margin", type=float, help="crop side = margin x face box side (default 1.3)")
    p.add_argument("--max-duration", type=float, help="seconds read per video; 0 = all (default 60)")
    p.add_argument("--max-frames", type=int, help="sampled frames read per video (default: no limit)")
    p.add_argument("--detect-every", type=int, help="detect faces every n-th sampled frame (default 5)")
    p.add_argument("--detect-size", type=int, help="longest side given to the detector (default 640)")
    p.add_argument("--max-faces", type=int, help="face tracks kept per video (default 3)")
    p.add_argument("--min-face-size", type=int, help="smallest face kept, pixels (default 40)")
    p.add_argument("--detector", help="face detector: mtcnn (default) or yunet (faster, no torch)")
    p.add_argument("--align", action="store_true", help="rotate crops so the eyes are level")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default 2; 1 = in this process); with --ray-address: Ray workers "
        "(default: as many as the cluster's CPUs hold)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="spread the videos over Ray: local (start one here), auto, HOST:6379 or ray://HOST:10001; "
        "OUT must be on storage every node sees",
    )
    p.add_argument("--limit", type=int, default=None, help="prepare a reproducible subset of N videos")
    p.add_argument("--seed", type=int, default=0, help="seed of split assignment and --limit")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="source option, repeatable (e.g. --option compressions=c23,c40 for ffpp)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_catalog_args(p)
    p.set_defaults(run=run)


def _add_catalog_args(parser: argparse.ArgumentParser) -> None:
    c = parser.add_argument_group("catalog (corpus catalogues of git blobs)")
    c.add_argument("--git-root", default=None, help="where repositories are: OWNER+NAME/repo")
    c.add_argument("--clone", action="store_true", help="blobless-clone what the root lacks")
    c.add_argument(
        "--splits", default=None,
        help="split file naming test/val families and real sources (default: splits.yaml beside or above "
        "the first catalogue, e.g. corpus/splits.yaml)",
    )  # fmt: skip


def _source_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must look like KEY=VALUE, got {pair!r}")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dfdetect.config import PrepareConfig
    from dfdetect.data.prepare import prepare_source
    from dfdetect.data.sources import DatasetLayoutError, SourceOptionError
    from dfdetect.data.splits import SplitLeakError

    values = {field: getattr(args, flag) for flag, field in _CONFIG_FLAGS.items()}
    values = {k: v for k, v in values.items() if v is not None}
    if args.max_duration is not None:
        values["max_duration"] = args.max_duration if args.max_duration > 0 else None
    if args.align:
        values["align"] = True
    out = Path(args.out) if args.out else Path("prepared") / args.source
    try:
        config = PrepareConfig(**values)
        options = _source_options(args.option)
    except (ValidationError, ValueError) as e:
        print(f"dfdetect prepare: bad setting: {e}", file=sys.stderr)
        return 2
    workers, runner = 2 if args.workers is None else args.workers, None
    errors: tuple[type[Exception], ...] = (DatasetLayoutError, SourceOptionError, SplitLeakError)
    if args.ray_address:
        from functools import partial

        from dfdetect.batch.cluster import ClusterError
        from dfdetect.batch.prepare import prepare_on_ray

        workers, runner = args.workers, partial(prepare_on_ray, address=args.ray_address)
        errors += (ClusterError,)
    problem = _catalog_problem(args)
    if problem:
        print(f"dfdetect prepare: {problem}", file=sys.stderr)
        return 2
    try:
        if args.source == "catalog":
            summary, catalog = _run_catalog(args, out, config, workers, runner)
        else:
            summary, catalog = prepare_source(
                args.source, args.root[0], out, config, workers=workers, seed=args.seed,
                limit=args.limit, progress=not args.quiet, runner=runner, **options,
            ), None  # fmt: skip
    except errors as e:
        print(f"dfdetect prepare: {e}", file=sys.stderr)
        return 2
    if args.quiet:
        print(summary.format())
        if catalog is not None:
            print(catalog.format())
    print(f"manifest: {out / 'manifest.csv'}  report: {out / 'prepare_report.jsonl'}")
    return 0


def _catalog_problem(args: argparse.Namespace) -> str:
    """What is wrong with the catalog-only arguments ("" when nothing)."""
    if args.source != "catalog":
        if len(args.root) > 1:
            return f"{args.source} takes one ROOT, got {len(args.root)} (only catalog takes several)"
        if args.git_root or args.clone or args.splits:
            return "--git-root, --clone and --splits are options of `dfdetect prepare catalog`"
        return ""
    if not args.git_root:
        return "catalog needs --git-root DIR (where OWNER+NAME/repo mirrors are, or clones go with --clone)"
    if args.limit is not None or args.option:
        return "catalog takes no --limit or --option (list fewer rows in a catalogue instead)"
    return ""


def _default_splits(roots: list[str]) -> str | None:
    """``splits.yaml`` beside or above the first catalogue (``corpus/splits.yaml`` for ``corpus/video``)."""
    first = Path(roots[0]).resolve()
    for folder in (first if first.is_dir() else first.parent, first.parent):
        if (folder / "splits.yaml").is_file():
            return str(folder / "splits.yaml")
    return None


def _run_catalog(
    args: argparse.Namespace, out: Path, config: PrepareConfig, workers: int | None, runner: Callable | None
) -> tuple[PrepareSummary, CatalogSummary]:
    """``dfdetect prepare catalog``: the catalogue step, then the usual prepare (or ``runner``)."""
    from dfdetect.data.catalog import prepare_catalog

    splits = args.splits or _default_splits(args.root)
    return prepare_catalog(
        args.root, out, args.git_root, clone=args.clone, splits=splits, config=config, workers=workers,
        progress=not args.quiet, runner=runner,
    )  # fmt: skip
