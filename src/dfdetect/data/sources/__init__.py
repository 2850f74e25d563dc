"""Dataset sources: read official layouts and metadata into manifest rows (no decoding).

``scan_source("ffpp", "/data/FaceForensics++")`` returns every video of the dataset as a
:class:`~dfdetect.data.manifest.ManifestRow` with its label, method, compression, group and split
(the official split where the dataset has one, else assigned by group), sorted by path.
Sources: ``ffpp``, ``celebdf``, ``dfdc``, ``fakeavceleb``, ``lavdf``, ``avdeepfake1m``, ``folder``,
``catalog`` (corpus catalogues of git blobs; see docs/datasets.md).
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

from dfdetect.data.manifest import ManifestRow, check_unique
from dfdetect.data.sources._common import (
    SOURCES,
    VIDEO_EXTENSIONS,
    DatasetLayoutError,
    SourceOptionError,
)
from dfdetect.data.splits import assign_splits, check_no_leak

# adapters register themselves in SOURCES on import (declarations only, nothing is scanned)
from . import avdeepfake1m, catalog, celebdf, dfdc, fakeavceleb, ffpp, folder, lavdf  # noqa: E402,F401  isort: skip

__all__ = [
    "SOURCES",
    "VIDEO_EXTENSIONS",
    "DatasetLayoutError",
    "SourceOptionError",
    "available_sources",
    "scan_source",
]

log = logging.getLogger(__name__)


def available_sources() -> list[str]:
    """Names accepted by :func:`scan_source` (and ``dfdetect prepare SOURCE``)."""
    return SOURCES.names()


def _check_options(name: str, factory: Any, options: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    known = [p for p in params if p != "root"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SourceOptionError(
            f"unknown option(s) {', '.join(unknown)} for source {name!r}; "
            f"known options: {', '.join(known) or 'none'}"
        )


def scan_source(
    name: str,
    root: str | os.PathLike,
    seed: int = 0,
    *,
    val: float = 0.1,
    test: float = 0.1,
    **options: Any,
) -> list[ManifestRow]:
    """List a dataset's videos as manifest rows, with splits filled and checked.

    Args:
        name: source name (``ffpp``, ``celebdf``, ``dfdc``, ``fakeavceleb``, ``folder``).
        root: the dataset folder in its official layout (or, for ``folder``, a CSV file).
        seed: seed of the split assignment for rows without an official split.
        val: fraction of the unassigned rows (by group) that go to "val".
        test: fraction of the unassigned rows (by group) that go to "test"; 0 when the dataset
            ships a test split (the official test set is kept as it is, for comparability).
        **options: source options, e.g. ``compressions=("c23", "c40")`` for ``ffpp``.

    Returns:
        Rows sorted by path; every row has a split and no group crosses splits.

    Raises:
        SourceOptionError: unknown source or option, or a bad option value.
        DatasetLayoutError: ``root`` does not hold the layout the source expects.
        SplitLeakError: the official splits put one group in two splits.
    """
    try:
        factory = SOURCES.get(name)
    except KeyError:
        raise SourceOptionError(
            f"unknown dataset source {name!r}; known sources: {', '.join(available_sources())}"
        ) from None
    _check_options(name, factory, options)
    rows = factory(root, **options)
    if any(r.split == "test" for r in rows):
        # an official test set is the benchmark: adding videos to it would break comparability
        test = 0.0
    rows = assign_splits(rows, val=val, test=test, seed=seed)
    check_no_leak(rows)
    check_unique(rows)
    counts = {s: sum(r.split == s for r in rows) for s in ("train", "val", "test")}
    log.info("%s: %d videos under %s (%s)", name, len(rows), root, counts)
    return sorted(rows, key=lambda r: r.path)
