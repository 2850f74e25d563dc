"""Fine-tune the speech model on a lent GPU machine that has no PyAV: ship the decoded training audio.

``pack`` (here) decodes the ``train`` and ``val`` files of a speech experiment exactly as training does
(16 kHz mono, re-encoded through the experiment's canonical codec, ``load_speech``) and stores them as
16-bit PCM in one ``.npz``; the held-out ``test`` files are never packed. ``train`` (there) serves those
arrays in place of ``load_speech`` and runs ``train_speech`` with the given overrides.

    python bench/gpu_speech.py pack configs/experiments/speech.yaml --out .gpu/speech.npz
    python bench/gpu_speech.py train --run-dir runs/x configs/experiments/speech.yaml .gpu/speech.npz \\
        train.device=cuda ...
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dfdetect.data.speech import speech_splits
from dfdetect.train.speech import load_speech_config, train_speech


def pack(config: str, out: Path) -> None:
    from dfdetect.data.speech import load_speech

    cfg = load_speech_config(config)
    splits = speech_splits(cfg.data)
    rows = splits["train"] + splits["val"]
    arrays = {}
    for row in tqdm(rows, desc="decode"):
        audio = load_speech(row.path, cfg.data.codec, cfg.data.bitrate, cfg.data.max_seconds)
        arrays[row.path] = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    out.parent.mkdir(parents=True, exist_ok=True)
    splits_blob = np.frombuffer(pickle.dumps(splits), dtype=np.uint8)  # the rows: labels.csv stays here
    arrays_named = {f"a{i}": a for i, a in enumerate(arrays.values())}
    np.savez(out, paths=np.array(list(arrays)), splits=splits_blob, **arrays_named)
    print(f"{out}: {len(arrays)} files, {out.stat().st_size / 1e6:.1f} MB")


def train(config: str, packed: Path, overrides: list[str], run_dir: str | None) -> None:
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("av") is None:  # only load_speech (replaced below) decodes with PyAV
        sys.modules["av"] = types.ModuleType("av")
    import dfdetect.data.speech as speech
    import dfdetect.train.speech as speech_training

    with np.load(packed) as z:
        audio = {str(p): z[f"a{i}"].astype(np.float32) / 32767 for i, p in enumerate(z["paths"])}
        splits = pickle.loads(z["splits"].tobytes())
    speech.load_speech = lambda path, *args, **kwargs: audio[str(path)]  # test files were never packed
    speech_training.speech_splits = lambda data: splits
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(train_speech(load_speech_config(config, overrides), run_dir, resume=False))


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("config")
    p.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train")
    t.add_argument("config")
    t.add_argument("packed", type=Path)
    t.add_argument("overrides", nargs="*")
    t.add_argument("--run-dir", default=None)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.config, args.out)
    else:
        train(args.config, args.packed, args.overrides, args.run_dir)


if __name__ == "__main__":
    main()
