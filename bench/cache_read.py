"""Benchmark: re-decoding a clip (prepare's decode: sampled frames at 5 fps) / reading its cache entry.

    python bench/cache_read.py [--repeat 5]

Training reads cache entries instead of videos; the goal is reading >= 20x faster than decoding.
The entry is made once with prepare_clip (faces + audio) in a temporary folder. Two reads are timed:
``full`` (np.load of every array through zipfile, with its CRC checks) and ``mapped`` (what the
training dataset does: crops memory-mapped, then every crop copied into memory, so all bytes are read).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import MEDIA, measure

from dfdetect.config import PrepareConfig
from dfdetect.data import cache
from dfdetect.data.prepare import prepare_clip
from dfdetect.io.audio import load_audio
from dfdetect.io.video import iter_frames

CLIPS = ["real/pcavs_Audio_Source_00015.mp4", "real/videoretalking_face_2.mp4", "real/ffpp_orig_519.mp4"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = PrepareConfig()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for rel in CLIPS:
            path = MEDIA / rel
            clip = prepare_clip(path, config)
            entry = cache.write_entry(tmp, clip)

            def decode(p: Path = path) -> None:
                for _ in iter_frames(p, fps=config.fps, max_duration=config.max_duration):
                    pass
                load_audio(p, config.sample_rate, max_duration=config.max_duration)

            t_decode = measure(decode, args.repeat).wall
            t_full = measure(lambda p=path: cache.read_entry(tmp, str(p)), args.repeat).wall
            t_read = measure(lambda e=entry: _read_mapped(e), args.repeat).wall
            ratios.append(t_decode / t_read)
            crops = sum(f.crops.shape[0] for f in clip.faces)
            print(
                f"{path.name[:30]:30s} entry {entry.stat().st_size / 1e6:6.1f} MB ({crops} crops) | decode "
                f"{t_decode * 1000:7.1f} ms | full read {t_full * 1000:6.1f} ms = {t_decode / t_full:5.1f}x"
                f" | mapped read {t_read * 1000:6.1f} ms = {ratios[-1]:6.1f}x"
            )
    print(f"decode / mapped cache read: median {np.median(ratios):.1f}x, min {min(ratios):.1f}x (goal >= 20)")


def _read_mapped(entry: Path) -> None:
    clip = cache.read_entry_file(entry, mmap=True)
    for face in clip.faces:
        np.array(face.crops)  # copy: every byte of the crops is read


if __name__ == "__main__":
    main()
