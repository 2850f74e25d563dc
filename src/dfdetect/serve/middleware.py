"""ASGI middleware of the service: the browser guard (Host, Origin) and the one place responses are finished.

:class:`Guard` refuses, before any route runs:

* a ``Host`` that is not one of the server's names (DNS rebinding: a page on ``attacker.example`` whose
  name now points at 127.0.0.1 would otherwise read and delete the jobs of a key-less server);
* a state-changing request (``POST``, ``DELETE``...) from a page of another origin (``Origin`` or
  ``Sec-Fetch-Site``), unless ``--cors-origin`` allows that origin — with or without API keys;
* a CORS preflight the server would not allow (with the JSON error shape, not plain text).

:class:`Observe` (outermost) counts every response by method and status, adds the security headers
(the page's Content-Security-Policy on ``/`` and ``/static/``), and turns an unexpected exception into
the JSON 500 — so a 500 too is counted and carries the headers.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from dfdetect.serve.errors import ApiError
from dfdetect.serve.metrics import Metrics

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CORS_METHODS = ("GET", "POST", "DELETE")
CORS_HEADERS = ("authorization", "x-api-key", "content-type", "accept", "accept-language", "content-language")
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def split_host(value: str, default_port: int | None = None) -> tuple[str, int | None]:
    """``"[::1]:8000"`` -> ``("::1", 8000)``, lower case, no trailing dot; a bad port -> ``("", None)``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    if port and not port.isdigit():
        return "", None
    return host.rstrip("."), int(port) if port else default_port


async def send_error(send: Any, err: ApiError, scope: dict, receive: Any) -> None:
    """Answer with ``err`` in the JSON error shape."""
    response = JSONResponse(err.body(), status_code=err.status, headers=err.headers)
    await response(scope, receive, send)


class Guard:
    """ASGI middleware refusing foreign hosts, cross-origin writes and refused preflights (403, JSON).

    Args:
        app: the wrapped app.
        metrics: counts each refusal under its code.
        allowed_hosts: the names the server answers to (``"*"``: any).
        cors_origins: origins (``scheme://host[:port]``) whose pages may call the API.
    """

    def __init__(
        self, app: Any, metrics: Metrics, allowed_hosts: Collection[str], cors_origins: Collection[str]
    ) -> None:
        self.app, self.metrics = app, metrics
        self.any_host = "*" in allowed_hosts
        self.hosts = {split_host(h)[0] for h in allowed_hosts if h != "*"}
        self.origins = {o.rstrip("/").lower() for o in cors_origins}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            err = self.check(scope)
            if err is not None:
                self.metrics.reject(err.code)
                await send_error(send, err, scope, receive)
                return
        await self.app(scope, receive, send)

    def check(self, scope: dict) -> ApiError | None:
        """The refusal of this request, or None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.any_host and split_host(host)[0] not in self.hosts:
            names = ", ".join(sorted(self.hosts))
            return ApiError(
                400, "bad_host", f"this server answers to {names}, not {host[:80]!r} (see --allowed-host)"
            )
        origin = headers.get("origin")
        method = scope["method"]
        if method == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            return self._preflight(origin, headers)
        if method in SAFE_METHODS or self._allowed(origin):
            return None
        if origin is not None and not _same_origin(origin, host):
            return _cross_origin(origin)
        if origin is None and headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return _cross_origin("another site")
        return None

    def _allowed(self, origin: str | None) -> bool:
        return origin is not None and origin.rstrip("/").lower() in self.origins

    def _preflight(self, origin: str, headers: dict[str, str]) -> ApiError | None:
        """A CORS preflight: answered by the CORS middleware when allowed, refused here otherwise."""
        if not self._allowed(origin):
            return _cross_origin(origin)
        method = headers["access-control-request-method"].strip().upper()
        asked = [h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",")]
        refused = [h for h in asked if h and h not in CORS_HEADERS]
        if method not in CORS_METHODS or refused:
            what = f"method {method[:20]!r}" if method not in CORS_METHODS else f"headers {refused[:5]}"
            return ApiError(403, "cors_refused", f"cross-origin {what} not allowed; allowed: {CORS_METHODS}")
        return None


def _same_origin(origin: str, host: str) -> bool:
    """Whether a page of ``origin`` is this server reached as ``host`` (the Host header)."""
    parts = urlsplit(origin.strip())
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or not parts.hostname:
        return False  # "null" (sandboxed frames, file://) and other schemes are never this server
    try:
        theirs = (parts.hostname.rstrip("."), parts.port or default)
    except ValueError:
        return False
    return theirs == split_host(host, default)


def _cross_origin(origin: str) -> ApiError:
    return ApiError(
        403,
        "cross_origin",
        f"requests from pages of {origin[:80]!r} may not change anything here; "
        "allow that origin with --cors-origin",
    )


class Observe:
    """ASGI middleware (outermost): metrics and security headers for every response, the JSON 500.

    Args:
        app: the wrapped app.
        metrics: counts responses by method and status code.
        page_paths: path prefixes served with the page's Content-Security-Policy.
    """

    def __init__(self, app: Any, metrics: Metrics, page_paths: tuple[str, ...] = ("/static/",)) -> None:
        self.app, self.metrics, self.page_paths = app, metrics, page_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = scope["path"] == "/" or scope["path"].startswith(self.page_paths)
        started = False

        async def wrapped(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.metrics.request(scope["method"], message["status"])
                message = {**message, "headers": _secure(list(message.get("headers", [])), page)}
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        except Exception as exc:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if started:
                raise
            err = ApiError(500, "internal", "unexpected server error; it has been logged")
            self.metrics.reject(err.code)
            await send_error(wrapped, err, scope, receive)


def _secure(headers: list[tuple[bytes, bytes]], page: bool) -> list[tuple[bytes, bytes]]:
    """``headers`` plus the security headers a response has not set itself."""
    names = {k.lower() for k, _ in headers}
    extra = list(_COMMON_HEADERS)
    if page:
        extra.append((b"content-security-policy", PAGE_CSP.encode()))
    return headers + [(k, v) for k, v in extra if k not in names]
