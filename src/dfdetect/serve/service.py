"""The running service of ``dfdetect serve``: its settings, job store, worker pool, limits and metrics.

Shared by :mod:`dfdetect.serve.app` (which builds the FastAPI app) and :mod:`dfdetect.serve.routes`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, Request

from dfdetect.infer.options import ScanOptions
from dfdetect.serve.auth import ApiKey, RateLimiter, hash_key, key_from_headers, retry_after_header
from dfdetect.serve.errors import ApiError
from dfdetect.serve.jobs import Job, JobStore, WorkerPool
from dfdetect.serve.metrics import Metrics
from dfdetect.serve.middleware import LOCAL_HOSTS
from dfdetect.serve.uploads import UploadLimits

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'"


@dataclass
class ServeSettings:
    """What ``dfdetect serve`` runs with (see the CLI options for each)."""

    data_dir: Path
    model: str | None = None
    device: str = "auto"
    workers: int = 1
    limits: UploadLimits = field(default_factory=UploadLimits)
    max_queue: int = 100
    retention_s: float = 24 * 3600.0
    keys: dict[str, ApiKey] | None = None  # digest -> key; None: no authentication (local use)
    uploads_per_minute: float = 60.0  # per key; 0 disables
    reads_per_minute: float = 1200.0  # GET/DELETE per key; 0 disables
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS  # names the server answers to (Host header); "*": any
    explain: bool = True  # default for uploads that do not say
    options: ScanOptions = field(default_factory=ScanOptions)  # what scanners load with; jobs override
    # explain and uncertainty per scan (dfdetect.serve.scanners.job_options)
    max_attempts: int = 3
    scan_timeout_s: float = 600.0  # watchdog: a scan running longer is stopped (its scanner restarted)


def private_dir(path: Path, tighten: bool = True) -> None:
    """Create ``path`` (with its parents) for this user only (0700); an existing folder is made 0700 only
    when ``tighten`` (the server's own ``uploads``, not a data folder the user chose)."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        tighten = True
    if tighten:
        path.chmod(0o700)


class Service:
    """The running parts: job store, worker pool, limits, metrics."""

    def __init__(self, settings: ServeSettings, make_scanner: Any) -> None:
        self.settings = settings
        self.uploads = Path(settings.data_dir) / "uploads"
        private_dir(Path(settings.data_dir), tighten=False)
        private_dir(self.uploads)
        self.store = JobStore(Path(settings.data_dir) / "jobs.sqlite")
        self.metrics = Metrics()
        self.upload_limiter = RateLimiter(settings.uploads_per_minute)
        self.read_limiter = RateLimiter(settings.reads_per_minute)
        self.pool = WorkerPool(self.store, self.uploads, make_scanner, settings.workers, self._finished)
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None

    def start(self) -> None:
        requeued, failed = self.store.recover(self.settings.max_attempts)
        if requeued or failed:
            log.warning("restart: %d interrupted job(s) queued again, %d given up", requeued, failed)
        self._remove_orphans()
        self.pool.start()
        self._janitor = threading.Thread(target=self._retention_loop, name="dfdetect-retention", daemon=True)
        self._janitor.start()

    def stop(self) -> None:
        self._stop.set()
        self.pool.stop()
        self.store.close()

    def _finished(self, job: Job, result: dict | None, error: str | None, seconds: float) -> None:
        status = "failed" if error else str((result or {}).get("status", "unknown"))
        self.metrics.scan_finished(status, seconds, time.time() - job.created)

    def _remove_orphans(self) -> None:
        """Files left by uploads a crash cut short, or by jobs deleted while the server was down."""
        keep = {j.upload for j in self.store.list(None, "queued", limit=1_000_000) if j.upload}
        for p in self.uploads.iterdir():
            if p.is_file() and p.name not in keep:
                p.unlink(missing_ok=True)

    def purge_expired(self) -> int:
        """Delete finished jobs older than the retention, with their files; returns how many."""
        expired = self.store.expired(time.time() - self.settings.retention_s)
        for job in expired:
            self.forget(job.id)
        return len(expired)

    def forget(self, job_id: str) -> Job | None:
        """Delete a job, its upload and result; a scan of it still running is stopped."""
        job = self.store.delete(job_id)
        if job is not None:
            self.pool.cancel(job.id)
            if job.upload:
                (self.uploads / job.upload).unlink(missing_ok=True)
        return job

    def _retention_loop(self) -> None:
        period = max(1.0, min(60.0, self.settings.retention_s / 4))
        while not self._stop.wait(period):
            try:
                if n := self.purge_expired():
                    log.info("retention: deleted %d job(s)", n)
            except Exception:  # noqa: BLE001 - keep the janitor alive
                log.exception("retention cleanup failed")

    def average_scan_seconds(self) -> float:
        recent = self.store.recent_scan_seconds()
        return sum(recent) / len(recent) if recent else 10.0

    def retry_after(self, queued: int) -> int:
        wait = (queued + 1) / self.settings.workers * self.average_scan_seconds()
        return int(min(600, max(1, math.ceil(wait))))

    def view(self, job: Job, with_result: bool = False) -> dict[str, Any]:
        """The JSON form of a job."""
        now = time.time()
        out: dict[str, Any] = {
            "id": job.id,
            "filename": job.filename,
            "media_kind": job.media_kind,
            "size": job.size,
            "state": job.state,
            "attempts": job.attempts,
            "created": job.created,
            "started": job.started,
            "finished": job.finished,
            "explain": job.explain,
            "uncertainty": job.uncertainty,
            "progress": 1.0 if job.state in ("done", "failed") else 0.0,
            "links": {"self": f"/v1/scans/{job.id}", "report": f"/v1/scans/{job.id}/report"},
        }
        if job.state == "queued":
            out["queue_position"] = self.store.queue_position(job)
        elif job.state == "running" and job.started:
            elapsed = now - job.started
            out["elapsed"] = round(elapsed, 2)
            out["progress"] = round(min(0.95, elapsed / max(0.1, self.average_scan_seconds())), 3)
        if job.scan_seconds is not None:
            out["scan_seconds"] = round(job.scan_seconds, 3)
        if job.error:
            out["error"] = job.error
        if with_result and job.result is not None:
            out["prediction"] = job.result
        if job.state == "done":
            out.update(status=job.r_status, verdict=job.r_verdict, p_fake=job.r_p_fake)
        return out


def principal_dependency(service: Service):
    """A FastAPI dependency: the caller's key name (``local`` without keys), after its rate limit."""

    def principal(request: Request) -> str:
        keys = service.settings.keys
        if keys is None:
            name, rate = "local", None
        else:
            key = key_from_headers(request.headers)
            entry = keys.get(hash_key(key)) if key else None
            if entry is None:
                raise ApiError(
                    401,
                    "unauthorized",
                    "a valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                    if not key
                    else "this API key is not valid",
                    {"WWW-Authenticate": "Bearer"},
                )
            name, rate = entry.name, entry.rate_per_minute
        if request.method != "POST":
            wait = service.read_limiter.take(name, 1.0, rate * 20 if rate else None)
            if wait:
                raise ApiError(429, "rate_limited", "too many requests; slow down", retry_after_header(wait))
        request.state.rate = rate
        return name

    return Depends(principal)


def _gone(job_id: str) -> str:
    return f"no scan job {job_id[:40]!r} (finished jobs are deleted after the retention time)"


def job_or_404(service: Service, job_id: str, owner: str, with_result: bool = False) -> Job:
    job = service.store.get(job_id, with_result=with_result) if _JOB_ID.match(job_id) else None
    if job is None or (service.settings.keys is not None and job.owner != owner):
        raise ApiError(404, "not_found", _gone(job_id))
    return job
