"""Slow clients and hung scans (issue 24): upload timeouts drop the upload and its ``.part`` file; the
per-scan watchdog kills a scanner process that does not answer, fails its job with the reason, and the
next job gets a new process; deleting a running job stops its scan."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dfdetect.serve.app import ServeSettings, create_app
from dfdetect.serve.uploads import UploadLimits
from tests.serve.conftest import BASE_URL, CLIP, NO_AUDIO_CLIP, GatedDetector, clip_bytes, upload, wait_done
from tests.serve.test_restart import free_port, wait_gone


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The app under uvicorn (real sockets: a client can stall) with short upload timeouts."""
    import uvicorn

    limits = UploadLimits(idle_timeout_s=0.5, upload_timeout_s=2.0)
    settings = ServeSettings(data_dir=tmp_path / "data", device="cpu", limits=limits)
    app = create_app(settings, GatedDetector)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield port, tmp_path / "data" / "uploads"
    srv.should_exit = True
    thread.join(15)


def _start_upload(port: int) -> socket.socket:
    """An upload that announces 1 MB and sends its headers and the first 8 KiB of a real clip."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1000000\r\n"
        "Content-Type: multipart/form-data; boundary=B\r\n\r\n"
        '--B\r\nContent-Disposition: form-data; name="file"; filename="slow.mp4"\r\n\r\n'
    )
    sock.sendall(head.encode() + clip_bytes(CLIP)[:8192])
    return sock


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"}}" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def _parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_stalled_or_trickling_upload_is_dropped(slow_server) -> None:
    port, uploads = slow_server
    sock = _start_upload(port)
    deadline = time.monotonic() + 5
    while not _parts(uploads):  # streamed to disk as it arrives, not held in memory
        assert time.monotonic() < deadline, "no .part file while the upload is under way"
        time.sleep(0.02)
    assert _parts(uploads)[0].endswith(".part")
    status, body = _answer(sock)  # then the client stalls
    assert status == 408 and b'"code":"timeout"' in body and b"no data for 0.5 s" in body
    assert _parts(uploads) == [], "the .part file is removed"
    sock.close()

    sock = _start_upload(port)
    status, body = 0, b""
    for _ in range(100):  # a byte every 0.2 s: never idle for 0.5 s, but over 2 s in all
        try:
            sock.sendall(b"\x00")
        except OSError:
            break
        if select.select([sock], [], [], 0.2)[0]:
            break
    status, body = _answer(sock)
    assert status == 408 and b"took longer than 2 s" in body, body
    assert _parts(uploads) == []
    sock.close()


def _child(client: TestClient) -> int:
    scanner = client.app.state.service.pool.scanners[0]
    deadline = time.monotonic() + 120
    while scanner._proc is None:  # a scanner killed earlier starts again with the next job
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return scanner._proc.pid


def test_the_watchdog_and_delete_stop_a_scan_in_its_process(tiny_ckpt: Path, tmp_path: Path) -> None:
    settings = ServeSettings(
        data_dir=tmp_path / "data", model=str(tiny_ckpt), device="cpu", explain=False, scan_timeout_s=1.0
    )
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        scanner = client.app.state.service.pool.scanners[0]
        hung = _child(client)
        os.kill(hung, signal.SIGSTOP)  # a decoder that hangs: the process never answers
        job = upload(client, ("hang.mp4", clip_bytes(CLIP))).json()["jobs"][0]
        failed = wait_done(client, job["id"], timeout=60)
        assert failed["state"] == "failed" and "longer than the limit of 1 s" in failed["error"], failed
        assert "was not scanned" in failed["error"] and "/" not in failed["error"]
        wait_gone([hung], 10)

        scanner.scan_timeout = None  # a normal scan on a loaded machine may take over a second
        done = wait_done(
            client, upload(client, ("ok.mp4", clip_bytes(NO_AUDIO_CLIP))).json()["jobs"][0]["id"]
        )
        assert done["state"] == "done", "the next job got a new scanner process"
        stuck = _child(client)
        assert stuck != hung
        os.kill(stuck, signal.SIGSTOP)
        job = upload(client, ("long.mp4", clip_bytes(CLIP))).json()["jobs"][0]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/scans/{job['id']}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.delete(f"/v1/scans/{job['id']}").json()["state"] == "running"
        wait_gone([stuck], 10)  # the scan was stopped, not left to run for nobody
        assert client.get(f"/v1/scans/{job['id']}").status_code == 404
        pool = client.app.state.service.pool
        while pool.running:  # the worker is done with the deleted job
            assert time.monotonic() < deadline + 30
            time.sleep(0.05)
        metrics = client.get("/metrics").text
        assert 'dfdetect_scans_total{status="failed"} 1' in metrics, "the deleted job is not counted"
