"""The manifest: one row per video, the key every layer agrees on (DESIGN.md, "Manifest row").

Stored as CSV with a fixed header so it opens in any spreadsheet. ``path`` is the full, unique key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from dfdetect.io.files import atomic_write_text

REAL, FAKE, UNKNOWN = 0, 1, -1  # UNKNOWN: an unlabelled video of a user's own folder
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A manifest file is missing, malformed, or breaks the row contract."""


@dataclass(frozen=True)
class ManifestRow:
    path: str  # full path to the video; unique key
    label: int  # 0 real / 1 fake (fake if either modality is fake) / -1 unknown (unlabelled)
    dataset: str  # ffpp, celebdf, dfdc, fakeavceleb, folder, ...
    method: str  # generator name, or "real"
    split: str  # train / val / test (or "" when not assigned yet)
    group: str  # source identity: a fake and the real it came from share one
    compression: str = ""  # c0/c23/c40 for FF++, "" when unknown
    video_label: int | None = None  # FakeAVCeleb-style per-modality labels (None = unknown)
    audio_label: int | None = None
    category: str = ""  # FakeAVCeleb: RealVideo-RealAudio, FakeVideo-RealAudio, ...
    # manipulated spans [(start, end), ...] in seconds (LAV-DF, AV-Deepfake1M): () = none (a real video),
    # None = unknown (the dataset labels whole videos)
    segments: tuple[tuple[float, float], ...] | None = None
    # corpus catalogues (dfdetect prepare catalog): generator family ("real" for reals), the repository
    # the file came from, and its licence; "" for the other sources
    family: str = ""
    source: str = ""
    licence: str = ""

    def with_split(self, split: str) -> ManifestRow:
        return replace(self, split=split)


FIELDS = [f.name for f in fields(ManifestRow)]
_INT_FIELDS = {"label"}
_OPT_INT_FIELDS = {"video_label", "audio_label"}


def parse_segments(text: str | None) -> tuple[tuple[float, float], ...] | None:
    """``segments`` column -> ((start, end), ...) seconds; "" -> None (unknown), "[]" -> () (none).

    Raises:
        ValueError: not a JSON list of [start, end] pairs with 0 <= start <= end.
    """
    if text is None or not str(text).strip():
        return None
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a JSON list of [start, end] pairs, got {text!r}")
    out = []
    for pair in value:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"expected [start, end] pairs in seconds, got {pair!r}")
        a, b = float(pair[0]), float(pair[1])
        if not 0 <= a <= b:
            raise ValueError(f"a segment must satisfy 0 <= start <= end, got [{a}, {b}]")
        out.append((a, b))
    return tuple(sorted(out))


def segments_text(segments: tuple[tuple[float, float], ...] | None) -> str:
    """The ``segments`` column of a row: "" when unknown, else a JSON list of [start, end]."""
    return "" if segments is None else json.dumps([[a, b] for a, b in segments])  # exact: floats round-trip


def _parse(raw: dict[str, str], line: int, source: str) -> ManifestRow:
    missing = [k for k in ("path", "label") if not (raw.get(k) or "").strip()]
    if missing:
        raise ManifestError(f"{source}:{line}: missing {', '.join(missing)}")
    values: dict[str, object] = {}
    for name in FIELDS:
        value = (raw.get(name) or "").strip()
        if name in _INT_FIELDS:
            if value not in ("0", "1", "-1"):
                raise ManifestError(
                    f"{source}:{line}: label must be 0 (real), 1 (fake) or -1 (unknown), got {value!r}"
                )
            values[name] = int(value)
        elif name in _OPT_INT_FIELDS:
            values[name] = int(value) if value in ("0", "1") else None
        elif name == "segments":
            try:
                values[name] = parse_segments(value)
            except (ValueError, TypeError) as e:
                raise ManifestError(f"{source}:{line}: bad segments {value!r}: {e}") from None
        else:
            values[name] = value
    values["method"] = values["method"] or ("real" if values["label"] == REAL else "unknown")
    values["group"] = values["group"] or str(values["path"])
    values["dataset"] = values["dataset"] or "folder"
    return ManifestRow(**values)  # type: ignore[arg-type]


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a manifest CSV. Raises :class:`ManifestError` with the file and line on bad rows."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path} (create one with `dfdetect prepare`)")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise ManifestError(f"{path}: header must contain at least 'path' and 'label'")
        rows = [_parse(raw, i + 2, str(path)) for i, raw in enumerate(reader)]
    check_unique(rows)
    return rows


def manifest_text(rows: Iterable[ManifestRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        d = {name: getattr(row, name) for name in FIELDS}  # flat fields: no deep copy (asdict is slow)
        d["segments"] = segments_text(row.segments)
        writer.writerow({k: "" if v is None else v for k, v in d.items()})
    return buf.getvalue()


def write_manifest(rows: Iterable[ManifestRow], path: str | os.PathLike) -> Path:
    """Write rows atomically as CSV."""
    rows = list(rows)
    check_unique(rows)
    return atomic_write_text(path, manifest_text(rows))


def check_unique(rows: list[ManifestRow]) -> None:
    seen: set[str] = set()
    for row in rows:
        if row.path in seen:
            raise ManifestError(f"duplicate path in manifest: {row.path}")
        seen.add(row.path)


def select(rows: Iterable[ManifestRow], split: str | None = None) -> list[ManifestRow]:
    """Rows of one split (all rows when ``split`` is None or "all")."""
    return [r for r in rows if split in (None, "all") or r.split == split]


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of a file (hex, first 16 chars): used in protocol cards for manifests and checkpoints."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
