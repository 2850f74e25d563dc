"""Scanners: what a worker of the pool calls to turn an uploaded file into a prediction dict.

:class:`ProcessScanner` (what ``dfdetect serve`` uses) keeps the model loaded in a child process of its
own: scans never share torch state between threads (two concurrent in-process scans can crash torch),
and a file that crashes the decoder or the model kills only that child, which is started again for the
next job, while the server and its other workers go on. :class:`InProcessScanner` wraps an already
loaded detector (tests, notebooks, one worker).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dfdetect.constants import VERDICT_BAND

log = logging.getLogger(__name__)


class ScannerCrashedError(RuntimeError):
    """The scanner process died during a scan."""


class ScanTimeoutError(ScannerCrashedError):
    """A scan ran past the watchdog's limit; its scanner process was killed (a new one starts next)."""


class Scanner(Protocol):
    info: dict[str, Any]  # name, device, thresholds of the loaded model

    def scan(self, path: str, explain: bool, uncertainty: int = 0) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _info(detector: Any) -> dict[str, Any]:
    return {
        "name": str(getattr(detector, "name", "model")),
        "device": str(getattr(detector, "device", "cpu")),
        "thresholds": [float(x) for x in getattr(detector, "thresholds", VERDICT_BAND)],
    }


class InProcessScanner:
    """Scans with a detector loaded in this process (one scan at a time per detector)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.info = _info(detector)

    def scan(self, path: str, explain: bool, uncertainty: int = 0) -> dict[str, Any]:
        return self.detector.scan(path, **job_options(explain, uncertainty)).to_dict()

    def close(self) -> None:
        pass

    def stop(self) -> bool:
        return False  # a scan in a thread of this process cannot be stopped


@dataclass(frozen=True)
class ModelSpec:
    """What a child process loads: ``dfdetect.load_detector(model, device=device, options=...)``."""

    model: str | None = None
    device: str = "auto"
    threads: int = 1  # torch intra-op threads in the child
    options: dict[str, Any] = field(default_factory=dict)  # ScanOptions.to_dict() (empty: the defaults)


def job_options(explain: bool, uncertainty: int) -> dict[str, Any]:
    """One job's :class:`~dfdetect.infer.options.ScanOptions` overrides, as ``Detector.scan`` keywords
    (it checks them with ``options.replace``): the job's ``explain`` and ``uncertainty`` passes (left
    out when 0: the detector's own), and thumbnails always (the job's report shows them)."""
    job: dict[str, Any] = {"explain": bool(explain), "thumbnails": True}
    return {**job, "uncertainty": int(uncertainty)} if uncertainty else job


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """Stop this process as soon as ``parent`` is gone (even killed with -9, mid-scan): nobody would
    read the scan it is working on, and a restarted server needs the CPU."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="dfdetect-parent-watch", daemon=True).start()


def _child(conn: Any, spec: ModelSpec) -> None:
    """Child process: load the model once, then answer ``(path, job options)`` requests
    (:func:`job_options`) until EOF / None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which stops the children
    _exit_with_parent(os.getppid())
    try:
        import torch

        import dfdetect
        from dfdetect.infer.options import ScanOptions

        torch.set_num_threads(max(1, spec.threads))
        options = ScanOptions.from_dict(spec.options)
        detector = dfdetect.load_detector(spec.model, device=spec.device, options=options)
        getattr(detector, "face_detector", None)  # build the lazily made face detector before the first job
    except Exception as e:  # noqa: BLE001 - reported to the parent, which refuses to start
        conn.send(("error", f"cannot load the model: {e}"))
        return
    conn.send(("ready", _info(detector)))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if msg is None:
            return
        path, job = msg
        try:
            pred = detector.scan(path, **job)
            reply = ("ok", pred.to_dict())
        except Exception as e:  # noqa: BLE001 - one file never stops the worker
            reply = ("error", f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class ProcessScanner:
    """A child process with the model loaded (``python -m dfdetect.serve.scanners``), restarted after a crash.

    The child is a fresh interpreter (not a fork of the server) talking over a socket pair.

    Args:
        spec: what the child loads.
        start_timeout: seconds the child may take to load the model.
        scan_timeout: the watchdog: a scan taking longer kills the child (:class:`ScanTimeoutError`);
            None: no limit.

    Raises:
        RuntimeError: at construction, when the child cannot load the model (message from the child).
    """

    def __init__(
        self, spec: ModelSpec, start_timeout: float = 600.0, scan_timeout: float | None = None
    ) -> None:
        self.spec, self.start_timeout, self.scan_timeout = spec, start_timeout, scan_timeout
        self._proc: subprocess.Popen | None = None
        self._conn: Any = None
        self.info: dict[str, Any] = {}
        self._start()

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        cmd = [
            sys.executable,
            "-m",
            "dfdetect.serve.scanners",
            str(theirs.fileno()),
            json.dumps(asdict(self.spec)),
        ]
        try:
            self._proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(mine.detach())
        kind, payload = self._wait(self.start_timeout)
        if kind != "ready":
            self.close()
            raise RuntimeError(payload)
        self.info = payload

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _wait(self, timeout: float | None, what: str = "start") -> tuple[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._conn.poll(0.1 if timeout is not None and timeout < 5 else 0.25):
            if not self._alive():
                raise ScannerCrashedError(self._death())
            if deadline is not None and time.monotonic() > deadline:
                self.stop()
                self.close()
                if what == "scan":
                    raise ScanTimeoutError(
                        f"the scan took longer than the limit of {timeout:g} s (--scan-timeout): the "
                        "scanner process was stopped (a new one is started for the next job); "
                        "the file was not scanned"
                    )
                raise ScannerCrashedError(f"the scanner process did not answer in {timeout:.0f} s")
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            raise ScannerCrashedError(self._death()) from None

    def _death(self) -> str:
        """Why the child is gone (it closed its end: it died or is dying); cleans up."""
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.close()
        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"the scanner process died ({why})"

    def scan(self, path: str, explain: bool, uncertainty: int = 0) -> dict[str, Any]:
        if not self._alive():
            log.warning("restarting a scanner process")
            self._start()
        self._conn.send((os.fspath(path), job_options(explain, uncertainty)))
        kind, payload = self._wait(self.scan_timeout, "scan")
        if kind != "ok":
            raise RuntimeError(payload)
        return payload

    def stop(self) -> bool:
        """Kill the child now (from any thread), e.g. mid-scan; the next :meth:`scan` starts a new one.
        True if it was alive."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        proc.kill()
        return True

    def close(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            conn.close()
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


if __name__ == "__main__":  # the child: python -m dfdetect.serve.scanners FD SPEC_JSON
    from multiprocessing.connection import Connection

    _child(Connection(int(sys.argv[1])), ModelSpec(**json.loads(sys.argv[2])))
