"""AV-Deepfake1M (Cai et al., ACM MM 2024): over 1 M LLM-driven audio-visual fakes with localised
manipulated segments (the successor of LAV-DF).

```
ROOT/train_metadata.json   a JSON list, one entry per video of ROOT/train/:
    {"file": "lrs3/.../fake_video_fake_audio.mp4", "original": "lrs3/.../real.mp4" | null,
     "split": "train", "modify_type": "real" | "visual_modified" | "audio_modified" | "both_modified",
     "fake_segments": [[1.2, 1.68]], "visual_fake_segments": [...], "audio_fake_segments": [...],
     "audio_model": "yourtts", "video_frames": 150, "audio_frames": 96000}
ROOT/train/<file>
ROOT/val_metadata.json, ROOT/val/<file>
ROOT/test_files.txt, ROOT/test/<file>   (the test set has no labels)
```
``fake_segments`` are in seconds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dfdetect.data.manifest import FAKE, REAL, UNKNOWN, ManifestRow
from dfdetect.data.sources._common import (
    SOURCES,
    DatasetLayoutError,
    SourceOptionError,
    abs_root,
    iter_videos,
    layout_error,
)
from dfdetect.data.sources.lavdf import (
    keep_groups_in_one_split,
    periods,
    read_entries,
    source_id,
    wanted_splits,
)

log = logging.getLogger(__name__)

SUBSETS = {"train": "train", "val": "val", "test": "test"}
MODIFY_TYPES = ("real", "visual_modified", "audio_modified", "both_modified")
GROUP_BY = ("original", "folder")
_HOLDS = "train_metadata.json, val_metadata.json and the train/, val/ folders"


def _modify_type(entry: dict[str, Any], where: str) -> str:
    kind = str(entry.get("modify_type", "")).strip().lower().replace("-", "_")
    if kind not in MODIFY_TYPES:
        raise DatasetLayoutError(
            f"{where}: modify_type must be one of {', '.join(MODIFY_TYPES)}, got {kind!r}"
        )
    return kind


def _group(entry: dict[str, Any], group_by: str) -> str:
    source = source_id(entry.get("original"), entry["file"])
    return source.rpartition("/")[0] if group_by == "folder" else source


def _row(path: str, entry: dict[str, Any], split: str, group_by: str, where: str) -> ManifestRow:
    kind = _modify_type(entry, where)
    spans = periods(entry.get("fake_segments"), where)
    label = REAL if kind == "real" and not spans else FAKE
    return ManifestRow(
        path=path,
        label=label,
        dataset="avdeepfake1m",
        method=kind if label == FAKE else "real",
        split=split,
        group=_group(entry, group_by),
        video_label=int(kind in ("visual_modified", "both_modified")),
        audio_label=int(kind in ("audio_modified", "both_modified")),
        segments=spans if label == FAKE else (),
    )


def _labelled(root: Path, subset: str, group_by: str) -> list[ManifestRow]:
    meta_path, folder = root / f"{subset}_metadata.json", root / subset
    if not meta_path.is_file():
        raise layout_error(root, f"{subset}_metadata.json", "AV-Deepfake1M", _HOLDS)
    rows, missing, base = [], 0, str(folder)
    for i, entry in enumerate(read_entries(meta_path, "AV-Deepfake1M metadata")):
        path = os.path.join(base, entry["file"])  # plain strings: much faster than pathlib at 1e6 videos
        if not os.path.isfile(path):
            missing += 1
            continue
        where = f"{meta_path} entry {i} ({entry['file']})"
        rows.append(_row(path, entry, SUBSETS[subset], group_by, where))
    if missing:
        log.warning("%s: %d listed videos are missing under %s", meta_path, missing, folder)
    return rows


def _unlabelled_test(root: Path) -> list[ManifestRow]:
    """The test videos (``test_files.txt``, else every video under ``test/``), label -1."""
    folder, listing = root / "test", root / "test_files.txt"
    if listing.is_file():
        names = [n.strip() for n in listing.read_text(encoding="utf-8").splitlines() if n.strip()]
        paths = [folder / n for n in names if (folder / n).is_file()]
    else:
        paths = iter_videos(folder)
    return [
        ManifestRow(str(p), UNKNOWN, "avdeepfake1m", "unknown", "test", p.relative_to(folder).as_posix())
        for p in paths
    ]


@SOURCES.register("avdeepfake1m")
def scan_avdeepfake1m(
    root: str | os.PathLike,
    subsets: str | tuple[str, ...] = ("train", "val"),
    group_by: str = "original",
) -> list[ManifestRow]:
    """AV-Deepfake1M videos as manifest rows with per-modality labels and fake segments (``segments``).

    Args:
        root: the dataset folder holding ``{train,val}_metadata.json`` and ``train/``, ``val/``.
        subsets: official subsets to list: ``train``, ``val``, and ``test`` (unlabelled: label -1, for
            scoring only; its labels are not public).
        group_by: ``original``: a fake shares the group of the real video it was made from (its
            ``original``); ``folder``: every video of the source's folder shares one group.

    Splits are the official subsets; with no labelled test set, evaluate on ``val``. Method: the
    ``modify_type`` (``real``, ``visual_modified``, ``audio_modified``, ``both_modified``).
    """
    root = abs_root(root)
    if group_by not in GROUP_BY:
        raise SourceOptionError(f"group_by must be one of {', '.join(GROUP_BY)}, got {group_by!r}")
    wanted = wanted_splits(subsets, SUBSETS) or set(SUBSETS)
    rows: list[ManifestRow] = []
    for subset in ("train", "val"):
        if subset in wanted:
            rows += _labelled(root, subset, group_by)
    if "test" in wanted:
        rows += _unlabelled_test(root)
    if not rows:
        raise DatasetLayoutError(
            f"no AV-Deepfake1M videos found under {root} for subsets {', '.join(sorted(wanted))}: expected "
            f"e.g. {root}/train/<file> for the files listed in train_metadata.json"
        )
    return keep_groups_in_one_split(rows, "avdeepfake1m")
