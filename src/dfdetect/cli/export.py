"""`dfdetect export`: a checkpoint without its training state, ready to ship or scan with; or, with
``--onnx``, its detector as a self-describing ONNX file that scans on onnxruntime."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="strip the training state from a checkpoint, or export it to ONNX (for scanning / shipping)",
        description="Copy a checkpoint without optimizer, scheduler and RNG state (OUT), and/or export its\n"
        "detector to ONNX (--onnx): float32, dynamic batch and time axes, with the preprocessing,\n"
        "calibration, companions and versions in the file's metadata, so that\n"
        "`dfdetect scan --model model.onnx` needs nothing else (docs/onnx.md).",
        epilog="examples:\n  dfdetect export runs/demo/checkpoints/best.pt model.pt --half\n"
        "  dfdetect export model.pt --onnx model.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="checkpoint from `dfdetect train` (e.g. runs/demo/checkpoints/best.pt)")
    p.add_argument(
        "out", nargs="?", help="where to write the exported checkpoint (.pt; optional with --onnx)"
    )
    p.add_argument("--half", action="store_true", help="store the .pt weights in float16 (half the size)")
    p.add_argument("--onnx", metavar="OUT.onnx", help="also (or only) export the detector to this ONNX file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dfdetect.checkpoint import CheckpointError, export_checkpoint

    if args.out is None and args.onnx is None:
        print("error: give OUT (a .pt file), --onnx OUT.onnx, or both")
        return 2
    try:
        if args.out is not None:
            path = export_checkpoint(args.checkpoint, args.out, half=args.half)
            print(f"exported {args.checkpoint} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if args.onnx is not None:
            return _onnx(args.checkpoint, args.onnx)
    except CheckpointError as e:
        print(f"error: {e}")
        return 2
    return 0


def _onnx(src: str, dst: str) -> int:
    """Export ``src`` to the ONNX file ``dst`` and say how close it is to torch."""
    try:
        from dfdetect.infer.onnx_export import export_onnx, read_check
    except ImportError as e:
        print(
            f"error: ONNX export needs onnx, onnxscript and onnxruntime ({e}): pip install 'dfdetect[scale]'"
        )
        return 2
    print(f"exporting {src} to ONNX (a minute or two on a small CPU)...")
    path = export_onnx(src, dst)
    worst = max(read_check(path).values(), default=0.0)
    size = path.stat().st_size / 1e6
    print(f"exported {src} -> {path} ({size:.1f} MB, float32; onnxruntime vs torch: max |diff| {worst:.1e})")
    return 0
