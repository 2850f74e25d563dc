"""FakeAVCeleb v1.2 (Khalid et al. 2021): audio-visual deepfakes with separate video/audio labels.

```
ROOT/meta_data.csv
ROOT/<category>/<race>/<men|women>/idXXXXX/*.mp4
  category: RealVideo-RealAudio (A), RealVideo-FakeAudio (B), FakeVideo-RealAudio (C),
            FakeVideo-FakeAudio (D)
  race:     African, Asian (East), Asian (South), Caucasian (American), Caucasian (European)
```
``meta_data.csv`` has the header ``source,target1,target2,method,category,type,race,gender,path,``
but each row holds one more value than named: ``..., gender, <file name>, <folder>`` where the
folder reads ``FakeAVCeleb/<category>/<race>/<gender>/<source id>``. It is read by position.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

from dfdetect.data.manifest import FAKE, REAL, ManifestRow
from dfdetect.data.sources._common import (
    SOURCES,
    DatasetLayoutError,
    abs_root,
    find_child,
    is_video,
    iter_videos,
    layout_error,
)

log = logging.getLogger(__name__)

CATEGORIES = {
    "A": "RealVideo-RealAudio",
    "B": "RealVideo-FakeAudio",
    "C": "FakeVideo-RealAudio",
    "D": "FakeVideo-FakeAudio",
}
METADATA = "meta_data.csv"
# method tokens in file names, most specific first ("wavtolip" is how some files spell wav2lip)
_METHOD_TOKENS = (
    ("faceswap-wav2lip", "faceswap-wav2lip"),
    ("fsgan-wav2lip", "fsgan-wav2lip"),
    ("wavtolip", "wav2lip"),
    ("wav2lip", "wav2lip"),
    ("faceswap", "faceswap"),
    ("fsgan", "fsgan"),
    ("rtvc", "rtvc"),
)
_ID = re.compile(r"^id\d+$")
_HOLDS = "meta_data.csv and the RealVideo-RealAudio/, ..., FakeVideo-FakeAudio/ folders"


def labels_of(category: str) -> tuple[int, int]:
    """(video_label, audio_label) of a category folder name like "FakeVideo-RealAudio"."""
    video, _, audio = category.partition("-")
    return int(video.lower().startswith("fake")), int(audio.lower().startswith("fake"))


def _meta_entries(path: Path) -> list[dict[str, str]]:
    """meta_data.csv rows as dicts with source, target1, target2, method, type, relpath."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if "source" not in header or "method" not in header:
            raise DatasetLayoutError(
                f"{path}: expected the FakeAVCeleb header source,target1,target2,method,category,type,..."
            )
        entries = []
        for values in reader:
            values = [v.strip() for v in values]
            named = dict(zip(header, values, strict=False))
            files = [v for v in values if Path(v).suffix.lower() == ".mp4"]
            folders = [v for v in values if "/" in v and v not in files]
            if not files:
                continue
            rel = files[0] if "/" in files[0] else f"{folders[0]}/{files[0]}" if folders else files[0]
            entries.append({**named, "relpath": rel})
    return entries


def _on_disk(root: Path, relpath: str) -> Path | None:
    """The file a metadata path points to: the part from the category folder on, under ROOT."""
    parts = relpath.replace("\\", "/").split("/")
    for i, part in enumerate(parts):
        if part in CATEGORIES.values():
            return root.joinpath(*parts[i:])
    return None


def _row(path: Path, category: str, method: str, group: str) -> ManifestRow:
    video_label, audio_label = labels_of(category)
    label = FAKE if video_label or audio_label else REAL
    method = "real" if label == REAL else (method.lower() or "unknown")
    return ManifestRow(
        str(path), label, "fakeavceleb", method, "", group, "", video_label, audio_label, category
    )


def _method_from_name(stem: str, category: str) -> str:
    lower = stem.lower()
    for token, method in _METHOD_TOKENS:
        if token in lower:
            return method
    return "rtvc" if category == CATEGORIES["B"] else "unknown"


def _folder_rows(root: Path, category_dirs: dict[str, Path], known: set[Path]) -> list[ManifestRow]:
    """Rows for videos that the metadata does not list (or all of them when it is absent)."""
    rows = []
    for category, folder in category_dirs.items():
        for path in iter_videos(folder):
            if path in known:
                continue
            ids = [p for p in path.relative_to(folder).parts[:-1] if _ID.match(p)]
            group = ids[-1] if ids else path.parent.name
            rows.append(_row(path, category, _method_from_name(path.stem, category), group))
    return rows


@SOURCES.register("fakeavceleb")
def scan_fakeavceleb(root: str | os.PathLike, metadata: str | os.PathLike | None = None) -> list[ManifestRow]:
    """FakeAVCeleb videos as manifest rows with video_label, audio_label and category.

    Args:
        root: the ``FakeAVCeleb_v1.2`` folder (holding the four category folders).
        metadata: the metadata CSV (default ``ROOT/meta_data.csv``; without it, methods are read
            from file names).

    Method and source identity come from the metadata. Group: the source identity (``idXXXXX``),
    shared by a real video and every fake made from it. There is no official split.
    """
    root = abs_root(root)
    category_dirs = {c: d for c in CATEGORIES.values() if (d := find_child(root, c)) is not None}
    if not category_dirs:
        raise layout_error(root, "RealVideo-RealAudio", "FakeAVCeleb_v1.2", _HOLDS)
    meta_path = Path(metadata) if metadata is not None else root / METADATA
    rows: list[ManifestRow] = []
    seen: set[Path] = set()
    if meta_path.is_file():
        missing = 0
        for entry in _meta_entries(meta_path):
            path = _on_disk(root, entry["relpath"])
            if path is None or not path.is_file() or not is_video(path):
                missing += 1
                continue
            if path in seen:
                continue
            seen.add(path)
            category = path.relative_to(root).parts[0]
            group = entry.get("source") or path.parent.name
            rows.append(_row(path, category, entry.get("method", ""), group))
        if missing:
            log.warning("%s: %d listed videos are missing under %s", meta_path, missing, root)
    elif metadata is not None:
        raise DatasetLayoutError(f"metadata file {meta_path} not found (the {METADATA} of FakeAVCeleb v1.2)")
    else:
        log.warning("%s not found under %s: methods are read from file names", METADATA, root)
    rows += _folder_rows(root, category_dirs, seen)
    return rows
