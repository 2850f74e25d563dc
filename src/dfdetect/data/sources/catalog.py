"""Catalogues of public git files (``corpus/video/*.csv``, ``corpus/speech/*.csv``) as manifest rows.

A catalogue row names one file by repository, commit, path and git blob id, with its label, generator
and (video) the ``crop`` that is the sample in a composite or (speech) the speaker. This adapter reads
catalogues only: the media paths it gives are where :mod:`dfdetect.data.catalog` extracts and cuts the
files (``MEDIA/<blob><ext>``, or ``MEDIA/<blob>.<crop><ext>`` for a cut), content-addressed so every
catalogue file that names a blob shares one copy. Families, groups and the leave-generator-out split:
:mod:`dfdetect.data.sources.catalog_split`.

Manifest rows: ``dataset`` = ``catalog``, ``method`` = the generator (``real`` for reals), ``family``,
``group``, ``split``, ``source`` = the repository, ``licence``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from dfdetect.data.catalog_crop import CropError, grid_cell, grid_shape, parse_crop
from dfdetect.data.manifest import FAKE, REAL, ManifestRow
from dfdetect.data.sources._common import SOURCES, DatasetLayoutError, abs_root
from dfdetect.data.sources.catalog_split import SplitPlan, group_ids, load_plan, resolve, unit_of, unit_splits

log = logging.getLogger(__name__)

COMMON = ("repo", "commit", "path", "blob", "bytes", "label", "generator")
KINDS = {"video": ("crop", "note"), "speech": ("speaker", "language")}
_BLOB = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class CatalogEntry:
    """One catalogue row, where it came from, and (once planned) its manifest row."""

    kind: str  # video | speech
    repo: str
    commit: str
    path: str
    blob: str
    bytes: int
    label: str  # fake | real
    generator: str
    licence: str
    crop: str = ""
    note: str = ""
    speaker: str = ""
    language: str = ""
    where: str = ""  # catalogue file:line
    row: ManifestRow | None = None
    excluded: str = ""  # why the row is left out of the corpus ("" = kept)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix.lower()


def catalog_files(root: str | os.PathLike | list) -> list[Path]:
    """The CSV files of ``root``: a CSV, a folder of CSVs, or several of those joined by ``os.pathsep``
    (or given as a list). Sorted within a folder, ``base.csv`` first."""
    roots = root if isinstance(root, list | tuple) else str(root).split(os.pathsep)
    files: list[Path] = []
    for item in roots:
        path = abs_root(item)
        if path.is_dir():
            found = sorted(path.glob("*.csv"), key=lambda p: (p.name != "base.csv", p.name))
            if not found:
                raise DatasetLayoutError(f"no catalogue (*.csv) in {path}")
            files += found
        elif path.suffix.lower() == ".csv" and path.is_file():
            files.append(path)
        else:
            raise DatasetLayoutError(f"{path}: not a catalogue CSV nor a folder of them")
    return list(dict.fromkeys(files))


def read_catalog(path: Path) -> list[CatalogEntry]:
    """Rows of one catalogue file, checked.

    Raises:
        DatasetLayoutError: a missing column, or a row with a bad repository, blob id, size or label.
    """
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        kind = next((k for k, cols in KINDS.items() if cols[0] in header), None)
        missing = [c for c in COMMON if c not in header]
        if missing or kind is None:
            raise DatasetLayoutError(
                f"{path}: not a catalogue: needs columns {', '.join(COMMON)} and crop (video) or speaker "
                f"(speech); missing {', '.join(missing) or 'crop/speaker'}"
            )
        return [_entry(kind, raw, f"{path}:{i}") for i, raw in enumerate(reader, 2)]


def _entry(kind: str, raw: dict[str, str | None], where: str) -> CatalogEntry:
    raw = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
    label, blob, repo = raw["label"].lower(), raw["blob"].lower(), raw["repo"]
    problems = []
    if label not in ("fake", "real"):
        problems.append(f"label must be fake or real, got {raw['label']!r}")
    if not _BLOB.match(blob):
        problems.append(f"blob must be a 40-hex git blob id, got {raw['blob']!r}")
    if not _REPO.match(repo):
        problems.append(f"repo must be owner/name, got {repo!r}")
    if not raw["bytes"].isdigit():
        problems.append(f"bytes must be a whole number, got {raw['bytes']!r}")
    if not raw["path"] or (label == "fake" and not raw["generator"]):
        problems.append("path (and, for a fake, generator) must be given")
    if problems:
        raise DatasetLayoutError(f"{where}: " + "; ".join(problems))
    return CatalogEntry(
        kind, repo, raw["commit"].lower(), raw["path"], blob, int(raw["bytes"]), label, raw["generator"],
        raw.get("licence", ""), raw.get("crop", ""), raw.get("note", ""), raw.get("speaker", ""),
        raw.get("language", ""), where,
    )  # fmt: skip


def media_name(entry: CatalogEntry, shape: tuple[int, int] | None = None) -> str:
    """File name of the sample under the media folder: ``<blob><ext>`` or ``<blob>.<crop><ext>``.

    Raises:
        CropError: the crop cannot be parsed.
    """
    crop = parse_crop(entry.crop, shape)
    if crop.whole:
        return entry.blob + entry.suffix
    return f"{entry.blob}.{crop.slug}{'.png' if is_image(entry) else '.mp4'}"


def is_image(entry: CatalogEntry) -> bool:
    from dfdetect.constants import IMAGE_EXTENSIONS

    return entry.suffix in IMAGE_EXTENSIONS


def grid_shapes(entries: list[CatalogEntry]) -> dict[str, tuple[int, int]]:
    """Grid shape per blob: from a note (``grid 2x4``), else the largest row and column named by the
    rows of that blob."""
    shapes: dict[str, tuple[int, int]] = {}
    for e in entries:
        shape = grid_shape(e.note)
        if shape:
            shapes[e.blob] = shape
    inferred: dict[str, tuple[int, int]] = defaultdict(lambda: (1, 1))
    for e in entries:
        cell = grid_cell(e.crop)
        if cell:
            r, c = inferred[e.blob]
            inferred[e.blob] = (max(r, cell[0]), max(c, cell[1]))
    return {**inferred, **shapes}


def plan_entries(entries: list[CatalogEntry], media: Path, plan: SplitPlan) -> list[CatalogEntry]:
    """Every entry with its manifest row (or the reason it is left out): media path, family, group, split.

    Rows naming the same sample (blob and crop) twice are kept once; a second row that disagrees on the
    label is left out with the reason.
    """
    shapes = grid_shapes(entries)
    units = [unit_of(e, plan) for e in entries]
    groups = group_ids(entries, units)
    splits = resolve(unit_splits([e.kind for e in entries], units, groups, plan), groups)
    seen: dict[str, CatalogEntry] = {}
    out = []
    for e, unit, group, split in zip(entries, units, groups, splits, strict=True):
        try:
            path = str(media / media_name(e, shapes.get(e.blob)))
        except CropError as err:
            out.append(replace(e, excluded=f"bad_crop: {err}"))
            continue
        if path in seen:
            first = seen[path]
            why = (
                "label_conflict: the label disagrees with"
                if first.label != e.label
                else "duplicate: same sample as"
            )
            out.append(replace(e, excluded=f"{why} {first.where}"))
            continue
        if split is None:
            why = f"split_conflict: its group {group} is in another split than its unit {unit}"
            out.append(replace(e, excluded=why))
            continue
        label = FAKE if e.label == "fake" else REAL
        method = e.generator if label == FAKE else "real"
        family = unit if label == FAKE else "real"
        row = ManifestRow(path, label, "catalog", method, split, group, family=family, source=e.repo,
                          licence=e.licence)  # fmt: skip
        seen[path] = entry = replace(e, row=row)
        out.append(entry)
    return out


def catalog_entries(
    root: str | os.PathLike | list, media: str | os.PathLike, splits: str | os.PathLike | None = None
) -> list[CatalogEntry]:
    """Read the catalogues under ``root`` and plan them (:func:`plan_entries`), left-out rows included."""
    entries = [e for f in catalog_files(root) for e in read_catalog(f)]
    if not entries:
        raise DatasetLayoutError(f"the catalogues under {root} have no rows")
    return plan_entries(entries, abs_root(media), load_plan(splits))


@SOURCES.register("catalog")
def scan_catalog(
    root: str | os.PathLike, media: str | os.PathLike = "media", splits: str | os.PathLike | None = None
) -> list[ManifestRow]:
    """Catalogue rows as manifest rows (splits filled; rows left out by the protocol are not listed).

    Args:
        root: a catalogue CSV, a folder of them, or several joined by ``os.pathsep``.
        media: the folder the samples are (or will be) extracted to.
        splits: the split file (``corpus/splits.yaml``); default: the hash rule alone.
    """
    planned = catalog_entries(root, media, splits)
    for e in planned:
        if e.excluded:
            log.info("%s: left out: %s", e.where, e.excluded)
    return [e.row for e in planned if e.row is not None]
