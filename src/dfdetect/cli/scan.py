"""`dfdetect scan`: scan videos, images and audio files (files, folders or globs) for deepfakes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from dfdetect.cli.options import UsageError, add_faces, add_threshold_band, scan_options

if TYPE_CHECKING:
    from dfdetect.infer.options import ScanOptions
    from dfdetect.types import Prediction

EXIT_OK = 0  # every input scanned, none judged fake
EXIT_FAKE = 1  # at least one video judged fake
EXIT_USAGE = 2  # usage error, no input found, model cannot be loaded
EXIT_INCOMPLETE = 3  # no video judged fake, but some inputs could not be scored

EPILOG = """\
exit codes:
  0  every input was scanned and none was judged fake (real or uncertain)
  1  at least one video was judged fake (whatever happened to the others)
  2  usage error: bad arguments, no input found, or the model could not be loaded
  3  nothing was judged fake, but some inputs could not be scored
     (status unreadable, no_video, no_face, no_speech or error; see the status column / message)

kinds: a video is scored face track by face track; a still image (jpg, png, webp, ...) face by face;
an audio file (wav, mp3, flac, ...) from audio alone when the model hears (else no_video).

speech: when the video model names a speech model (the default one names whisper-speech), that model also
judges the speech of a video; its score is the "audio" column, and the verdict fuses it with the visual
score so that only a voice more synthetic-sounding than 95 % of real voices can raise it. --no-speech
turns it off, --speech MODEL picks another.

statuses: ok, no_audio (scored from video only), no_face, no_speech, no_video, unreadable, error.

examples:
  dfdetect scan clip.mp4
  dfdetect scan videos/ "more/**/*.mov" --jsonl > results.jsonl
  dfdetect scan clip.mp4 --explain --report report.html
  dfdetect scan clip.mp4 --uncertainty 8     # p_fake ± its spread over 8 Monte-Carlo dropout passes
  dfdetect scan clip.mp4 --faces yunet       # YuNet faces: with the packaged ONNX models, no torch at all
"""

_SCORED = frozenset({"ok", "no_audio"})


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="scan videos for deepfakes (calibrated verdict, timeline, explanations)",
        description="Scan video files, folders (recursively) or glob patterns and print a verdict per video.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="media files, folders or glob patterns")
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help="model name (see the list on error), checkpoint path, or .onnx from `dfdetect export --onnx` "
        "(runs on onnxruntime; default: packaged)",
    )
    voice = p.add_mutually_exclusive_group()
    voice.add_argument(
        "--speech",
        metavar="MODEL",
        default="auto",
        help="speech model (name or checkpoint) that also judges a video's speech "
        "(default: the one the video model names, e.g. whisper-speech)",
    )
    voice.add_argument("--no-speech", dest="speech", action="store_const", const=None, help="no speech model")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON list of predictions on stdout")
    out.add_argument("--jsonl", action="store_true", help="print one JSON object per video, as each is done")
    p.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report")
    p.add_argument("--explain", action="store_true", help="add Grad-CAM heatmaps, attention and sync curves")
    p.add_argument("--explain-dir", metavar="DIR", help="write explanation images to DIR (paths in JSON)")
    add_threshold_band(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    p.add_argument("--max-duration", type=float, metavar="S", help="seconds read from each video")
    p.add_argument("--aggregation", choices=("mean", "max", "topk", "attention"), default="mean")
    add_faces(p)
    p.add_argument(
        "--uncertainty",
        type=int,
        default=0,
        metavar="N",
        help="N more passes of the model over the same faces (Monte-Carlo dropout, or test-time "
        "augmentation for a model without dropout): p_fake's std (the ± column) and 90 %% interval; "
        "an interval reaching both sides of the threshold band makes the verdict uncertain (N >= 2)",
    )
    p.add_argument(
        "--uncertainty-method",
        choices=("auto", "dropout", "tta"),
        default="auto",
        help="auto: dropout when the model has it, else tta (default: auto)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=run)


def _fmt(p: float | None) -> str:
    return "-" if p is None else f"{p:.3f}"


def _spread(p: Prediction) -> tuple[str, str]:
    """The ``±`` (std) and ``90% interval`` cells of a prediction scanned with uncertainty."""
    u = p.uncertainty
    return ("-", "-") if u is None else (f"{u.std:.3f}", f"{u.low:.2f}-{u.high:.2f}")


def table(predictions: list[Prediction]) -> str:
    """A plain-text table: path, status, verdict, p_fake (± std and 90 % interval with uncertainty),
    visual/audio/sync, faces, seconds."""
    spread = any(p.uncertainty is not None for p in predictions)
    head = ("path", "kind", "status", "verdict", "p_fake", *(("±", "90% interval") if spread else ()))
    head += ("visual", "audio", "sync", "faces", "seconds")
    rows = [head]
    for p in predictions:
        path = p.path if len(p.path) <= 48 else "…" + p.path[-47:]
        rows.append(
            (
                path,
                str(p.kind),
                str(p.status),
                str(p.verdict) if p.verdict else "-",
                _fmt(p.p_fake),
                *(_spread(p) if spread else ()),
                _fmt(p.modality.get("visual")),
                _fmt(p.modality.get("audio")),
                _fmt(p.modality.get("sync")),
                str(len(p.tracks)),
                f"{p.timings.get('total', 0.0):.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def exit_code(predictions: list[Prediction]) -> int:
    """The documented exit code (see ``EPILOG``) for a finished scan."""
    if any(str(p.verdict) == "fake" for p in predictions):
        return EXIT_FAKE
    if any(str(p.status) not in _SCORED for p in predictions):
        return EXIT_INCOMPLETE
    return EXIT_OK


def _summary(predictions: list[Prediction]) -> str:
    counts: dict[str, int] = {}
    for p in predictions:
        key = str(p.verdict) if p.verdict else f"not scored ({p.status})"
        counts[key] = counts.get(key, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    return f"scanned {len(predictions)} file(s): {parts}"


def _options(args: argparse.Namespace) -> ScanOptions:
    """The scan options of the arguments.

    Raises:
        UsageError: a bad value (the message names the flag).
    """
    return scan_options(
        thresholds=tuple(args.threshold_band),
        aggregation=args.aggregation,
        max_duration=args.max_duration,
        speech=args.speech,
        uncertainty=args.uncertainty,
        uncertainty_method=args.uncertainty_method,
        faces=args.faces,
        explain=bool(args.explain or args.explain_dir),
        thumbnails=bool(args.report),
    )


def _load(args: argparse.Namespace, options: ScanOptions) -> Any:
    from dfdetect.checkpoint import CheckpointError
    from dfdetect.infer.lookup import ModelNotFoundError
    from dfdetect.infer.pipeline import load_detector

    try:
        # heatmaps (gradients) and dropout passes need the torch model: then a name gives its .pt
        torch_model = options.explain or bool(options.uncertainty)
        return load_detector(args.model, device=args.device, onnx=not torch_model, options=options)
    except (ModelNotFoundError, CheckpointError, ValueError) as e:
        print(f"dfdetect scan: error: {e}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    from dfdetect.io.files import expand_inputs

    try:
        options = _options(args)
    except UsageError as e:
        print(f"dfdetect scan: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    found, missing = expand_inputs(args.paths)
    if not found:
        print(f"dfdetect scan: error: no input found for: {' '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    for m in missing:
        print(f"dfdetect scan: warning: nothing found for {m!r}", file=sys.stderr)
    detector = _load(args, options)
    if detector is None:
        return EXIT_USAGE
    predictions: list[Prediction] = []
    scans = detector.scan_many(args.paths, explain_dir=args.explain_dir, progress=not args.no_progress)
    for pred in scans:
        predictions.append(pred)
        if args.jsonl:
            print(json.dumps(pred.to_dict()), flush=True)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    elif not args.jsonl:
        print(table(predictions))
    if args.report:
        from dfdetect.infer.report import write_report

        path = write_report(args.report, predictions, thresholds=options.thresholds)
        print(f"report written to {path}", file=sys.stderr)
    print(_summary(predictions), file=sys.stderr)
    return exit_code(predictions)
