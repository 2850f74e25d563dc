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

Every refused request gets ``{"error": {"status", "code", "message"}}`` with a 4xx status.
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
from dfdetect.serve.metrics import Metrics
from dfdetect.serve.routes import install_routes
from dfdetect.serve.service import ServeSettings, Service

__all__ = ["ServeSettings", "create_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, code, message).body(), status_code=status, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "too_large"}


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        request.app.state.service.metrics.reject(exc.code)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = str(exc.detail) if exc.status_code != 404 else f"no such route: {request.url.path}"
        return _error(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal", "unexpected server error; it has been logged")


class _Observe:
    """ASGI middleware: counts responses by status and adds security headers."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.metrics.request(scope["method"], message["status"])
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")):
                    if k not in names:
                        headers.append((k, v))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)


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
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(_Observe, metrics=service.metrics)
    install_routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": _PAGE_CSP})

    return app


def _scanner_factory(settings: ServeSettings, load: Any) -> Any:
    """What each worker scans with: a child process loading ``settings.model``, or ``load()`` in-process."""
    from dfdetect.serve.scanners import InProcessScanner, ModelSpec, ProcessScanner

    if load is not None:
        return lambda: InProcessScanner(load())
    threads = max(1, (os.cpu_count() or 1) // settings.workers)
    spec = ModelSpec(settings.model, settings.device, threads)
    return lambda: ProcessScanner(spec)


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
