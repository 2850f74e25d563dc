"""A real server process killed with -9 mid-scan comes back with every accepted job, none twice."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import CLIP, NO_AUDIO_CLIP, clip_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, data: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dfdetect", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--data-dir", str(data), "--device", "cpu", "--workers", "1", "--no-explain"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def wait_gone(pids: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
        assert time.monotonic() < deadline, f"processes {pids} still alive"
        time.sleep(0.2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def wait_state(url: str, job_id: str, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/v1/scans/{job_id}", timeout=5).json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def test_kill_9_mid_scan_loses_and_duplicates_nothing(tiny_ckpt: Path, tmp_path: Path) -> None:
    data, log, port = tmp_path / "data", tmp_path / "server.log", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(tiny_ckpt, data, port, log)
    try:
        wait_healthy(url, proc, log)
        files = [("files", (f"{i}.mp4", clip_bytes(c))) for i, c in enumerate([CLIP, NO_AUDIO_CLIP, CLIP])]
        ids = [j["id"] for j in httpx.post(f"{url}/v1/scans", files=files, timeout=30).json()["jobs"]]
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v1/scans/{ids[0]}", timeout=5).json()["state"] != "running":
            assert time.monotonic() < deadline, "the first job never started"
            time.sleep(0.02)
        scanners = children(proc.pid)
        assert scanners, "the worker's model lives in a child process"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_gone(scanners, 30)  # its scanner stops mid-scan with it: no orphan competes with a restart
    finally:
        if proc.poll() is None:
            stop(proc)

    with sqlite3.connect(data / "jobs.sqlite") as db:
        states = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    assert states[ids[0]] == "running" and len(states) == 3, "the interrupted job is on disk as running"

    proc = start_server(tiny_ckpt, data, port, log)
    try:
        wait_healthy(url, proc, log)
        deadline = time.monotonic() + 240  # a bound for a loaded 2-core machine; ~10 s when idle
        while True:
            jobs = {j["id"]: j for j in httpx.get(f"{url}/v1/scans", timeout=5).json()["jobs"]}
            if all(j["state"] in ("done", "failed") for j in jobs.values()):
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.2)
        assert sorted(jobs) == sorted(ids), "every accepted job is still there, and no other"
        assert [jobs[i]["state"] for i in ids] == ["done"] * 3
        assert [jobs[i]["attempts"] for i in ids] == [2, 1, 1], "only the interrupted job ran again"
        for i in ids:
            pred = httpx.get(f"{url}/v1/scans/{i}", timeout=5).json()["prediction"]
            assert pred["status"] in ("ok", "no_audio") and pred["p_fake"] is not None
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        scans = sum(int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if "scans_total{" in line)
        assert scans == 3, "the restarted server scanned each job exactly once"
        assert list((data / "uploads").iterdir()) == [], "uploads are removed once scanned"

        # A scanner process that dies mid-scan fails that job only; the next job gets a new scanner.
        (child,) = children(proc.pid)
        doomed = httpx.post(f"{url}/v1/scans", files=files[:1], timeout=30).json()["jobs"][0]["id"]
        while httpx.get(f"{url}/v1/scans/{doomed}", timeout=5).json()["state"] != "running":
            time.sleep(0.02)
        os.kill(child, signal.SIGKILL)
        job = wait_state(url, doomed)
        assert job["state"] == "failed" and "scanner process died (signal 9)" in job["error"], job
        after = wait_state(
            url, httpx.post(f"{url}/v1/scans", files=files[1:2], timeout=30).json()["jobs"][0]["id"]
        )
        assert after["state"] == "done" and after["prediction"]["status"] == "no_audio"
        assert httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (graceful: the workers' processes stop too), SIGKILL if that takes over a minute."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
