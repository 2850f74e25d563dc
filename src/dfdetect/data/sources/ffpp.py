"""FaceForensics++ (Rössler et al. 2019) in the layout of its official download script.

```
ROOT/original_sequences/youtube/{raw|c23|c40}/videos/NNN.mp4
ROOT/original_sequences/actors/{raw|c23|c40}/videos/AA__scene.mp4               (DeepFakeDetection reals)
ROOT/manipulated_sequences/<Method>/{raw|c23|c40}/videos/TTT_SSS.mp4
ROOT/manipulated_sequences/DeepFakeDetection/{raw|c23|c40}/videos/AA_BB__scene__CODE.mp4
ROOT/splits/{train,val,test}.json                                                 (official splits)
```
The download script calls c0 ``raw``; both names are accepted and recorded as ``c0``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from dfdetect.data.manifest import FAKE, REAL, SPLITS, ManifestRow
from dfdetect.data.sources._common import (
    SOURCES,
    DatasetLayoutError,
    SourceOptionError,
    abs_root,
    as_tuple,
    find_child,
    iter_videos,
    layout_error,
)

log = logging.getLogger(__name__)

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
DFD = "DeepFakeDetection"
COMPRESSION_DIRS = {"c0": ("raw", "c0"), "c23": ("c23",), "c40": ("c40",)}
_PAIR = re.compile(r"^(\d+)_(\d+)$")
_ACTOR = re.compile(r"^(\d+)(?:_\d+)?__")  # "01__scene" (real) or "01_02__scene__CODE" (fake)
_HOLDS = "original_sequences/ and manipulated_sequences/"


def _compressions(value: object) -> tuple[str, ...]:
    items = as_tuple(value) or ("c23",)  # type: ignore[arg-type]
    out = []
    for item in items:
        c = "c0" if item.lower() in ("raw", "c0") else item.lower()
        if c not in COMPRESSION_DIRS:
            raise SourceOptionError(f"unknown FaceForensics++ compression {item!r}; use c0 (raw), c23 or c40")
        out.append(c)
    return tuple(dict.fromkeys(out))


def _video_dirs(parent: Path, compression: str) -> list[Path]:
    """``parent/<raw|c0|c23|c40>/videos`` folders that exist for one compression."""
    found = [find_child(parent, name) for name in COMPRESSION_DIRS[compression]]
    return [d / "videos" for d in dict.fromkeys(f for f in found if f is not None)]


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(str(a), str(b)) for a, b in data]
    except (OSError, ValueError, TypeError) as e:
        raise DatasetLayoutError(
            f'{path}: expected a JSON list of [target, source] id pairs like [["953", "974"], ...] '
            f"(the official FaceForensics++ split file): {e}"
        ) from None
    return pairs


def official_splits(root: Path, splits_dir: str | os.PathLike | None = None) -> dict[str, tuple[str, str]]:
    """Map video id -> (split, group) from ``splits/{train,val,test}.json`` ({} when absent).

    Both ids of a pair go to the pair's split; the group is the sorted pair ``"TTT_SSS"``.
    """
    folder = Path(splits_dir) if splits_dir is not None else root / "splits"
    files = {s: folder / f"{s}.json" for s in SPLITS}
    if splits_dir is None and not any(p.is_file() for p in files.values()):
        log.info("no official FaceForensics++ splits in %s: splits will be assigned by group", folder)
        return {}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DatasetLayoutError(
            f"official split file(s) not found: {', '.join(missing)}; put train.json, val.json and "
            f"test.json (from the FaceForensics++ repository's dataset/splits) in {folder}"
        )
    out: dict[str, tuple[str, str]] = {}
    for split, path in files.items():
        for a, b in _read_pairs(path):
            group = "_".join(sorted((a, b)))
            out[a] = out[b] = (split, group)
    return out


def _method_dirs(manip: Path, methods: tuple[str, ...] | None) -> dict[str, Path]:
    """Method name -> folder, for the manipulated_sequences sub-folders selected by ``methods``."""
    found = {p.name: p for p in sorted(manip.iterdir()) if p.is_dir()} if manip.is_dir() else {}
    if methods is None:
        return found
    by_lower = {name.lower(): name for name in found}
    out = {}
    for method in methods:
        if method.lower() == "real":
            continue
        if method.lower() not in by_lower:
            raise SourceOptionError(
                f"method {method!r} not found in {manip}; found: {', '.join(found) or 'none'}"
            )
        name = by_lower[method.lower()]
        out[name] = found[name]
    return out


def _fake_row(path: Path, method: str, compression: str, official: dict) -> ManifestRow:
    stem = path.stem
    split, group = "", stem
    if method == DFD:
        m = _ACTOR.match(stem)
        group = f"actor{m.group(1)}" if m else stem
    elif m := _PAIR.match(stem):
        target, source = m.groups()
        split, group = official.get(target, official.get(source, ("", "_".join(sorted((target, source))))))
    return ManifestRow(str(path), FAKE, "ffpp", method, split, group, compression)


def _real_rows(orig: Path, compressions, official: dict, partners: dict, actors: bool) -> list[ManifestRow]:
    rows = []
    youtube = find_child(orig, "youtube")
    for compression in compressions:
        for folder in _video_dirs(youtube, compression) if youtube else []:
            for path in iter_videos(folder, recursive=False):
                split, group = official.get(path.stem, ("", partners.get(path.stem, path.stem)))
                rows.append(ManifestRow(str(path), REAL, "ffpp", "real", split, group, compression))
        actor_dir = find_child(orig, "actors") if actors else None
        for folder in _video_dirs(actor_dir, compression) if actor_dir else []:
            for path in iter_videos(folder, recursive=False):
                m = _ACTOR.match(path.stem)
                group = f"actor{m.group(1)}" if m else path.stem
                rows.append(ManifestRow(str(path), REAL, "ffpp", "real", "", group, compression))
    return rows


@SOURCES.register("ffpp")
def scan_ffpp(
    root: str | os.PathLike,
    compressions: str | tuple[str, ...] = ("c23",),
    methods: str | tuple[str, ...] | None = None,
    splits_dir: str | os.PathLike | None = None,
) -> list[ManifestRow]:
    """FaceForensics++ videos as manifest rows (official splits where the split files are found).

    Args:
        root: folder holding ``original_sequences/`` and ``manipulated_sequences/``.
        compressions: any of c0 (= raw), c23, c40; one row per video and compression.
        methods: manipulation folders to include (None = all found). DeepFakeDetection also brings
            the ``original_sequences/actors`` reals.
        splits_dir: folder with the official ``train/val/test.json`` (default ``ROOT/splits``).

    Groups: the sorted id pair ``"TTT_SSS"`` for YouTube videos and their fakes (a fake shares its
    group with both reals of its pair); ``"actorNN"`` (the target actor) for DeepFakeDetection.
    """
    root = abs_root(root)
    orig, manip = root / "original_sequences", root / "manipulated_sequences"
    if not orig.is_dir() and not manip.is_dir():
        raise layout_error(root, "original_sequences", "FaceForensics++", _HOLDS)
    comps = _compressions(compressions)
    official = official_splits(root, splits_dir)
    fakes = []
    for method, folder in _method_dirs(manip, as_tuple(methods)).items():
        for compression in comps:
            for videos in _video_dirs(folder, compression):
                fakes += [_fake_row(p, method, compression, official) for p in iter_videos(videos, False)]
    partners = {}
    for row in fakes:
        if m := _PAIR.match(Path(row.path).stem):
            partners.setdefault(m.group(1), row.group)
            partners.setdefault(m.group(2), row.group)
    wants_dfd = methods is None or DFD.lower() in [m.lower() for m in as_tuple(methods) or ()]
    rows = _real_rows(orig, comps, official, partners, actors=wants_dfd) + fakes
    if not rows:
        wanted = ", ".join(d for c in comps for d in COMPRESSION_DIRS[c])
        raise DatasetLayoutError(
            f"no videos found under {root} for compression folder(s) {wanted}: expected "
            f"original_sequences/youtube/<{wanted}>/videos/*.mp4 and "
            f"manipulated_sequences/<Method>/<{wanted}>/videos/*.mp4 (choose compressions= to match)"
        )
    return rows
