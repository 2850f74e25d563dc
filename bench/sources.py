"""Listing a dataset at full scale: `scan_source` + manifest write/read on a LAV-DF-sized official tree.

Builds (once, under --root) a LAV-DF tree with the real dataset's size and split sizes (136,304 videos:
78,703 train, 31,501 dev, 26,100 test; zero-byte videos, a metadata.json of the official schema, three
fakes per real video), then times what `dfdetect prepare lavdf` does before decoding anything: listing
the videos (`scan_source`: metadata, file checks, groups, splits, leak check), writing the manifest and
reading it back. Printed: seconds of each and videos per second of the listing.

    python bench/sources.py [--root /tmp/dfdetect-bench-lavdf] [--videos 136304]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SPLITS = (("train", 78703), ("dev", 31501), ("test", 26100))


def make_tree(root: Path, n: int) -> Path:
    """A LAV-DF tree of ``n`` videos in the official layout (kept: built only once)."""
    base = root / "LAV-DF"
    if (base / "metadata.json").is_file():
        return base
    total = sum(k for _, k in SPLITS)
    bounds, entries, i = [], [], 0
    for split, k in SPLITS:
        i += round(k * n / total)
        bounds.append((split, i))
    for i in range(n):
        split = next(s for s, b in bounds if i < b)
        real, file = i % 4 == 0, f"{split}/{i:06d}.mp4"
        (base / split).mkdir(parents=True, exist_ok=True)
        (base / file).touch()
        entries.append({
            "file": file, "split": split, "n_fakes": 0 if real else 1,
            "fake_periods": [] if real else [[1.0 + 0.01 * (i % 50), 1.6 + 0.01 * (i % 50)]],
            "modify_video": not real and i % 3 != 0, "modify_audio": not real and i % 3 != 1,
            "original": None if real else f"{split}/{i - i % 4:06d}.mp4", "duration": 5.0,
            "video_frames": 125, "audio_channels": 1, "audio_frames": 80000,
        })  # fmt: skip
    (base / "metadata.json").write_text(json.dumps(entries))
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/dfdetect-bench-lavdf")
    parser.add_argument("--videos", type=int, default=136304)
    args = parser.parse_args()
    from dfdetect.data.manifest import read_manifest, write_manifest
    from dfdetect.data.sources import scan_source

    base = make_tree(Path(args.root), args.videos)
    t0 = time.perf_counter()
    rows = scan_source("lavdf", base)
    t1 = time.perf_counter()
    write_manifest(rows, Path(args.root) / "manifest.csv")
    t2 = time.perf_counter()
    back = read_manifest(Path(args.root) / "manifest.csv")
    t3 = time.perf_counter()
    assert back == rows
    print(f"{len(rows)} videos: list {t1 - t0:.1f} s ({len(rows) / (t1 - t0):,.0f} videos/s), "
          f"write manifest {t2 - t1:.1f} s, read manifest {t3 - t2:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
