"""Durable scan jobs: a SQLite (WAL) job store and a bounded pool of workers that keep the model loaded.

A job is accepted only once its row is committed (``synchronous=FULL``), so a server killed with -9
loses nothing it answered for. States: ``queued`` -> ``running`` -> ``done`` | ``failed``. On start,
:meth:`JobStore.recover` puts jobs left ``running`` by a dead server back in the queue (they run
again); a job that has already been interrupted ``max_attempts`` times is marked failed instead, so a
file that crashes the process cannot crash it forever. Results are written only by the attempt that
claimed the job (``WHERE attempts = ?``), so nothing is ever written twice.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    media_kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    upload TEXT,
    explain INTEGER NOT NULL DEFAULT 0,
    uncertainty INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    scan_seconds REAL,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, seq);
"""

_COLUMNS = (
    "seq, id, owner, filename, media_kind, size, upload, explain, uncertainty, state, attempts, created, "
    "started, finished, scan_seconds, error, json_extract(result, '$.status') AS r_status, "
    "json_extract(result, '$.verdict') AS r_verdict, json_extract(result, '$.p_fake') AS r_p_fake"
)


class CursorError(ValueError):
    """A ``before`` cursor that is not one of the caller's jobs."""


class QueueFullError(Exception):
    """The queue holds ``max_queued`` jobs; ``retry_after`` is a hint in seconds."""

    def __init__(self, queued: int, limit: int, retry_after: int) -> None:
        super().__init__(f"the scan queue is full ({queued} of {limit} jobs waiting); retry later")
        self.retry_after = retry_after


@dataclass(frozen=True)
class NewJob:
    """An upload already on disk, waiting to be committed as a job."""

    id: str
    filename: str  # the client's name, for display only (never used as a path)
    media_kind: str  # video | audio | image, as sniffed from the content
    size: int
    upload: str  # file name inside the uploads folder (server-made)
    explain: bool = False
    uncertainty: int = 0  # stochastic passes for p_fake's spread (0: none)


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    owner: str
    filename: str
    media_kind: str
    size: int
    upload: str | None
    explain: bool
    state: str
    attempts: int
    created: float
    started: float | None
    finished: float | None
    scan_seconds: float | None
    error: str | None
    r_status: str | None = None  # summary of the result, read without loading it
    r_verdict: str | None = None
    r_p_fake: float | None = None
    uncertainty: int = 0
    result: dict[str, Any] | None = field(default=None, compare=False)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Jobs in one SQLite file; safe to call from several threads (one connection, one lock).

    Args:
        path: the database file (created with its folder; 0600, and so are its ``-wal`` / ``-shm``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private_files(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "uncertainty" not in columns:  # a database of an older version
            self._db.execute("ALTER TABLE jobs ADD COLUMN uncertainty INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- writes --------------------------------------------------------------------------------

    def add(self, owner: str, jobs: list[NewJob], max_queued: int, retry_after: Callable[[int], int]) -> None:
        """Commit ``jobs`` as queued, all or none.

        Raises:
            QueueFullError: the queue would hold more than ``max_queued`` jobs.
        """
        now = time.time()
        with self._tx() as db:
            queued = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
            if queued + len(jobs) > max_queued:
                raise QueueFullError(queued, max_queued, retry_after(queued))
            db.executemany(
                "INSERT INTO jobs (id, owner, filename, media_kind, size, upload, explain, uncertainty, "
                "state, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                [
                    (j.id, owner, j.filename, j.media_kind, j.size, j.upload, j.explain, j.uncertainty, now)
                    for j in jobs
                ],
            )

    def claim(self) -> Job | None:
        """Take the oldest queued job: it becomes ``running`` and its attempt count goes up."""
        with self._tx() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = ? WHERE seq = ?",
                (now, row["seq"]),
            )
        job = _job(row)
        return Job(**{**job.__dict__, "state": "running", "attempts": job.attempts + 1, "started": now})

    def finish(
        self, job: Job, result: dict[str, Any] | None, error: str | None = None, scan_seconds: float = 0.0
    ) -> bool:
        """Record the outcome of the attempt ``job`` was claimed with; False if the job is gone."""
        state = "done" if error is None else "failed"
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, result = ?, error = ?, finished = ?, scan_seconds = ?, "
                "upload = NULL WHERE id = ? AND state = 'running' AND attempts = ?",
                (
                    state,
                    None if result is None else json.dumps(result),
                    error,
                    time.time(),
                    scan_seconds,
                    job.id,
                    job.attempts,
                ),
            )
            return cur.rowcount == 1

    def recover(self, max_attempts: int) -> tuple[int, int]:
        """After a restart: jobs left ``running`` go back to the queue, or fail after ``max_attempts``.

        Returns:
            ``(requeued, failed)`` counts.
        """
        with self._tx() as db:
            failed = db.execute(
                "UPDATE jobs SET state = 'failed', finished = ?, upload = NULL, error = ? "
                "WHERE state = 'running' AND attempts >= ?",
                (
                    time.time(),
                    f"the server stopped during this scan {max_attempts} times; the file was not scanned",
                    max_attempts,
                ),
            ).rowcount
            requeued = db.execute("UPDATE jobs SET state = 'queued' WHERE state = 'running'").rowcount
        return requeued, failed

    def delete(self, job_id: str) -> Job | None:
        """Remove a job; returns it (with its upload name, for the caller to delete) or None."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else _job(row)

    def expired(self, finished_before: float) -> list[Job]:
        """Finished jobs older than ``finished_before`` (for retention)."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('done', 'failed') AND finished < ?",
            (finished_before,),
        )
        return [_job(r) for r in rows]

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: str, with_result: bool = True) -> Job | None:
        cols = f"{_COLUMNS}, result" if with_result else _COLUMNS
        rows = self._query(f"SELECT {cols} FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def list(
        self, owner: str | None, state: str | None = None, limit: int = 50, before: str | None = None
    ) -> list[Job]:
        """Jobs newest first, without results.

        Args:
            owner: only this owner's jobs (None: everyone's).
            state: only jobs in this state.
            limit: at most this many.
            before: the id of the last job of the previous page (an opaque cursor: it must be one of
                ``owner``'s jobs, and says nothing of other owners' jobs).

        Raises:
            CursorError: ``before`` is not a job of ``owner``.
        """
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if before is not None:
            where.append("seq < ?")
            args.append(self._seq_of(before, owner))
        sql = f"SELECT {_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._query(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [_job(r) for r in rows]

    def _seq_of(self, job_id: str, owner: str | None) -> int:
        rows = self._query("SELECT seq, owner FROM jobs WHERE id = ?", (job_id,))
        if not rows or (owner is not None and rows[0]["owner"] != owner):
            raise CursorError(f"'before' must be the 'next' cursor of a previous page, not {job_id[:40]!r}")
        return int(rows[0]["seq"])

    def queue_position(self, job: Job) -> int:
        """How many queued jobs are ahead of ``job``."""
        return self._query("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND seq < ?", (job.seq,))[0][0]

    def counts(self) -> dict[str, int]:
        rows = self._query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        out = dict.fromkeys(STATES, 0)
        out.update({r[0]: r[1] for r in rows})
        return out

    def recent_scan_seconds(self, n: int = 20) -> list[float]:
        rows = self._query(
            "SELECT scan_seconds FROM jobs WHERE state = 'done' AND scan_seconds IS NOT NULL "
            "ORDER BY finished DESC LIMIT ?",
            (n,),
        )
        return [float(r[0]) for r in rows]


def _private_files(db: Path) -> None:
    """Create the database 0600 (SQLite gives its ``-wal`` and ``-shm`` files the same mode); an
    existing database of an older version is made 0600 too."""
    fd = os.open(db, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if p.exists():
            p.chmod(0o600)


def scrub_paths(value: Any, replacements: list[tuple[str, str]]) -> Any:
    """``value`` (JSON-able) with every occurrence of each ``old`` string replaced by its ``new`` one."""
    text = json.dumps(value)
    for old, new in sorted(replacements, key=lambda r: -len(r[0])):  # a path before its folder
        if old:
            text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    return json.loads(text)


def _job(row: sqlite3.Row) -> Job:
    d = dict(row)
    result = d.pop("result", None)
    d["explain"] = bool(d["explain"])
    return Job(**d, result=json.loads(result) if result else None)


OnFinish = Callable[[Job, dict[str, Any] | None, str | None, float], None]


class WorkerPool:
    """``workers`` threads, each driving its own scanner (a loaded model), over a :class:`JobStore`.

    Args:
        store: the job store.
        uploads: folder of the uploaded files (a job's ``upload`` is a name inside it).
        make_scanner: returns a :class:`~dfdetect.serve.scanners.Scanner`; called once per worker.
        workers: number of workers.
        on_finish: called after each job with ``(job, result, error, seconds)`` (metrics).
    """

    def __init__(
        self,
        store: JobStore,
        uploads: Path,
        make_scanner: Callable[[], Any],
        workers: int = 1,
        on_finish: OnFinish | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.store, self.uploads, self.workers = store, Path(uploads), workers
        self._make, self._on_finish = make_scanner, on_finish
        self._cv = threading.Condition()
        self._stop = False
        self._threads: list[threading.Thread] = []
        self.running: dict[str, float] = {}  # job id -> start time
        self.scanners: list[Any] = []
        self._lock = threading.Lock()
        self._scanning: dict[str, Any] = {}  # job id -> the scanner working on it
        self._cancelled: set[str] = set()

    @property
    def info(self) -> dict[str, Any]:
        """Name, device and verdict thresholds of the loaded model."""
        return self.scanners[0].info if self.scanners else {}

    def start(self) -> None:
        """Load the model in every worker, in parallel (errors surface here, before serving); start."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers) as ex:
            futures = [ex.submit(self._make) for _ in range(self.workers)]
        try:
            self.scanners = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                if f.exception() is None:
                    f.result().close()
            raise
        for i, scanner in enumerate(self.scanners):
            t = threading.Thread(target=self._loop, args=(scanner,), name=f"dfdetect-scan-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wake(self) -> None:
        """New jobs were queued."""
        with self._cv:
            self._cv.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; a scan cut short here stays ``running`` and is re-run at the next start."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for scanner in self.scanners:
            scanner.close()

    def _loop(self, scanner: Any) -> None:
        while True:
            with self._cv:
                if self._stop:
                    return
            try:
                job = self.store.claim()
            except sqlite3.Error:
                log.exception("could not claim a job")
                job = None
            if job is None:
                with self._cv:
                    if not self._stop:
                        self._cv.wait(timeout=1.0)
                continue
            self._run(scanner, job)

    def cancel(self, job_id: str) -> bool:
        """Stop the scan of ``job_id`` if one is running (its scanner process is killed, and started
        again for the next job); True if a scan was stopped. An in-process scanner cannot be stopped:
        its result is dropped when it ends (the job is gone)."""
        with self._lock:
            scanner = self._scanning.get(job_id)
            if scanner is None:
                return False
            self._cancelled.add(job_id)
        stop = getattr(scanner, "stop", None)
        return bool(stop is not None and stop())

    def _run(self, scanner: Any, job: Job) -> None:
        from dfdetect.serve.scanners import ScannerCrashedError, ScanTimeoutError

        path = self.uploads / (job.upload or "")
        self.running[job.id] = time.time()
        start = time.perf_counter()
        result, error = None, None
        with self._lock:
            self._scanning[job.id] = scanner
        try:
            if not job.upload or not path.is_file():
                raise FileNotFoundError("the uploaded file is missing from the server's data folder")
            result = scanner.scan(str(path), job.explain, job.uncertainty)
            result["path"] = job.filename  # never show the server's path
        except ScanTimeoutError as e:
            error = str(e)
        except ScannerCrashedError as e:
            error = f"{e} while scanning this file; it was not scanned"
        except Exception as e:  # noqa: BLE001 - one job's failure never stops the worker
            error = f"{type(e).__name__}: {e}" if not isinstance(e, RuntimeError) else str(e)
        finally:
            with self._lock:
                self._scanning.pop(job.id, None)
                cancelled = job.id in self._cancelled
                self._cancelled.discard(job.id)
        if error and self._stop:
            self.running.pop(job.id, None)
            return  # shutting down: left running, re-run at the next start
        result, error = self._scrub(job, path, result, error)
        if cancelled:
            log.info("job %s (%s) deleted while scanning: its scan was stopped", job.id, job.filename)
        elif error:
            log.warning("job %s (%s) failed: %s", job.id, job.filename, error)
        self._record(job, result, error, time.perf_counter() - start, path)

    def _scrub(self, job: Job, path: Path, result: dict | None, error: str | None) -> tuple[Any, Any]:
        """The result and error with the server's paths replaced by the client's file name."""
        names = [(str(p), job.filename) for p in {path.resolve(), path.absolute(), path}]
        names += [
            (str(self.uploads.resolve()), ""),
            (str(self.uploads), ""),
            (job.upload or "", job.filename),
        ]
        return scrub_paths(result, names), scrub_paths(error, names)

    def _record(self, job: Job, result: dict | None, error: str | None, seconds: float, path: Path) -> None:
        kept = gone = False
        try:
            kept = self.store.finish(job, result, error, seconds)
            gone = not kept and self.store.get(job.id, with_result=False) is None
        except sqlite3.Error:  # also a store closed by a shutdown that did not wait for this scan
            log.exception("could not record job %s", job.id)
        finally:
            self.running.pop(job.id, None)
        if kept or gone:
            path.unlink(missing_ok=True)
        if kept and self._on_finish is not None:
            self._on_finish(job, result, error, seconds)
