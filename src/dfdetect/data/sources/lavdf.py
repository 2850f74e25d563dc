"""LAV-DF (Cai et al., "Do You Really Mean That?", DICTA 2022): content-driven audio-visual fakes whose
manipulated words are localised in time.

```
ROOT/metadata.json               (or metadata.min.json) a JSON list, one entry per video:
    {"file": "train/000001.mp4", "split": "train" | "dev" | "test", "n_fakes": 1,
     "fake_periods": [[2.24, 2.72]], "modify_video": true, "modify_audio": false,
     "original": "train/000123.mp4" | null, "duration": 5.12, "video_frames": 128, ...}
ROOT/train/*.mp4  ROOT/dev/*.mp4  ROOT/test/*.mp4
```
``fake_periods`` are in seconds. ``dev`` is the validation split (recorded as ``val``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from dfdetect.data.manifest import FAKE, REAL, ManifestRow
from dfdetect.data.sources._common import (
    SOURCES,
    DatasetLayoutError,
    SourceOptionError,
    abs_root,
    as_tuple,
    layout_error,
)

log = logging.getLogger(__name__)

METADATA_NAMES = ("metadata.json", "metadata.min.json")
SPLIT_NAMES = {"train": "train", "dev": "val", "val": "val", "test": "test"}
_HOLDS = "metadata.json and the train/, dev/, test/ folders"


def modify_method(video: bool, audio: bool) -> str:
    """Method name of a (video modified, audio modified) pair, in AV-Deepfake1M's ``modify_type`` words."""
    return {(0, 0): "real", (1, 0): "visual_modified", (0, 1): "audio_modified"}.get(
        (int(video), int(audio)), "both_modified"
    )


def periods(value: Any, where: str) -> tuple[tuple[float, float], ...]:
    """Fake periods ``[[start, end], ...]`` (seconds) as sorted pairs (raises naming ``where``)."""
    try:
        pairs = [(float(a), float(b)) for a, b in (value or [])]
    except (TypeError, ValueError):
        raise DatasetLayoutError(
            f"{where}: expected fake periods [[start, end], ...] in seconds, got {value!r}"
        ) from None
    return tuple(sorted((min(a, b), max(a, b)) for a, b in pairs))


def read_entries(path: Path, what: str) -> list[dict[str, Any]]:
    """The JSON list of metadata entries in ``path`` (each a dict with at least ``file``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetLayoutError(f"{path}: unreadable {what} ({e}); download it again") from None
    if not isinstance(data, list) or not all(isinstance(e, dict) and "file" in e for e in data):
        raise DatasetLayoutError(f'{path}: expected the {what}, a JSON list of {{"file": ..., ...}} entries')
    return data


def keep_groups_in_one_split(rows: list[ManifestRow], dataset: str) -> list[ManifestRow]:
    """Rows outside their group's home split get the group ``<split>/<group>``.

    The home split is the one of the group's real video (else its most common split). The official
    splits are kept (results stay comparable with published ones); a source video whose fakes sit in
    another split then counts as one group per split (logged).
    """
    splits: dict[str, Counter] = defaultdict(Counter)
    real_split: dict[str, str] = {}
    for row in rows:
        splits[row.group][row.split] += 1
        if row.label == REAL:
            real_split.setdefault(row.group, row.split)
    home = {g: real_split.get(g, c.most_common(1)[0][0]) for g, c in splits.items() if len(c) > 1}
    if not home:
        return rows
    log.warning(
        "%s: %d source videos have fakes in another official split (e.g. %s); those fakes get a group of "
        "their own split, so the official splits stay as published",
        dataset,
        len(home),
        sorted(home)[0],
    )
    return [
        replace(r, group=f"{r.split}/{r.group}") if r.group in home and r.split != home[r.group] else r
        for r in rows
    ]


def wanted_splits(splits: str | Iterable[str] | None, known: dict[str, str]) -> set[str] | None:
    """Official split names selected by the ``splits`` option (None = all)."""
    items = as_tuple(splits)
    if items is None:
        return None
    unknown = [s for s in items if s not in known]
    if unknown:
        raise SourceOptionError(f"unknown split(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return set(items)


def _metadata(root: Path, metadata: str | os.PathLike | None) -> Path:
    if metadata is not None:
        path = Path(metadata)
        if not path.is_file():
            raise DatasetLayoutError(f"metadata file {path} not found (LAV-DF's metadata.json)")
        return path
    for name in METADATA_NAMES:
        if (root / name).is_file():
            return root / name
    raise layout_error(root, "metadata.json", "LAV-DF", _HOLDS)


def source_id(original: Any, file: str) -> str:
    """Group id of a video: its ``original`` (else its own file) without extension, forward slashes."""
    return os.path.splitext(str(original or file).replace("\\", "/"))[0]


def _row(path: str, entry: dict[str, Any], where: str) -> ManifestRow:
    split = SPLIT_NAMES.get(str(entry.get("split", "")).lower(), "")
    video, audio = bool(entry.get("modify_video")), bool(entry.get("modify_audio"))
    spans = periods(entry.get("fake_periods"), where)
    label = FAKE if (video or audio or spans) else REAL
    return ManifestRow(
        path=path,
        label=label,
        dataset="lavdf",
        method=modify_method(video, audio) if label == FAKE else "real",
        split=split,
        group=source_id(entry.get("original"), entry["file"]),
        video_label=int(video),
        audio_label=int(audio),
        segments=spans if label == FAKE else (),
    )


@SOURCES.register("lavdf")
def scan_lavdf(
    root: str | os.PathLike,
    metadata: str | os.PathLike | None = None,
    splits: str | tuple[str, ...] | None = None,
) -> list[ManifestRow]:
    """LAV-DF videos as manifest rows with per-modality labels and their fake periods (``segments``).

    Args:
        root: the ``LAV-DF`` folder (holding ``metadata.json`` and ``train/``, ``dev/``, ``test/``).
        metadata: the metadata file (default ``ROOT/metadata.json``, else ``ROOT/metadata.min.json``).
        splits: official splits to list (``train``, ``dev``, ``test``; default all).

    Splits are the official ones (``dev`` -> ``val``). Group: the original (real) video a fake was made
    from, shared with that real video. Method: ``real``, ``visual_modified``, ``audio_modified`` or
    ``both_modified``. Videos listed but missing on disk are skipped (counted in a warning).
    """
    root = abs_root(root)
    meta_path = _metadata(root, metadata)
    keep = wanted_splits(splits, {"train": "train", "dev": "val", "test": "test"})
    rows, missing, base = [], 0, str(root)
    for i, entry in enumerate(read_entries(meta_path, "LAV-DF metadata")):
        if keep is not None and str(entry.get("split", "")).lower() not in keep:
            continue
        path = os.path.join(base, entry["file"])  # plain strings: much faster than pathlib at 1e5 videos
        if not os.path.isfile(path):
            missing += 1
            continue
        rows.append(_row(path, entry, f"{meta_path} entry {i} ({entry['file']})"))
    if missing:
        log.warning("%s: %d listed videos are missing under %s", meta_path, missing, root)
    if not rows:
        raise DatasetLayoutError(
            f"none of the videos listed in {meta_path} was found under {root}: expected e.g. "
            f"{root}/train/000000.mp4 (point ROOT at the LAV-DF folder that holds {_HOLDS})"
        )
    return keep_groups_in_one_split(rows, "lavdf")
