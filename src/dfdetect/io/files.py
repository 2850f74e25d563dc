"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dfdetect.constants import MEDIA_EXTENSIONS


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    The temporary file keeps ``suffix`` (e.g. ``.npz``) so libraries that append extensions behave.
    On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path, suffix) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_jsonl(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write records as JSON lines, atomically."""
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file (e.g. a predictions file)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def expand_inputs(paths: Iterable[str | os.PathLike], recursive: bool = True) -> tuple[list[str], list[str]]:
    """Expand files, folders (their media files: videos, images, audio) and glob patterns.

    Returns:
        ``(found, missing)``: existing files in input order without duplicates, and the arguments
        that matched nothing (a missing file, an empty folder or a glob without matches).
    """
    found: dict[str, None] = {}
    missing: list[str] = []
    for item in paths:
        text = os.fspath(item)
        p = Path(text).expanduser()
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            matches = [
                q for q in sorted(p.glob(pattern)) if q.is_file() and q.suffix.lower() in MEDIA_EXTENSIONS
            ]
        elif p.is_file():
            matches = [p]
        elif glob.has_magic(text):
            hits = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            matches = [Path(h) for h in hits if Path(h).is_file()]
        else:
            matches = []
        if not matches:
            missing.append(text)
        found.update({str(m): None for m in matches})
    return list(found), missing
