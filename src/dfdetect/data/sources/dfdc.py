"""DFDC, the Deepfake Detection Challenge dataset (Dolhansky et al. 2020), as released.

```
ROOT/dfdc_train_part_N/metadata.json   {"x.mp4": {"label": "FAKE"|"REAL", "split": "train",
ROOT/dfdc_train_part_N/*.mp4                      "original": "y.mp4" | null}, ...}
ROOT/test/labels.csv                   public test set: filename,label (1/FAKE = fake)
ROOT/test/videos/*.mp4                 (or ROOT/test/*.mp4)
```
ROOT may also be a single ``dfdc_train_part_N`` folder.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path

from dfdetect.data.manifest import FAKE, REAL, ManifestRow
from dfdetect.data.sources._common import (
    SOURCES,
    DatasetLayoutError,
    abs_root,
    as_bool,
    as_ints,
    find_child,
    layout_error,
)

log = logging.getLogger(__name__)

_PART = re.compile(r"^dfdc_train_part_(\d+)$")
_LABELS = {"fake": FAKE, "1": FAKE, "1.0": FAKE, "real": REAL, "0": REAL, "0.0": REAL}
_HOLDS = "dfdc_train_part_N/metadata.json folders (and optionally test/labels.csv)"


def _parts(root: Path) -> list[tuple[int | None, Path]]:
    """(part number, folder) of every training part under ``root`` (or ``root`` itself)."""
    if (root / "metadata.json").is_file():
        m = _PART.match(root.name)
        return [(int(m.group(1)) if m else None, root)]
    parts = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        m = _PART.match(child.name)
        if m and child.is_dir() and (child / "metadata.json").is_file():
            parts.append((int(m.group(1)), child))
    return sorted(parts, key=lambda p: p[0])


def read_metadata(path: Path) -> dict[str, dict]:
    """A part's metadata.json as {filename: {"label": ..., "original": ...}}, validated."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, entry in data.items():
            if str(entry["label"]).upper() not in ("FAKE", "REAL"):
                raise ValueError(f"{name}: label {entry['label']!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DatasetLayoutError(
            f"{path}: expected the DFDC metadata format "
            f'{{"x.mp4": {{"label": "FAKE" or "REAL", "original": "y.mp4" or null, ...}}}} ({e})'
        ) from None
    return data


def _part_rows(number: int | None, folder: Path, val_parts, test_parts) -> list[ManifestRow]:
    split = "val" if number in val_parts else "test" if number in test_parts else ""
    if split == "" and (val_parts or test_parts):
        split = "train"
    rows, missing = [], 0
    for name, entry in sorted(read_metadata(folder / "metadata.json").items()):
        path = folder / name
        if not path.is_file():
            missing += 1
            continue
        label = FAKE if str(entry["label"]).upper() == "FAKE" else REAL
        original = entry.get("original") if label == FAKE else None
        group = Path(original or name).stem
        method = "unknown" if label == FAKE else "real"
        rows.append(ManifestRow(str(path), label, "dfdc", method, split, group))
    if missing:
        log.warning("%s: %d videos listed in metadata.json are missing", folder, missing)
    return rows


def _test_rows(test_dir: Path) -> list[ManifestRow]:
    """The public test set: ``labels.csv`` (filename,label) next to ``videos/`` or the videos."""
    labels = test_dir / "labels.csv"
    videos = find_child(test_dir, "videos") or test_dir
    rows = []
    with labels.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
            raise DatasetLayoutError(f"{labels}: expected a header 'filename,label', got {reader.fieldnames}")
        for i, raw in enumerate(reader, 2):
            value = (raw["label"] or "").strip().lower()
            if value not in _LABELS:
                raise DatasetLayoutError(
                    f"{labels}:{i}: label must be 0/1 or REAL/FAKE, got {raw['label']!r}"
                )
            path = videos / raw["filename"].strip()
            label = _LABELS[value]
            method = "unknown" if label == FAKE else "real"
            rows.append(ManifestRow(str(path), label, "dfdc", method, "test", f"test/{path.stem}"))
    missing = sum(not Path(r.path).is_file() for r in rows)
    if missing:
        log.warning("%s: %d listed test videos are missing under %s", labels, missing, videos)
    return [r for r in rows if Path(r.path).is_file()]


@SOURCES.register("dfdc")
def scan_dfdc(
    root: str | os.PathLike,
    val_parts: str | tuple[int, ...] = (),
    test_parts: str | tuple[int, ...] = (),
    include_test: bool | str = True,
) -> list[ManifestRow]:
    """DFDC videos as manifest rows.

    Args:
        root: folder holding the ``dfdc_train_part_N`` folders (or one of them).
        val_parts: part numbers that form the val split (then the other parts are train).
        test_parts: part numbers that form the test split.
        include_test: add the public test set from ``ROOT/test/labels.csv`` when present.

    The metadata's own "split" field says "train" for every video, so it is not used. Without
    ``val_parts``/``test_parts`` the training parts are split by group. Group: the original video
    a fake was made from (a real video is its own group).
    """
    root = abs_root(root)
    val, test = as_ints(val_parts, "val_parts"), as_ints(test_parts, "test_parts")
    rows = []
    for number, folder in _parts(root):
        rows += _part_rows(number, folder, val, test)
    test_dir = find_child(root, "test")
    has_test = test_dir is not None and (test_dir / "labels.csv").is_file()
    if has_test and as_bool(include_test, "include_test"):
        rows += _test_rows(test_dir)
    if not rows and not _parts(root) and not has_test:
        raise layout_error(root, "dfdc_train_part_0/metadata.json", "DFDC", _HOLDS)
    if not rows:
        raise DatasetLayoutError(
            f"no DFDC videos found under {root}: the metadata lists files that are missing"
        )
    return rows
