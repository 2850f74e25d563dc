"""The FastAPI app of ``dfdetect serve``: versioned REST routes, the web page, health and metrics.

Routes (OpenAPI docs at ``/docs``)::

    POST   /v1/scans               multipart upload, one or several files -> 202 + job ids at once
    GET    /v1/scans               the caller's jobs, newest first (?state=, ?limit=, ?before=)
    GET    /v1/scans/{id}          state, progress and, when done, the full prediction
    GET    /v1/scans/{id}/report   the HTML report of a finished scan
    DELETE /v1/scans/{id}          forget a job (its upload and result)
    GET    /v1/models              models this server knows and the one it runs
    GET    /healthz                liveness and readiness (no key needed)
    GET    /metrics                Prometheus text (no key needed)
    GET    /                       the web page

Every refused request gets ``{"error": {"status", "code", "message"}}`` with a 4xx status (see
:mod:`dfdetect.serve.middleware` for the Host / Origin checks and the security headers).
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from dfdetect import __version__
from dfdetect.serve.errors import ApiError
from dfdetect.serve.middleware import CORS_METHODS, Guard, Observe
from dfdetect.serve.routes import install_routes
from dfdetect.serve.service import ServeSettings, Service

__all__ = ["ServeSettings", "create_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, code, message).body(), status_code=status, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "too_large"}


def _install_handlers(app: FastAPI) -> None:
    """Refusals in the JSON error shape, each counted; an unexpected exception is answered (500, JSON,
    counted, with the security headers) by :class:`~dfdetect.serve.middleware.Observe`, in one place."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        request.app.state.service.metrics.reject(exc.code)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = str(exc.detail) if exc.status_code != 404 else f"no such route: {request.url.path}"
        request.app.state.service.metrics.reject(code)
        return _error(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        request.app.state.service.metrics.reject("invalid_request")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")


def create_app(settings: ServeSettings, load: Any = None) -> FastAPI:
    """Build the app; the model is loaded in every worker when the app starts.

    Args:
        settings: the service settings.
        load: ``None`` (default): each worker is a child process that loads ``settings.model`` (see
            :mod:`dfdetect.serve.scanners`). Else a callable returning a loaded detector, called once
            per worker, scanning in this process (tests; one worker).
    """
    service = Service(settings, _scanner_factory(settings, load))
    app = FastAPI(
        title="dfdetect",
        version=__version__,
        description="Deepfake detection service: upload videos, follow the jobs, read explained verdicts.",
        lifespan=_lifespan(service),
    )
    app.state.service = service
    _install_handlers(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=list(CORS_METHODS),
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    guard = {"allowed_hosts": settings.allowed_hosts, "cors_origins": settings.cors_origins}
    app.add_middleware(Guard, metrics=service.metrics, **guard)
    app.add_middleware(Observe, metrics=service.metrics)  # outermost: sees every response
    install_routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")  # headers (CSP) as for /static/index.html: Observe

    return app


def _scanner_factory(settings: ServeSettings, load: Any) -> Any:
    """What each worker scans with: a child process loading ``settings.model``, or ``load()`` in-process."""
    from dfdetect.serve.scanners import InProcessScanner, ModelSpec, ProcessScanner

    if load is not None:
        return lambda: InProcessScanner(load())
    threads = max(1, (os.cpu_count() or 1) // settings.workers)
    spec = ModelSpec(settings.model, settings.device, threads, settings.options.to_dict())
    return lambda: ProcessScanner(spec, scan_timeout=settings.scan_timeout_s or None)


def _lifespan(service: Service) -> Any:
    """Start the service (recover jobs, start workers) with the app; stop it when the app stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            await run_in_threadpool(service.start)
        except Exception as e:
            log.error("dfdetect serve cannot start: %s", e)
            raise
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    return lifespan
