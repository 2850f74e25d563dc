"""What ``dfdetect batch`` scans: folders, globs, files, manifest CSVs and text files of paths."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from dfdetect.data.manifest import read_manifest
from dfdetect.io.files import expand_inputs

LIST_SUFFIXES = (".txt", ".lst", ".list")


def _resolve(entry: str, base: Path) -> str:
    """A path from a list or manifest: absolute as written, else relative to the list's folder."""
    p = Path(entry).expanduser()
    return str(p if p.is_absolute() else base / p)


def _csv_paths(path: Path) -> list[str]:
    """The ``path`` column of a CSV: a dfdetect manifest (validated by its reader) or any CSV with one."""
    with path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    if "path" not in header:
        raise ValueError(f"{path}: a CSV of inputs needs a 'path' column (its header is {header})")
    if "label" in header:
        return [_resolve(row.path, path.parent) for row in read_manifest(path)]
    with path.open(newline="", encoding="utf-8") as f:
        cells = [(r["path"] or "").strip() for r in csv.DictReader(f)]
    return [_resolve(c, path.parent) for c in cells if c]


def _list_entries(path: Path) -> list[str]:
    """Lines of a text file of paths (blank lines and ``#`` comments skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_resolve(s, path.parent) for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def collect_inputs(items: Iterable[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """Expand batch inputs into absolute file paths.

    A ``.csv`` file is a list of inputs (its ``path`` column; a dfdetect manifest is read with
    :func:`~dfdetect.data.manifest.read_manifest`); a ``.txt``/``.lst``/``.list`` file lists one file,
    folder or glob per line. Relative entries of both are relative to the file's folder. Every path of a
    manifest is kept even when the file is gone (its scan then says ``unreadable``); folders and globs
    expand with :func:`~dfdetect.io.files.expand_inputs`.

    Returns:
        ``(paths, missing)``: absolute paths in input order without duplicates, and the arguments
        (or list entries) that matched nothing.

    Raises:
        ValueError: a CSV without a ``path`` column.
        dfdetect.data.manifest.ManifestError: a manifest with bad rows.
    """
    found: dict[str, None] = {}
    missing: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        suffix = p.suffix.lower()
        if p.is_file() and suffix == ".csv":
            found.update({os.path.abspath(x): None for x in _csv_paths(p)})
            continue
        entries = _list_entries(p) if p.is_file() and suffix in LIST_SUFFIXES else [os.fspath(item)]
        files, lost = expand_inputs(entries)
        found.update({os.path.abspath(f): None for f in files})
        missing += lost
    return list(found), missing
