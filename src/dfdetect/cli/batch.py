"""`dfdetect batch INPUTS... --out DIR`: scan many files on Ray (local or a cluster), resumably."""

from __future__ import annotations

import argparse
import sys

from dfdetect.cli.options import UsageError, add_faces, add_threshold_band, scan_options

EXIT_OK = 0  # every input has its result (whatever the verdicts)
EXIT_USAGE = 2  # bad arguments, no input, Ray or the model unavailable, output folder busy
EXIT_FAILED = 3  # some files failed on every try (workers died); a re-run retries them

EPILOG = """\
inputs: media files, folders (recursively), glob patterns, a manifest CSV (its path column) or a text
file of paths (.txt/.lst/.list: one file, folder or glob per line; relative to the list's folder).

output (in --out): results.jsonl (one record per file, appended as each finishes), parquet/part-*.parquet
(the same records as columns), summary.json (done / skipped / failed, by status, by verdict, rate).
Re-running skips files already scanned with the same model and the same content; a worker that dies
loses only the file it was scanning, which is retried (--retries), then recorded with status error.

exit codes:
  0  every input has a result (see the status and verdict columns)
  2  usage error: bad arguments, no input found, Ray or the model unavailable, --out in use
  3  some files failed on every try (recorded with status error; the next run retries them)

examples:
  dfdetect batch uploads/ --out results/
  dfdetect batch manifest.csv --out results/ --workers 4 --model default
  dfdetect batch "s3mnt/**/*.mp4" --out results/ --ray-address auto --num-gpus 0.25
  dfdetect batch uploads/ --out results/ --ray-address auto --num-gpus 0.5 --workers 8 --extract-workers 56
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="scan many files on Ray (local or a cluster) into JSON lines + Parquet, resumable",
        description="Scan files, folders, globs, manifests or lists of paths with Ray workers that each "
        "hold a loaded model; results go to --out as they finish.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders, globs, manifests, lists")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="results folder (created; resumed)")
    p.add_argument("--model", "-m", default=None, help="model name or checkpoint path (default: packaged)")
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: start a local Ray)",
    )
    p.add_argument("--workers", type=int, default=None, help="workers (default: as many as fit the cluster)")
    p.add_argument(
        "--num-cpus", type=float, default=1.0, help="CPUs per worker = its torch threads (default 1)"
    )
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per worker, e.g. 0.25 (default 0: CPU)")
    p.add_argument(
        "--cpu-workers",
        type=int,
        default=0,
        metavar="N",
        help="N more workers on CPU only, 1 CPU each, beside --num-gpus workers (CPU nodes help too)",
    )
    p.add_argument(
        "--extract-workers",
        type=int,
        default=0,
        metavar="N",
        help="two stages: N workers of 1 CPU decode and find faces, the other workers (--num-gpus) only "
        "run the model on what they send",
    )
    p.add_argument("--retries", type=int, default=2, help="tries after a worker dies on a file (default 2)")
    p.add_argument("--shard-size", type=int, default=1000, help="records per Parquet shard (default 1000)")
    p.add_argument("--no-speech", action="store_true", help="no speech model on a video's speech")
    p.add_argument("--max-duration", type=float, metavar="S", help="seconds read from each file")
    add_threshold_band(p)
    add_faces(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=run)


def _error(message: str) -> int:
    print(f"dfdetect batch: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from dfdetect.batch.cluster import ClusterError
    from dfdetect.batch.inputs import collect_inputs
    from dfdetect.batch.results import BatchOutputError
    from dfdetect.batch.scan import BatchOptions, run_batch
    from dfdetect.data.manifest import ManifestError
    from dfdetect.infer.lookup import ModelNotFoundError

    try:
        scan = scan_options(
            thresholds=tuple(args.threshold_band),
            max_duration=args.max_duration,
            speech=None if args.no_speech else "auto",
            faces=args.faces,
        )
    except UsageError as e:
        return _error(str(e))
    if min(args.retries, args.num_gpus, args.cpu_workers, args.extract_workers) < 0:
        return _error("--retries, --num-gpus, --cpu-workers and --extract-workers >= 0 please")
    if args.num_cpus <= 0 or args.shard_size < 1:
        return _error("--num-cpus > 0 and --shard-size >= 1 please")
    try:
        paths, missing = collect_inputs(args.inputs)
    except (ValueError, ManifestError, OSError) as e:
        return _error(str(e))
    for m in missing:
        print(f"dfdetect batch: warning: nothing found for {m!r}", file=sys.stderr)
    if not paths:
        return _error(f"no input found for: {' '.join(args.inputs)}")
    try:
        options = BatchOptions(
            model=args.model, address=args.ray_address, workers=args.workers, num_cpus=args.num_cpus,
            num_gpus=args.num_gpus, cpu_workers=args.cpu_workers, extract_workers=args.extract_workers,
            retries=args.retries, shard_size=args.shard_size, progress=not args.no_progress, scan=scan,
        )  # fmt: skip
        summary = run_batch(paths, args.out, options, missing=missing)
    except (ClusterError, BatchOutputError, ModelNotFoundError, ValueError) as e:
        return _error(str(e))
    print(summary.format(), file=sys.stderr)
    return EXIT_FAILED if summary.failed else EXIT_OK
