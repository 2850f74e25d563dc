"""The routes of the service (see :mod:`dfdetect.serve.app` for the list)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from dfdetect import __version__
from dfdetect.constants import VERDICT_BAND
from dfdetect.serve.auth import retry_after_header
from dfdetect.serve.errors import ApiError
from dfdetect.serve.jobs import STATES, CursorError, NewJob, QueueFullError
from dfdetect.serve.metrics import rss_bytes
from dfdetect.serve.service import REPORT_CSP, Service, job_or_404, principal_dependency
from dfdetect.serve.uploads import Received, ReceivedFile, receive

log = logging.getLogger(__name__)

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _explain_flag(fields: dict[str, str], default: bool) -> bool:
    value = fields.get("explain")
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ApiError(400, "bad_field", f"'explain' must be true or false, not {value[:20]!r}")


MAX_PASSES = 32  # most stochastic passes an upload may ask for (each one is a full model pass)


def _uncertainty_field(fields: dict[str, str]) -> int:
    """The ``uncertainty`` form field: N stochastic passes (0 or absent: none; else 2..MAX_PASSES)."""
    value = (fields.get("uncertainty") or "0").strip()
    n = int(value) if value.isascii() and value.isdigit() and len(value) <= 3 else -1  # not "²", "٣"
    if n != 0 and not 2 <= n <= MAX_PASSES:
        raise ApiError(
            400, "bad_field", f"'uncertainty' must be 0 or 2 to {MAX_PASSES} passes, not {value[:20]!r}"
        )
    return n


def _rate_limited(wait: float) -> ApiError:
    return ApiError(429, "rate_limited", "too many uploads for this key; slow down", retry_after_header(wait))


def _cleanup(service: Service, files: list[ReceivedFile]) -> None:
    for f in files:
        (service.uploads / f.stored).unlink(missing_ok=True)


async def _upload(service: Service, request: Request, owner: str) -> list[dict[str, Any]]:
    settings = service.settings
    queued = service.store.counts()["queued"]
    if queued >= settings.max_queue:
        raise ApiError(
            429,
            "queue_full",
            f"the scan queue is full ({queued} jobs waiting); retry later",
            retry_after_header(service.retry_after(queued)),
        )
    rate = getattr(request.state, "rate", None)
    if wait := service.upload_limiter.wait(owner, 1.0, rate):  # refused before reading the body
        raise _rate_limited(wait)
    received: Received = await receive(request, service.uploads, settings.limits)
    files = received.files
    try:
        explain = _explain_flag(received.fields, settings.explain)
        passes = _uncertainty_field(received.fields)
        if wait := service.upload_limiter.wait(owner, float(len(files)), rate):  # one token a file
            raise _rate_limited(wait)
        jobs = [NewJob(f.id, f.filename, f.kind, f.size, f.stored, explain, passes) for f in files]
        await run_in_threadpool(service.store.add, owner, jobs, settings.max_queue, service.retry_after)
        service.upload_limiter.take(owner, float(len(files)), rate)  # spent only once accepted
    except QueueFullError as e:
        _cleanup(service, files)
        raise ApiError(429, "queue_full", str(e), retry_after_header(e.retry_after)) from None
    except BaseException:
        _cleanup(service, files)
        raise
    service.pool.wake()
    service.metrics.uploaded(sum(f.size for f in files))
    return [service.view(service.store.get(j.id, with_result=False)) for j in jobs]  # type: ignore[arg-type]


def install_routes(app: FastAPI, service: Service) -> None:
    """Add the scan routes (``/v1/scans...``) and the service routes (models, health, metrics)."""
    principal = principal_dependency(service)
    _install_scan_routes(app, service, principal)
    _install_service_routes(app, service, principal)


def _install_scan_routes(app: FastAPI, service: Service, principal: Any) -> None:
    @app.post("/v1/scans", status_code=202, tags=["scans"], summary="Upload files to scan")
    async def create_scans(request: Request, owner: str = principal) -> JSONResponse:
        """Multipart upload: one or several files in fields named ``file`` or ``files`` (plus an optional
        ``explain=true|false`` and ``uncertainty=N``: p_fake's spread over N stochastic passes, 2..32).
        Returns the new jobs at once (202); poll ``GET /v1/scans/{id}``."""
        jobs = await _upload(service, request, owner)
        return JSONResponse({"jobs": jobs}, status_code=202)

    @app.get("/v1/scans", tags=["scans"], summary="List scan jobs, newest first")
    def list_scans(
        owner: str = principal,
        state: str | None = Query(None, description="queued, running, done or failed"),
        limit: int = Query(50, ge=1, le=500),
        before: str | None = Query(None, max_length=64, description="the 'next' cursor of the previous page"),
    ) -> dict[str, Any]:
        if state is not None and state not in STATES:
            raise ApiError(400, "bad_state", f"state must be one of {', '.join(STATES)}, not {state[:20]!r}")
        scope = owner if service.settings.keys is not None else None
        try:
            jobs = service.store.list(scope, state, limit, before)
        except CursorError as e:
            raise ApiError(400, "bad_cursor", str(e)) from None
        nxt = jobs[-1].id if len(jobs) == limit else None  # opaque: a job id of the caller's own
        return {"jobs": [service.view(j) for j in jobs], "next": nxt}

    @app.get("/v1/scans/{job_id}", tags=["scans"], summary="A job: state, progress, prediction")
    def get_scan(job_id: str, owner: str = principal) -> dict[str, Any]:
        return service.view(job_or_404(service, job_id, owner, with_result=True), with_result=True)

    @app.get("/v1/scans/{job_id}/report", tags=["scans"], summary="HTML report of a finished scan")
    def get_report(job_id: str, owner: str = principal) -> HTMLResponse:
        job = job_or_404(service, job_id, owner, with_result=True)
        if job.state != "done" or job.result is None:
            why = job.error if job.state == "failed" else f"the scan is {job.state}"
            raise ApiError(409, "not_ready", f"no report: {why}")
        from dfdetect.infer.report import render_report
        from dfdetect.types import Prediction

        thresholds = tuple(service.pool.info.get("thresholds", VERDICT_BAND))
        pred = Prediction.from_dict(job.result)
        html = render_report([pred], title=f"dfdetect: {job.filename}", thresholds=thresholds)
        return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})

    @app.delete("/v1/scans/{job_id}", tags=["scans"], summary="Delete a job, its upload and result")
    def delete_scan(job_id: str, owner: str = principal) -> dict[str, Any]:
        job = job_or_404(service, job_id, owner)
        service.forget(job.id)
        return {"deleted": job.id, "state": job.state}


def _install_service_routes(app: FastAPI, service: Service, principal: Any) -> None:
    @app.get("/v1/models", tags=["models"], summary="Known models and the one this server runs")
    def models(owner: str = principal) -> dict[str, Any]:
        import dfdetect

        return {
            "loaded": service.pool.info,
            "available": dfdetect.available_models(),
            "workers": service.pool.workers,
        }

    @app.get("/healthz", tags=["service"], summary="Liveness and readiness")
    def healthz() -> dict[str, Any]:
        counts = service.store.counts()
        s = service.settings
        return {
            "status": "ok",
            "version": __version__,
            "model": service.pool.info.get("name"),
            "workers": service.pool.workers,
            "busy": len(service.pool.running),
            "queued": counts["queued"],
            "auth": s.keys is not None,
            "limits": {
                "max_file_bytes": s.limits.max_file_bytes,
                "max_files": s.limits.max_files,
                "max_request_bytes": s.limits.max_request_bytes,
                "upload_timeout_seconds": s.limits.upload_timeout_s,
                "scan_timeout_seconds": s.scan_timeout_s or None,
                "max_queue": s.max_queue,
                "retention_seconds": s.retention_s,
            },
        }

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        text = service.metrics.render(
            service.store.counts(), len(service.pool.running), service.pool.workers, rss_bytes()
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
