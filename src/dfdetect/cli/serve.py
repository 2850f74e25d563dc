"""`dfdetect serve`: run the REST API and the web page (FastAPI + uvicorn, the ``serve`` extra)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("dfdetect.serve")

EPILOG = """\
security:
  Without --api-key-file the server takes no keys and binds to 127.0.0.1 only (a warning says so),
  whatever --host asks. Make a key (printed once, stored hashed) with:
    dfdetect serve --api-key-file keys.txt --new-key alice
  then run with --api-key-file keys.txt and send 'Authorization: Bearer <key>'.
  Requests must name the server in their Host header (127.0.0.1, localhost, ::1, the --host address,
  and each --allowed-host: the public name behind a TLS proxy); pages of other origins may not upload
  or delete unless --cors-origin allows them. See docs/serving.md, "Security".

examples:
  dfdetect serve                                  # http://127.0.0.1:8000  (docs at /docs)
  dfdetect serve --host 0.0.0.0 --api-key-file keys.txt --workers 2 --data-dir /var/lib/dfdetect
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the REST API and the web page (upload videos, follow jobs, read verdicts)",
        description="Serve the scan core over HTTP: REST API under /v1, web page at /, docs at /docs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.add_argument("--model", "-m", default=None, help="model name or checkpoint path (default: packaged)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    p.add_argument("--workers", type=int, default=1, help="scanning workers, each with the model loaded")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("DFDETECT_DATA", str(Path.home() / ".cache" / "dfdetect" / "serve")),
        help="job database and uploads (default: $DFDETECT_DATA or ~/.cache/dfdetect/serve)",
    )
    p.add_argument("--api-key-file", metavar="FILE", help="hashed API keys, one per line (see below)")
    p.add_argument("--new-key", metavar="NAME", help="add a key named NAME to --api-key-file, print it, exit")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest file accepted (default: 200)")
    p.add_argument("--max-files", type=int, default=20, help="files per upload request (default: 20)")
    p.add_argument("--max-request-mb", type=float, default=512.0, help="whole upload request (default: 512)")
    p.add_argument(
        "--upload-timeout", type=float, default=600.0, help="seconds to receive an upload (default: 600)"
    )
    p.add_argument(
        "--idle-timeout", type=float, default=30.0, help="seconds an upload may stall (default: 30)"
    )
    p.add_argument(
        "--scan-timeout",
        type=float,
        default=600.0,
        help="seconds a scan may take before its scanner process is killed and restarted (0: no limit)",
    )
    p.add_argument("--max-queue", type=int, default=100, help="queued jobs before 429 (default: 100)")
    p.add_argument("--retention-hours", type=float, default=24.0, help="keep finished jobs (default: 24)")
    p.add_argument("--rate-limit", type=float, default=60.0, help="uploads per minute per key (0: none)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow (repeatable)")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name clients reach the server by (Host header), e.g. behind a proxy (repeatable; '*': any)",
    )
    p.add_argument(
        "--explain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Grad-CAM heatmaps and curves by default (uploads may say explain=false)",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(run=run)


_WILDCARD = ("0.0.0.0", "::", "")


def allowed_hosts(bind: str, extra: list[str], keys: bool) -> tuple[str, ...]:
    """The Host names the server answers to: the loopback names, the bound address, ``extra``; binding to
    every address with keys and no ``extra`` accepts any name (keys protect it), with a warning."""
    from dfdetect.serve.middleware import LOCAL_HOSTS

    if bind in _WILDCARD and not extra and keys:
        log.warning(
            "listening on all addresses: any Host header is accepted; name the server with --allowed-host "
            "(e.g. its public name behind the TLS proxy) to refuse the others"
        )
        return ("*",)
    names = [*LOCAL_HOSTS, *([] if bind in _WILDCARD else [bind]), *extra]
    return tuple(dict.fromkeys(names))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _new_key(args: argparse.Namespace) -> int:
    from dfdetect.serve.auth import KeyFileError, new_key

    if not args.api_key_file:
        print("dfdetect serve: error: --new-key needs --api-key-file FILE", file=sys.stderr)
        return 2
    try:
        key = new_key(args.api_key_file, args.new_key)
    except KeyFileError as e:
        print(f"dfdetect serve: error: {e}", file=sys.stderr)
        return 2
    print(key)
    print(f"key {args.new_key!r} added to {args.api_key_file} (stored hashed; copy it now)", file=sys.stderr)
    return 0


def _settings(args: argparse.Namespace):
    from dfdetect.serve.app import ServeSettings
    from dfdetect.serve.auth import load_keys
    from dfdetect.serve.uploads import UploadLimits

    keys = load_keys(args.api_key_file) if args.api_key_file else None
    for name, value in (("--workers", args.workers), ("--max-files", args.max_files)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1")
    positive = (
        "max_upload_mb",
        "max_request_mb",
        "max_queue",
        "retention_hours",
        "upload_timeout",
        "idle_timeout",
    )
    for name in positive:
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.scan_timeout < 0:
        raise ValueError("--scan-timeout must be positive (0: no limit)")
    return ServeSettings(
        data_dir=Path(args.data_dir).expanduser(),
        model=args.model,
        device=args.device,
        workers=args.workers,
        limits=UploadLimits(
            max_file_bytes=int(args.max_upload_mb * 1024 * 1024),
            max_files=args.max_files,
            max_request_bytes=int(args.max_request_mb * 1024 * 1024),
            idle_timeout_s=args.idle_timeout,
            upload_timeout_s=args.upload_timeout,
        ),
        max_queue=args.max_queue,
        retention_s=args.retention_hours * 3600.0,
        keys=keys,
        uploads_per_minute=args.rate_limit,
        reads_per_minute=args.rate_limit * 20,
        cors_origins=tuple(args.cors_origin),
        explain=args.explain,
        scan_timeout_s=args.scan_timeout,
    )


def run(args: argparse.Namespace) -> int:
    if args.new_key:
        return _new_key(args)
    try:
        import uvicorn

        from dfdetect.serve.app import create_app
        from dfdetect.serve.auth import KeyFileError
    except ImportError as e:
        print(f"dfdetect serve: error: {e.name} is missing; pip install 'dfdetect[serve]'", file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
    except (KeyFileError, ValueError) as e:
        print(f"dfdetect serve: error: {e}", file=sys.stderr)
        return 2
    if args.model and not Path(args.model).expanduser().is_file():
        import dfdetect

        known = dfdetect.available_models()
        if args.model not in known:
            names = ", ".join(known) or "none"
            print(f"dfdetect serve: error: unknown model {args.model!r}; available: {names}", file=sys.stderr)
            return 2
    host = args.host
    if settings.keys is None and not _is_loopback(host):
        log.warning("no --api-key-file: binding to 127.0.0.1 instead of %s (local use only)", host)
        host = "127.0.0.1"
    elif settings.keys is None:
        log.warning("no --api-key-file: anyone on this machine can use the service")
    settings.allowed_hosts = allowed_hosts(host, args.allowed_host, settings.keys is not None)
    try:  # the workers load the model as the app starts; a failure stops it with the reason
        app = create_app(settings)
    except Exception as e:  # noqa: BLE001 - any setup failure is a usage error at this edge
        print(f"dfdetect serve: error: {e}", file=sys.stderr)
        return 2
    log.info("serving on http://%s:%d (docs at /docs), data in %s", host, args.port, settings.data_dir)
    uvicorn.run(app, host=host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
