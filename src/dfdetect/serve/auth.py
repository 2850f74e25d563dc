"""API keys (stored as SHA-256 hashes, never in clear) and per-key token-bucket rate limits.

Key file format, one key per line (``#`` comments and blank lines ignored)::

    <name> sha256:<64 hex digits> [<uploads per minute>]

``dfdetect serve --api-key-file keys.txt --new-key NAME`` appends a line and prints the key once.
Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them (nothing to brute-force);
a request sends the key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_LINE = re.compile(r"^(?P<name>\S+)\s+sha256:(?P<hash>[0-9a-f]{64})(?:\s+(?P<rate>\d+(?:\.\d+)?))?$")
KEY_PREFIX = "dfd_"


class KeyFileError(ValueError):
    """The key file cannot be used (missing, a key in clear text, a bad line)."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: str  # hex SHA-256 of the key
    rate_per_minute: float | None = None  # None: the server's default


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_keys(path: str | os.PathLike) -> dict[str, ApiKey]:
    """Read a key file; returns digest -> :class:`ApiKey`.

    Raises:
        KeyFileError: unreadable file, a line that is not ``name sha256:<hex> [rate]``, or a duplicate.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise KeyFileError(f"cannot read the API key file {path}: {e.strerror or e}") from None
    keys: dict[str, ApiKey] = {}
    names: dict[str, int] = {}  # name -> line
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise KeyFileError(
                f"{path}:{n}: expected '<name> sha256:<hex digest> [uploads per minute]'; keys are stored "
                f"hashed: make one with  dfdetect serve --api-key-file {path} --new-key NAME"
            )
        if m["hash"] in keys:
            raise KeyFileError(f"{path}:{n}: the same key appears twice")
        if m["name"] in names:
            raise KeyFileError(
                f"{path}:{n}: the name {m['name']!r} is already used on line {names[m['name']]} "
                "(keys of one name would share their jobs); give each key its own name"
            )
        names[m["name"]] = n
        rate = float(m["rate"]) if m["rate"] else None
        keys[m["hash"]] = ApiKey(m["name"], m["hash"], rate)
    if not keys:
        raise KeyFileError(f"{path} holds no key; add one with --new-key NAME")
    return keys


def new_key(path: str | os.PathLike, name: str, rate_per_minute: float | None = None) -> str:
    """Make a random key, append its hash to ``path`` (created 0600), and return the key (shown once)."""
    if not _NAME.match(name):
        raise KeyFileError(f"key name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    existing = {k.name for k in load_keys(path).values()} if text.strip() else set()
    if name in existing:
        raise KeyFileError(f"{path} already has a key named {name!r}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    line = f"{name} sha256:{hash_key(key)}" + (f" {rate_per_minute:g}" if rate_per_minute else "") + "\n"
    if text and not text.endswith("\n"):
        line = "\n" + line  # the file's last line had no newline: never merge two lines
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line)
    return key


def key_from_headers(headers: dict[str, str] | object) -> str | None:
    """The key sent with a request (``Authorization: Bearer``, else ``X-API-Key``), or None."""
    auth = headers.get("authorization", "")  # type: ignore[attr-defined]
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None  # type: ignore[attr-defined]


class RateLimiter:
    """Token buckets per key: ``rate_per_minute`` tokens a minute, bursts up to ``burst``.

    Args:
        rate_per_minute: default refill rate (a key may carry its own).
        burst: bucket size (default: one minute's worth, at least 1).
    """

    def __init__(self, rate_per_minute: float, burst: float | None = None) -> None:
        self.rate = float(rate_per_minute)
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0, rate_per_minute: float | None = None) -> float:
        """Spend ``cost`` tokens; returns 0 when allowed, else the seconds to wait (nothing spent)."""
        return self._bucket(key, cost, rate_per_minute, spend=True)

    def wait(self, key: str, cost: float = 1.0, rate_per_minute: float | None = None) -> float:
        """Like :meth:`take` without spending: 0 when ``cost`` tokens are there, else the seconds to wait."""
        return self._bucket(key, cost, rate_per_minute, spend=False)

    def _bucket(self, key: str, cost: float, rate_per_minute: float | None, spend: bool) -> float:
        rate = (rate_per_minute or self.rate) / 60.0  # tokens per second
        if rate <= 0:
            return 0.0
        cap = max(1.0, self.burst if self.burst is not None else rate * 60.0, cost)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (cap, now))
            tokens = min(cap, tokens + (now - last) * rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost if spend else tokens, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / rate


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
