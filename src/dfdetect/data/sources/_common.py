"""Pieces shared by the dataset adapters: the registry, layout errors, video listing, option parsing.

Adapters never decode media: they only read folder layouts and metadata files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from dfdetect.constants import VIDEO_EXTENSIONS
from dfdetect.data.manifest import ManifestRow
from dfdetect.registry import Registry

SOURCES: Registry[list[ManifestRow]] = Registry("dataset source")
"""Adapters: ``SOURCES.get(name)(root, **options) -> list[ManifestRow]`` (splits may be "")."""


class DatasetLayoutError(ValueError):
    """A dataset root does not hold the expected official layout or metadata."""


class SourceOptionError(ValueError):
    """An unknown source name, or a source option with a wrong name or value."""


def abs_root(root: str | os.PathLike) -> Path:
    """Absolute, normalised root (symlinks kept, so paths stay the ones the user gave)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(root))))


def has_extension(path: Path, extensions: frozenset[str]) -> bool:
    """True for a visible file whose extension is one of ``extensions`` (case-insensitive)."""
    return path.suffix.lower() in extensions and not path.name.startswith(".")


def is_video(path: Path) -> bool:
    """True for a visible file with a known video extension (case-insensitive)."""
    return has_extension(path, VIDEO_EXTENSIONS)


def iter_videos(folder: Path, recursive: bool = True) -> list[Path]:
    """Videos under ``folder`` (sorted), skipping hidden files and folders (e.g. macOS ``._x.mp4``)."""
    found: list[Path] = []
    if not folder.is_dir():
        return found
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_video(p))
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if is_video(path):
                found.append(path)
    return sorted(found)


def find_child(parent: Path, *names: str) -> Path | None:
    """The first sub-folder of ``parent`` whose name matches one of ``names`` (case-insensitive)."""
    if not parent.is_dir():
        return None
    wanted = [n.lower() for n in names]
    children = {p.name.lower(): p for p in sorted(parent.iterdir()) if p.is_dir()}
    for name in wanted:
        if name in children:
            return children[name]
    return None


def _find_deeper(root: Path, name: str, depth: int = 2, max_entries: int = 200) -> Path | None:
    """A folder or file called ``name`` one or two levels below (or one level above) ``root``."""
    if (root.parent / name).exists() and root.parent != root:
        return root.parent
    frontier = [root]
    for _ in range(depth):
        nxt: list[Path] = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())[:max_entries]
            except OSError:
                continue
            for child in children:
                if (child / name).exists():
                    return child
                nxt.append(child)
        frontier = nxt
    return None


def layout_error(root: Path, expected: str, dataset: str, holds: str) -> DatasetLayoutError:
    """A :class:`DatasetLayoutError` that says what was expected, where, and how to fix ROOT."""
    if not root.exists():
        return DatasetLayoutError(f"dataset root {root} does not exist: point ROOT at the {dataset} folder")
    msg = f"{expected} not found under {root}: point ROOT at the {dataset} folder that holds {holds}"
    better = _find_deeper(root, expected.split("/")[0])
    if better is not None:
        msg += f" (found {expected.split('/')[0]} under {better}: try ROOT={better})"
    return DatasetLayoutError(msg)


def as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Option value as a tuple of strings: None stays None; "a,b" or ["a", "b"] -> ("a", "b")."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v).strip() for v in value)


def as_bool(value: bool | str, name: str) -> bool:
    """Option value as a bool (accepts true/false/yes/no/1/0 from the command line)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SourceOptionError(f"option {name} must be true or false, got {value!r}")


def as_ints(value: str | Iterable[int | str] | None, name: str) -> tuple[int, ...]:
    """Option value as a tuple of ints ("45,46" or [45, 46])."""
    items = as_tuple(value if value is None or isinstance(value, str) else [str(v) for v in value]) or ()
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise SourceOptionError(f"option {name} must be integers, e.g. 45,46; got {value!r}") from None


class UnionFind:
    """Disjoint sets of string ids (connected identities end up in one group)."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        root = self._parent.setdefault(item, item)
        while self._parent[root] != root:
            root = self._parent[root]
        while item != root:  # path compression
            self._parent[item], item = root, self._parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb), key=natural_key)
            self._parent[hi] = lo  # the root is always the smallest id of its set


def natural_key(text: str) -> tuple:
    """Sort key that orders id2 before id10."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def rel_posix(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes."""
    return path.relative_to(root).as_posix()
