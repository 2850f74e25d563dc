"""Results of ``dfdetect batch``: JSON lines, Parquet shards, a summary, and what resume skips.

The output folder holds

- ``results.jsonl``: one record per scanned file, appended as each finishes (one ``write`` + ``fsync``
  per line, so a killed run loses nothing it reported; a torn last line is cut off on the next run);
- ``parquet/part-NNNNN.parquet``: the same records as flat columns, ``shard_size`` records per shard
  in ``results.jsonl`` order, each shard written atomically (temporary file + rename) and rebuilt from
  the JSON lines on the next run when it is missing or short;
- ``summary.json``: counts of the last run (done / skipped / failed, by status, by verdict) and its rate.

A file is done when its latest record has the same model hash (sha256 of the checkpoint file), the same
scan options and the same file hash (sha256 of its content), and was not a batch failure (a worker that
died on every try). Resume compares size and modification time first, so unchanged files are not read
again; a file whose size or time changed is hashed again by a worker. Later records supersede earlier
ones for the same path: :func:`read_results` gives the latest per path.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dfdetect.io.files import atomic_write, atomic_write_text

JSONL = "results.jsonl"
PARQUET_DIR = "parquet"
SUMMARY = "summary.json"
HASHES = "file_hashes.json"  # path -> [size, mtime_ns, sha256] of files touched since their record
LOCK = ".lock"
SHARD_SIZE = 1000


class BatchOutputError(RuntimeError):
    """The output folder cannot be used (locked by another run, or not writable)."""


@dataclass(frozen=True)
class Known:
    """What resume needs of a file's latest record."""

    file_hash: str | None
    size: int | None
    mtime_ns: int | None
    model_hash: str
    options: dict[str, Any]
    batch_error: bool
    status: str
    verdict: str | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> Known:
        return cls(
            record.get("file_hash"),
            record.get("size"),
            record.get("mtime_ns"),
            record.get("model_hash", ""),
            record.get("options", {}),
            bool(record.get("batch_error")),
            str(record.get("status")),
            record.get("verdict"),
        )


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """One Parquet row: the record's scalar fields, the modality scores, and the prediction as JSON."""
    pred = record.get("prediction") or {}
    modality = pred.get("modality") or {}
    worker = record.get("worker") or {}
    return {
        **{k: record.get(k) for k in ("path", "file_hash", "size", "mtime_ns", "model", "model_hash")},
        **{k: record.get(k) for k in ("status", "kind", "verdict", "p_fake", "message", "attempts")},
        "visual": modality.get("visual"),
        "audio": modality.get("audio"),
        "sync": modality.get("sync"),
        "n_tracks": len(pred.get("tracks") or []),
        "seconds": record.get("seconds"),
        "finished_at": record.get("finished_at"),
        "batch_error": bool(record.get("batch_error")),
        "host": worker.get("host"),
        "pid": worker.get("pid"),
        "prediction": json.dumps(pred) if pred else None,
    }


def _schema() -> Any:
    import pyarrow as pa

    types = {
        "size": pa.int64(),
        "mtime_ns": pa.int64(),
        "p_fake": pa.float64(),
        "attempts": pa.int64(),
        "visual": pa.float64(),
        "audio": pa.float64(),
        "sync": pa.float64(),
        "n_tracks": pa.int64(),
        "seconds": pa.float64(),
        "batch_error": pa.bool_(),
        "pid": pa.int64(),
    }
    names = list(_flat({}))
    return pa.schema([(n, types.get(n, pa.string())) for n in names])


def write_shard(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` as one Parquet file, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([_flat(r) for r in records], schema=_schema())
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp), suffix=".parquet")


def _shard_rows(path: Path) -> int | None:
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):  # missing, or not a Parquet file (pyarrow raises ArrowInvalid)
        return None


def _repair_tail(path: Path) -> None:
    """Cut a torn last line (a run killed inside a write) so the next append starts a clean line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def iter_records(out_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Every valid record of ``results.jsonl`` in file order (torn or garbled lines skipped)."""
    path = Path(out_dir) / JSONL
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # a torn last line: the run writing it was killed
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "path" in record:
                yield record


def read_results(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The latest record of every path in ``out_dir`` (in the order paths were first seen)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in iter_records(out_dir):
        latest[record["path"]] = record
    return list(latest.values())


@dataclass
class BatchSummary:
    """What one ``dfdetect batch`` run did (written to ``summary.json``)."""

    out_dir: str
    model: str = ""
    model_hash: str = ""
    total: int = 0  # files this run was asked for
    done: int = 0  # scanned in this run (any status the detector gave)
    skipped: int = 0  # already done with the same model and file content
    failed: int = 0  # workers died on every try: recorded with status "error" (retried next run)
    missing: list[str] = field(default_factory=list)  # arguments that matched no file
    by_status: dict[str, int] = field(default_factory=dict)  # over all ``total`` files
    by_verdict: dict[str, int] = field(default_factory=dict)
    workers: int = 0
    worker_restarts: int = 0
    startup_seconds: float = 0.0  # starting the workers (loading the model in each)
    seconds: float = 0.0
    rate: float = 0.0  # files scanned per second in this run (skipped ones not counted)

    def add(self, record: dict[str, Any], skipped: bool = False) -> None:
        if skipped:
            self.skipped += 1
        elif record.get("batch_error"):
            self.failed += 1
        else:
            self.done += 1
        status, verdict = str(record.get("status")), record.get("verdict") or "none"
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.by_verdict[verdict] = self.by_verdict.get(verdict, 0) + 1

    def format(self) -> str:
        def counts(d: dict[str, int]) -> str:
            return ", ".join(f"{k}: {v}" for k, v in sorted(d.items())) or "none"

        lines = [
            f"batch: {self.total} files in {self.seconds:.1f} s ({self.rate:.2f} files/s) -> {self.out_dir}",
            f"  done {self.done}, skipped {self.skipped} (up to date), failed {self.failed}",
            f"  by status: {counts(self.by_status)}",
            f"  by verdict: {counts(self.by_verdict)}",
        ]
        if self.missing:
            lines.append(f"  nothing found for: {', '.join(self.missing)}")
        return "\n".join(lines)


class ResultStore:
    """The results folder of one batch run: resume index, appends, Parquet shards, summary.

    Use as a context manager: entering takes a lock on the folder (one run at a time), repairs a torn
    last line, indexes what is done and rebuilds missing shards; leaving writes the last shard.
    """

    def __init__(self, out_dir: str | os.PathLike, shard_size: int = SHARD_SIZE) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.out = Path(out_dir)
        self.shard_size = shard_size
        self.known: dict[str, Known] = {}
        self.count = 0  # valid records in results.jsonl
        self._tail: list[dict[str, Any]] = []  # records of the last, incomplete shard
        self._fd: int | None = None
        self._lock: int | None = None
        self._hashes: dict[str, list[Any]] = {}
        self._hashes_changed = False

    def __enter__(self) -> ResultStore:
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.out / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise BatchOutputError(
                f"another dfdetect batch is writing to {self.out}; wait for it or pick another --out"
            ) from None
        _repair_tail(self.out / JSONL)
        self._index()
        try:
            self._hashes = json.loads((self.out / HASHES).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._hashes = {}
        self._fd = os.open(self.out / JSONL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tail:
            write_shard(self.shard_path(self.count // self.shard_size), self._tail)
        if self._hashes_changed:
            atomic_write_text(self.out / HASHES, json.dumps(self._hashes) + "\n")
        if self._fd is not None:
            os.close(self._fd)
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
        self._fd = self._lock = None

    def shard_path(self, index: int) -> Path:
        return self.out / PARQUET_DIR / f"part-{index:05d}.parquet"

    def _index(self) -> None:
        """Read results.jsonl once: the resume index, and every complete shard checked (rebuilt if short)."""
        for record in iter_records(self.out):
            self.known[record["path"]] = Known.of(record)
            self._tail.append(record)
            self.count += 1
            if len(self._tail) == self.shard_size:
                self._seal(self.count // self.shard_size - 1, check=True)

    def _seal(self, index: int, check: bool = False) -> None:
        path = self.shard_path(index)
        if not check or _shard_rows(path) != len(self._tail):
            write_shard(path, self._tail)
        self._tail = []

    def is_done(self, path: str, model_hash: str, options: dict[str, Any]) -> Known | None:
        """The latest record of ``path`` when it counts as done with this model and these options."""
        known = self.known.get(path)
        if known is None or known.batch_error or known.model_hash != model_hash or known.options != options:
            return None
        return known

    def unchanged(self, path: str, known: Known) -> bool:
        """True when ``path`` has the size and time of its record (or of a later hash of the same
        content): it is not read again. False when it changed, or this machine cannot see it."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns) == (known.size, known.mtime_ns):
            return True
        return self._hashes.get(path) == [st.st_size, st.st_mtime_ns, known.file_hash]

    def remember_hash(self, path: str, size: int, mtime_ns: int, file_hash: str) -> None:
        """A worker found ``path`` touched but not changed: skip hashing it next time."""
        self._hashes[path] = [size, mtime_ns, file_hash]
        self._hashes_changed = True

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably (one write, then fsync); seal the shard when it is full."""
        assert self._fd is not None, "use ResultStore as a context manager"
        data = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        while data:
            data = data[os.write(self._fd, data) :]
        os.fsync(self._fd)
        self.known[record["path"]] = Known.of(record)
        self._tail.append(record)
        self.count += 1
        if len(self._tail) == self.shard_size:
            self._seal(self.count // self.shard_size - 1)

    def write_summary(self, summary: BatchSummary) -> Path:
        return atomic_write_text(self.out / SUMMARY, json.dumps(asdict(summary), indent=2) + "\n")
