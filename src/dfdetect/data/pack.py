"""Move prepared caches to a training machine: pack the entries a run trains on into one small file
(face crops as JPEG), and unpack them there into ordinary cache entries.

Prepared caches store face crops uncompressed (77 KB per 160 px frame, 1.25 GB for the three default
sources), which is more than a lent GPU machine can be sent. Training reads only the ``train`` and
``val`` entries of a run's split manifests (``runs/<run>/data/<source>.csv``), so only those are packed.
Crops are re-encoded at JPEG ``quality`` (default 90): a mild, uniform loss well inside the training
augmentation (JPEG 40-95, H.264 CRF 18-36); every other array (boxes, landmarks, timestamps, audio,
metadata) is kept exactly, and unpacked entries keep their names, so the run's manifests find them.

    dfdetect cache pack --run runs/default --prepared prepared --out .gpu/data/caches.tar.gz
    dfdetect cache unpack .gpu/data/caches.tar.gz --prepared prepared      # on the GPU machine
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

KEEP_SPLITS = ("train", "val")
SMALL_FILES = ("manifest.csv", "prepare_config.json")


def _is_crops(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and array.ndim == 4 and array.shape[-1] == 3


def _trimmed(arrays: dict[str, np.ndarray], max_frames: int | None) -> dict[str, np.ndarray]:
    """Every face track cut to its first ``max_frames`` frames (all of a track's per-frame arrays)."""
    if max_frames is None:
        return arrays
    lengths = {n.split("_")[0]: len(a) for n, a in arrays.items() if n.endswith("_timestamps")}
    return {
        n: a[:max_frames] if n.split("_")[0] in lengths and len(a) == lengths[n.split("_")[0]] else a
        for n, a in arrays.items()
    }


def encode_entry(entry: Path, quality: int, max_frames: int | None = None, drop_audio: bool = False) -> bytes:
    """One cache entry as an ``.npz`` whose crop stacks are JPEG streams (bytes + per-frame sizes),
    optionally with its tracks cut to ``max_frames`` and without its audio (for visual-only models)."""
    out: dict[str, np.ndarray] = {}
    with np.load(entry, allow_pickle=False) as z:
        arrays = _trimmed({name: z[name] for name in z.files}, max_frames)
    if drop_audio:
        arrays["audio"] = np.zeros(0, np.float32)
    for name, array in arrays.items():
        if not _is_crops(array):
            out[name] = array
            continue
        jpegs = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1] for f in array]
        out[f"{name}.jpeg"] = np.concatenate(jpegs) if jpegs else np.zeros(0, np.uint8)
        out[f"{name}.sizes"] = np.array([len(j) for j in jpegs], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, **out)
    return buf.getvalue()


def decode_entry(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a packed entry, crop stacks decoded back to ``[T, H, W, 3]`` RGB uint8."""
    arrays: dict[str, np.ndarray] = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        for name in z.files:
            if name.endswith(".sizes"):
                continue
            if not name.endswith(".jpeg"):
                arrays[name] = z[name]
                continue
            stream, sizes = z[name], z[name.removesuffix(".jpeg") + ".sizes"]
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            spans = zip(bounds[:-1], bounds[1:], strict=True)
            frames = [cv2.imdecode(stream[a:b], cv2.IMREAD_COLOR)[..., ::-1] for a, b in spans]
            arrays[name.removesuffix(".jpeg")] = np.ascontiguousarray(np.stack(frames))
    return arrays


def _entries(run: Path, prepared: Path, source: str) -> list[Path]:
    from dfdetect.data.cache import entry_path

    with open(run / "data" / f"{source}.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f) if row["split"] in KEEP_SPLITS]
    entries = [entry_path(prepared / source / "cache", p) for p in paths]
    return [e for e in entries if e.is_file()]


def run_sources(run: Path) -> tuple[str, ...]:
    """The prepared sources a run trained on: the names of its split manifests ``RUN/data/<source>.csv``."""
    return tuple(sorted(p.stem for p in (run / "data").glob("*.csv")))


def pack(
    run: Path,
    prepared: Path,
    out: Path,
    quality: int = 90,
    max_frames: int | None = None,
    drop_audio: bool = False,
    sources: tuple[str, ...] | None = None,
) -> dict[str, int]:
    """Pack the ``train``/``val`` entries of ``run``'s sources (default: all of them) found under
    ``prepared/<source>/cache`` into the tar.gz ``out`` (written atomically); returns entries per source."""
    sources = sources or run_sources(run)
    if not sources:
        raise FileNotFoundError(
            f"{run / 'data'} holds no split manifests (<source>.csv): is {run} a run dir?"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {}
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for source in sources:
            for name in SMALL_FILES:
                tar.add(prepared / source / name, arcname=f"{source}/{name}")
            entries = _entries(run, prepared, source)
            for entry in entries:
                data = encode_entry(entry, quality, max_frames, drop_audio)
                info = tarfile.TarInfo(f"{source}/cache/{entry.parent.name}/{entry.name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            counts[source] = len(entries)
            log.info("%s: %d entries", source, len(entries))
    tmp.replace(out)
    return counts


def unpack(archive: Path, prepared: Path) -> int:
    """Write the packed entries of ``archive`` as ordinary cache entries under ``prepared`` (each file
    atomically; names that would leave ``prepared`` are refused); returns the number of entries."""
    n, root = 0, prepared.resolve()
    with tarfile.open(archive) as tar:
        for member in tar:
            target = (prepared / member.name).resolve()
            if not member.isfile() or not target.is_relative_to(root):
                raise ValueError(f"{archive}: unexpected member {member.name!r}, not a packed cache")
            data = tar.extractfile(member).read()
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                if member.name.endswith(".npz"):
                    np.savez(f, **decode_entry(data))
                    n += 1
                else:
                    f.write(data)
            os.replace(tmp, target)
    return n
