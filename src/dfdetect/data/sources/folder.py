"""A user's own videos, in one of three layouts (checked in this order):

1. a labels CSV: ``ROOT/labels.csv`` or ROOT itself being a ``.csv`` file, with columns
   ``path,label`` and optionally ``method,group,split`` (paths relative to the CSV's folder or
   absolute; label 0/1/-1 or real/fake/unknown);
2. ``ROOT/real/**`` and ``ROOT/fake/**`` at any depth, optionally under split folders
   ``ROOT/{train,val,test}/{real,fake}/**``; a sub-folder of ``fake/`` names the method;
3. any folder of videos (recursively): unlabelled (label -1), all in the "test" split.

Media: the video, still-image and audio extensions of ``dfdetect.constants``
(case-insensitive). A speech CSV's ``speaker`` column is the group and ``generator`` the method.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

from dfdetect.constants import MEDIA_EXTENSIONS
from dfdetect.data.manifest import FAKE, REAL, SPLITS, UNKNOWN, ManifestRow
from dfdetect.data.sources._common import (
    SOURCES,
    DatasetLayoutError,
    SourceOptionError,
    abs_root,
    has_extension,
    rel_posix,
)

log = logging.getLogger(__name__)

LABELS_CSV = "labels.csv"
_LABEL_WORDS = {
    "0": REAL, "real": REAL, "original": REAL, "pristine": REAL,
    "1": FAKE, "fake": FAKE, "deepfake": FAKE, "manipulated": FAKE,
    "-1": UNKNOWN, "": UNKNOWN, "unknown": UNKNOWN,
}  # fmt: skip
_SPLIT_WORDS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}


def _parse_label(value: str, where: str) -> int:
    key = value.strip().lower()
    if key not in _LABEL_WORDS:
        raise DatasetLayoutError(f"{where}: label must be 0/real, 1/fake or -1/unknown, got {value!r}")
    return _LABEL_WORDS[key]


def _group(raw: dict[str, str], path: Path, column: str | None = None) -> str:
    """A row's group: the ``column`` named by ``group_by`` (e.g. ``source_repo``: the inputs and outputs
    of one generator's repository share identities), else the ``group`` column, else ``speaker`` (speech
    sets: speaker-disjoint splits; case-folded, so ``LJ`` and ``lj`` are one speaker), else the file."""
    if column:
        return f"{column}:{raw[column]}"
    if raw.get("group"):
        return raw["group"]
    if raw.get("speaker"):
        return "speaker:" + raw["speaker"].casefold()
    return str(path)


def _csv_rows(csv_path: Path, group_column: str | None = None) -> list[ManifestRow]:
    """Rows of a labels CSV (``path,label[,method|generator,group|speaker,split]``)."""
    base = csv_path.parent
    rows, missing = [], 0
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [h.strip().lower() for h in reader.fieldnames or []]
        if "path" not in fields or "label" not in fields:
            raise DatasetLayoutError(
                f"{csv_path}: expected a header with 'path' and 'label' (and optionally method, group, "
                f"split), got {reader.fieldnames}"
            )
        if group_column and group_column not in fields:
            raise SourceOptionError(
                f"{csv_path}: option group_by={group_column!r} is not a column of {fields}"
            )
        for i, raw in enumerate(reader, 2):
            raw = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            where = f"{csv_path}:{i}"
            path = Path(os.path.abspath(base / os.path.expanduser(raw["path"])))
            label = _parse_label(raw["label"], where)
            split = _SPLIT_WORDS.get(raw.get("split", "").lower(), raw.get("split", ""))
            if split and split not in SPLITS:
                raise DatasetLayoutError(f"{where}: split must be train, val or test, got {raw['split']!r}")
            default = {REAL: "real", FAKE: "unknown", UNKNOWN: "unknown"}[label]
            method = raw.get("method") or raw.get("generator") or default
            missing += not path.is_file()
            rows.append(
                ManifestRow(str(path), label, "folder", method, split, _group(raw, path, group_column))
            )
    if missing:
        log.warning("%s: %d listed videos do not exist (prepare will report them)", csv_path, missing)
    return rows


def _iter_media(root: Path) -> list[Path]:
    """Videos, still images and audio-only files under ``root`` (sorted, hidden files and folders
    skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / n for n in filenames if has_extension(Path(n), MEDIA_EXTENSIONS)]
    return sorted(found)


def _label_from_parts(parts: tuple[str, ...]) -> tuple[str, int, str] | None:
    """(split, label, method) from the folders above a video, or None when not in real/ or fake/."""
    lower = [p.lower() for p in parts]
    split = ""
    if lower and lower[0] in _SPLIT_WORDS and len(lower) > 1:
        split, lower, parts = _SPLIT_WORDS[lower[0]], lower[1:], parts[1:]
    if not lower or lower[0] not in ("real", "fake"):
        return None
    if lower[0] == "real":
        return split, REAL, "real"
    return split, FAKE, parts[1] if len(parts) > 1 else "unknown"


def _tree_rows(root: Path, videos: list[Path], group_by: str) -> list[ManifestRow]:
    rows = []
    for path in videos:
        rel = path.relative_to(root)
        parsed = _label_from_parts(rel.parts[:-1])
        if parsed is None:
            log.warning("skipping %s: not inside a real/ or fake/ folder", path)
            continue
        split, label, method = parsed
        group = rel_posix(path.parent, root) if group_by == "folder" else rel_posix(path, root)
        rows.append(ManifestRow(str(path), label, "folder", method, split, group))
    return rows


def _has_label_folders(root: Path) -> bool:
    names = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    if names & {"real", "fake"}:
        return True
    return any(
        {c.name.lower() for c in (root / n).iterdir() if c.is_dir()} & {"real", "fake"}
        for n in (p.name for p in root.iterdir() if p.is_dir() and p.name.lower() in _SPLIT_WORDS)
    )


@SOURCES.register("folder")
def scan_folder(
    root: str | os.PathLike, split: str | None = None, group_by: str = "video", splits: str | None = None
) -> list[ManifestRow]:
    """Videos of a user's own folder (or labels CSV) as manifest rows.

    Args:
        root: a folder (with labels.csv, real/ + fake/, or just videos) or a labels ``.csv`` file.
        split: put every video in this split (e.g. "test" for a held-out set); default: from the
            CSV or split folders, else assigned by group (unlabelled videos go to "test").
        group_by: "video" (each video its own group) or "folder" (videos of one folder share a
            group, e.g. clips of one person); a CSV's group column wins. With a labels CSV it may
            also name a column of the CSV (``group_by=source_repo``) whose value groups the rows.
        splits: a JSON file ``{"train": [group, ...], "val": [...], "test": [...]}`` that fixes the
            split of the groups it lists (like FaceForensics++'s official split files; a group is
            given as its value, e.g. ``ali-vilab/dreamtalk`` for ``group_by=source_repo``); the
            other rows are assigned by group as usual.
    """
    root = abs_root(root)
    if split is not None and split not in SPLITS:
        raise SourceOptionError(f"option split must be one of {', '.join(SPLITS)}, got {split!r}")
    csv_path = root if root.suffix.lower() == ".csv" else root / LABELS_CSV
    column = None if group_by in ("video", "folder") else group_by.strip().lower()
    if column and not csv_path.is_file():
        raise SourceOptionError(
            "option group_by must be 'video', 'folder' or (with a labels CSV) a column name, "
            f"got {group_by!r}"
        )
    if csv_path.is_file():
        rows = _csv_rows(csv_path, column)
    elif not root.is_dir():
        raise DatasetLayoutError(f"{root} is neither a folder of videos nor a labels .csv file")
    elif _has_label_folders(root):
        rows = _tree_rows(root, _iter_media(root), group_by)
    else:
        videos = _iter_media(root)
        rows = [
            ManifestRow(
                str(p), UNKNOWN, "folder", "unknown", "test",
                rel_posix(p.parent if group_by == "folder" else p, root),
            )
            for p in videos
        ]  # fmt: skip
    if not rows:
        raise DatasetLayoutError(
            f"no videos found under {root}: expected real/ and fake/ folders, a {LABELS_CSV} "
            f"(path,label), or video/audio files "
            f"({', '.join(sorted(e[1:] for e in MEDIA_EXTENSIONS))})"
        )
    if splits:
        rows = _apply_splits(rows, Path(splits))
    return [r.with_split(split) for r in rows] if split else rows


def _apply_splits(rows: list[ManifestRow], path: Path) -> list[ManifestRow]:
    """Rows with the split that the JSON file ``path`` gives their group (see ``scan_folder``)."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        wanted = {str(g): _SPLIT_WORDS[s.lower()] for s, groups in table.items() for g in groups}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise SourceOptionError(
            f'option splits={path}: expected a JSON object {{"train"|"val"|"test": [group, ...]}} ({e})'
        ) from e
    known = {r.group for r in rows} | {r.group.split(":", 1)[-1] for r in rows}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise SourceOptionError(f"option splits={path}: no row has group(s) {unknown[:5]}")
    out = []
    for r in rows:
        s = wanted.get(r.group, wanted.get(r.group.split(":", 1)[-1]))
        out.append(r.with_split(s) if s else r)
    return out
