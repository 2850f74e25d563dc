"""The one error type of the service: every bad request becomes ``{"error": {status, code, message}}``."""

from __future__ import annotations


class ApiError(Exception):
    """A request the service refuses, with the HTTP status, a stable code and a message for people.

    Args:
        status: HTTP status code (4xx; 503 while starting).
        code: short machine-readable reason, e.g. ``too_large``, ``unsupported_media``.
        message: what was wrong and what to do.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}
