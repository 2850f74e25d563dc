"""`dfdetect calibrate-voice CONFIG --model M [--write]`: a speech model's real-voice ceiling p0."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate-voice",
        help="measure a speech model's real-voice ceiling p0 on held-out real voices",
        description=(
            "Scan the real voices of a speech experiment's held-out splits as dfdetect scan does, and "
            "report the score only 5 %% of them exceed (p0), every real source weighing the same (its "
            "repository, else its dataset): in a video, only a voice above p0 can raise the verdict. Fit it "
            "on real voices the model never trained on. --write records p0 in the speech model's checkpoint."
        ),
    )
    p.add_argument("config", help="speech experiment YAML (its data section names the labelled files)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--model", default="aasist-l", help="speech model name or checkpoint path")
    p.add_argument(
        "--split",
        action="append",
        help="held-out split(s) (default: val; a ceiling fitted on test is not held out)",
    )
    p.add_argument("--seconds", type=float, default=None, help="seconds read per file (default: one window)")
    p.add_argument("--quantile", type=float, default=0.95)
    p.add_argument("--out", default=None, help="JSON file with p0, how it was measured and every score")
    p.add_argument(
        "--anchor",
        action="store_true",
        help="also set the temperature that puts p0 at the verdict band's upper edge (0.65): a voice scanned "
        "on its own is then called fake only above the ceiling; the ranking is unchanged",
    )
    p.add_argument(
        "--write", action="store_true", help="record p0 (and the --anchor temperature) in the checkpoint"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import shlex

    from dfdetect.config import ConfigError
    from dfdetect.eval.voice_ceiling import anchored, measure_ceiling, write_ceiling
    from dfdetect.infer.lookup import ModelNotFoundError

    extra = {} if args.seconds is None else {"seconds": args.seconds}
    splits = args.split or ("val",)
    try:
        got = measure_ceiling(
            args.config, args.model, splits, quantile=args.quantile, overrides=args.overrides, **extra
        )
    except (ConfigError, ModelNotFoundError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    got.info["command"] = shlex.join(["dfdetect", *args.argv])  # the whole command line, as fit-probe does
    if args.anchor:
        before = got.p0
        try:
            got = anchored(got)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"anchored: temperature {got.info['temperature']:.4f} puts p0 = {before:.4f} at {got.p0}")
    values = list(got.scores.values())
    print(
        f"{args.model}: {len(values)} held-out real voices ({got.info['speakers']} speakers, "
        f"{len(got.skipped)} without speech skipped): p0 = q{args.quantile:.2f} = {got.p0:.4f}; "
        f"max {max(values):.4f}"
    )
    promise = got.info.get("new_source_above")
    if promise:
        share, files = promise["per_source"], promise["per_file"]
        print(
            f"leave-one-source-out ({got.info['sources']} sources): a real source it never saw has "
            f"{share:.1%} of its voices above p0 on average ({files:.1%} of files)"
        )
    if args.out:
        from dfdetect.io.files import atomic_write_text

        record = {"p0": got.p0, **got.info, "scores": got.scores, "skipped": got.skipped}
        atomic_write_text(args.out, json.dumps(record, indent=1))
    if args.write:
        print(f"p0 written into {write_ceiling(args.model, got)}")
    return 0
