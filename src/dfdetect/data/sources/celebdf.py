"""Celeb-DF v2 (Li et al. 2020) in its release layout.

```
ROOT/Celeb-real/idX_NNNN.mp4          real celebrity videos (identity idX)
ROOT/Celeb-synthesis/idX_idY_NNNN.mp4 fakes: video idX_NNNN with the face of idY
ROOT/YouTube-real/NNNNN.mp4           extra real videos (one unnamed person each)
ROOT/List_of_testing_videos.txt       official test list: "<1 real | 0 fake> <relative path>"
```
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from dfdetect.data.manifest import FAKE, REAL, ManifestRow
from dfdetect.data.sources._common import (
    SOURCES,
    DatasetLayoutError,
    UnionFind,
    abs_root,
    as_bool,
    find_child,
    iter_videos,
    layout_error,
    rel_posix,
)

log = logging.getLogger(__name__)

METHOD = "celeb-synthesis"
TEST_LIST = "List_of_testing_videos.txt"
_REAL = re.compile(r"^(id\d+)_\d+$")
_FAKE = re.compile(r"^(id\d+)_(id\d+)_\d+$")
_HOLDS = "Celeb-real/, Celeb-synthesis/, YouTube-real/ and List_of_testing_videos.txt"


def read_test_list(path: Path) -> dict[str, int]:
    """Official test list as {relative path (lower case): label} with label 0 real / 1 fake.

    The file marks real videos with 1 and fakes with 0 (the opposite of dfdetect's labels).
    """
    out: dict[str, int] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetLayoutError(
                f"{path}:{i}: expected '<1 for real | 0 for fake> <relative path>' like "
                f"'1 YouTube-real/00170.mp4', got {line!r}"
            )
        out[parts[1].strip().replace("\\", "/").lower()] = REAL if parts[0] == "1" else FAKE
    return out


def _identities(stem: str, kind: str) -> list[str]:
    """Identity ids in a file name: [idX] for Celeb-real, [idX, idY] for a fake, [] otherwise."""
    if kind == "fake" and (m := _FAKE.match(stem)):
        return [m.group(1), m.group(2)]
    if kind == "real" and (m := _REAL.match(stem)):
        return [m.group(1)]
    return []


def _videos(root: Path) -> list[tuple[Path, str, int]]:
    """(path, kind, label) of every video in the three release folders."""
    folders = [
        (find_child(root, "Celeb-real"), "real", REAL),
        (find_child(root, "Celeb-synthesis"), "fake", FAKE),
        (find_child(root, "YouTube-real"), "youtube", REAL),
    ]
    if folders[0][0] is None and folders[1][0] is None:
        raise layout_error(root, "Celeb-synthesis", "Celeb-DF v2", _HOLDS)
    return [(p, kind, label) for folder, kind, label in folders if folder for p in iter_videos(folder)]


def _groups(items: list[tuple[Path, str, str]]) -> dict[Path, str]:
    """Group of each video: its connected component of identities (named after the smallest id).

    A fake idX_idY joins the identities idX and idY; a YouTube-real video is its own group.
    """
    uf = UnionFind()
    ids_of: dict[Path, list[str]] = {}
    for path, kind, _ in items:
        ids = _identities(path.stem, kind) or [f"{kind}_{path.stem}"]
        ids_of[path] = ids
        for other in ids[1:]:
            uf.union(ids[0], other)
        uf.find(ids[0])
    return {path: uf.find(ids[0]) for path, ids in ids_of.items()}


def _check_list(listed: dict[str, int], on_disk: dict[str, int], list_path: Path) -> None:
    """Warn about listed videos that are missing, or whose list label contradicts their folder."""
    missing = [k for k in listed if k not in on_disk]
    if missing:
        log.warning("%s: %d listed videos are missing, e.g. %s", list_path, len(missing), missing[0])
    wrong = [k for k, label in listed.items() if k in on_disk and on_disk[k] != label]
    if wrong:
        log.warning(
            "%s: %d labels contradict their folder (e.g. %s); labels are taken from the folders",
            list_path,
            len(wrong),
            wrong[0],
        )


@SOURCES.register("celebdf")
def scan_celebdf(
    root: str | os.PathLike,
    test_list: str | os.PathLike | None = None,
    official_test: bool | str = True,
) -> list[ManifestRow]:
    """Celeb-DF v2 videos as manifest rows.

    Args:
        root: folder holding Celeb-real/, Celeb-synthesis/ and YouTube-real/.
        test_list: the official test list (default ``ROOT/List_of_testing_videos.txt``).
        official_test: True: the videos of the official list are "test" and the rest is split
            into train/val; False: ignore the list and split everything by identity group.

    Groups are connected components of identities (a fake idX_idY joins idX and idY), computed
    separately inside the official test list and outside it: the official list is split by video,
    not by person, so the same celebrity appears in both (its test groups are prefixed ``test/``).
    """
    root = abs_root(root)
    videos = _videos(root)
    official = as_bool(official_test, "official_test")
    listed: dict[str, int] = {}
    list_path = Path(test_list) if test_list is not None else root / TEST_LIST
    if official and list_path.is_file():
        listed = read_test_list(list_path)
    elif official and test_list is not None:
        raise DatasetLayoutError(
            f"test list {list_path} not found ({TEST_LIST} from the Celeb-DF v2 release)"
        )
    elif official:
        log.warning("%s not found under %s: the test split will be assigned by group", TEST_LIST, root)
    keys = {p: rel_posix(p, root).lower() for p, _, _ in videos}
    _check_list(listed, {keys[p]: label for p, _, label in videos}, list_path)
    items = [(p, kind, "test" if keys[p] in listed else "") for p, kind, _ in videos]
    groups = {}
    for part in ("", "test"):
        comp = _groups([it for it in items if it[2] == part])
        groups.update({p: (f"test/{g}" if part else g) for p, g in comp.items()})
    rows = []
    for (path, _kind, label), (_, _, split) in zip(videos, items, strict=True):
        method = METHOD if label == FAKE else "real"
        rows.append(ManifestRow(str(path), label, "celebdf", method, split, groups[path]))
    return rows
