"""Load test of `dfdetect serve`: concurrent clients upload real clips and wait for their verdicts.

Bounded in count and time. Starts a server on 127.0.0.1 (a subprocess, its own data dir) unless
``--url`` points at one, measures the in-process scan time of each clip with the same model, then:

* errors (HTTP errors, failed jobs) and lost jobs (accepted, never finished): the goal is 0 and 0;
* latency per upload (upload -> result seen by the client), p50 / p95, and its ratio to
  (queue wait + in-process scan of the same clip): the goal is p95 <= 1.5;
* throughput (files per second) against an in-process batch scan of the same files (`dfdetect scan`);
* server RSS: peak, and after each round (no growth across rounds = no leak).

Usage (from the repo root; needs the serve and dev extras)::

    python bench/serve.py --clients 16 --rounds 2 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MEDIA

CLIPS = [
    "real/pcavs_Pose_Source_00067.mp4",
    "real/pcavs_Pose_Source_620900105.mp4",
    "real/pcavs_Audio_Source_00086.mp4",
    "real/liveportrait_d0.mp4",
]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` summed over the server and its scanner processes (VmHWM: sum of each one's peak)."""
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    return sum(rss_mib(p, field) for p in [pid, *kids])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def baseline(model: str | None, files: list[Path], workload: list[Path]) -> tuple[dict[str, float], float]:
    """In-process scan seconds per clip (after a warm-up), and seconds for a batch of ``workload``."""
    import dfdetect

    detector = dfdetect.load_detector(model, device="cpu")
    detector.scan(files[0])  # warm-up: face detector, VAD, first-call allocations
    per_clip = {}
    for f in files:
        t = time.perf_counter()
        detector.scan(f)
        per_clip[f.name] = time.perf_counter() - t
    t = time.perf_counter()
    for f in workload:  # what `dfdetect scan` does per file (scan_many would drop repeated paths)
        detector.scan(f)
    return per_clip, time.perf_counter() - t


async def poll(http, url: str, rec: dict) -> dict:
    """GET a job, retrying twice on a dropped connection: a reused keep-alive connection that the server
    closed as the request left (uvicorn closes idle ones after 5 s) is the client's to retry, as browsers
    do for idempotent requests; the uploads (POST) are never retried. Retries are counted."""
    import httpx

    for attempt in range(3):
        try:
            return (await http.get(url)).json()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            if attempt == 2:
                raise
            rec["poll_retries"] = rec.get("poll_retries", 0) + 1
    raise AssertionError("unreachable")


async def client(http, url: str, path: Path, deadline: float, out: list[dict]) -> None:
    import httpx

    rec = {"clip": path.name, "error": None}
    t0 = time.perf_counter()
    try:
        res = await http.post(f"{url}/v1/scans", files={"file": (path.name, path.read_bytes())})
        if res.status_code != 202:
            raise RuntimeError(f"upload: HTTP {res.status_code} {res.text[:200]}")
        job_id = res.json()["jobs"][0]["id"]
        rec["id"] = job_id
        while True:
            job = await poll(http, f"{url}/v1/scans/{job_id}", rec)
            if job["state"] in ("done", "failed"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("not finished before the deadline")
            await asyncio.sleep(0.25)
        rec["latency"] = time.perf_counter() - t0
        rec["queue_wait"] = job["started"] - job["created"]
        rec["server_scan"] = job.get("scan_seconds")
        if job["state"] != "done" or job.get("status") in (None, "error"):
            raise RuntimeError(f"job {job['state']}: {job.get('error') or job.get('status')}")
    except (httpx.HTTPError, RuntimeError, TimeoutError, KeyError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    out.append(rec)


async def run_round(url: str, workload: list[Path], timeout: float) -> tuple[list[dict], float]:
    import httpx

    out: list[dict] = []
    deadline = time.monotonic() + timeout
    limits = httpx.Limits(max_connections=len(workload) + 4)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        t = time.perf_counter()
        await asyncio.gather(*(client(http, url, p, deadline, out) for p in workload))
        return out, time.perf_counter() - t


def start_server(args: argparse.Namespace, data: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dfdetect", "serve", "--port", str(port), "--data-dir", str(data)]
    cmd += ["--workers", str(args.workers), "--device", "cpu", "--no-explain", "--rate-limit", "0"]
    cmd += ["--max-queue", str(10 * args.clients), "--log-level", "warning"]
    if args.model:
        cmd += ["--model", args.model]
    log = (data / "server.log").open("ab")  # not a pipe: nobody reads it while the server runs
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; see its server.log")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    sys.exit("server not healthy in time")


def requests_served(url: str) -> int:
    """HTTP requests the server has answered (its /metrics counter)."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    lines = [x for x in text.splitlines() if x.startswith("dfdetect_http_requests_total")]
    return sum(int(float(x.rsplit(" ", 1)[1])) for x in lines)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def summarise(records: list[dict], per_clip: dict[str, float], wall: float, batch: float, n: int) -> dict:
    ok = [r for r in records if not r["error"]]
    lat = [r["latency"] for r in ok]
    ratio_scan = [r["latency"] / per_clip[r["clip"]] for r in ok]
    ratio_expected = [r["latency"] / (r["queue_wait"] + per_clip[r["clip"]]) for r in ok]
    server = [r["server_scan"] / per_clip[r["clip"]] for r in ok if r.get("server_scan")]
    return {
        "uploads": len(records),
        "errors": len(records) - len(ok),
        "lost": sum(1 for r in records if r["error"] and "deadline" in r["error"]),
        "latency_p50_s": round(pct(lat, 50), 2) if lat else None,
        "latency_p95_s": round(pct(lat, 95), 2) if lat else None,
        "latency_over_scan_p50": round(pct(ratio_scan, 50), 2) if ok else None,
        "latency_over_scan_p95": round(pct(ratio_scan, 95), 2) if ok else None,
        "latency_over_wait_plus_scan_p50": round(pct(ratio_expected, 50), 3) if ok else None,
        "latency_over_wait_plus_scan_p95": round(pct(ratio_expected, 95), 3) if ok else None,
        "server_scan_over_inprocess_p50": round(pct(server, 50), 2) if server else None,
        "server_files_per_s": round(n / wall, 3),
        "batch_files_per_s": round(n / batch, 3),
        "throughput_ratio": round(batch / wall, 2),
        "poll_retries": sum(r.get("poll_retries", 0) for r in records),
        "first_errors": [r["error"] for r in records if r["error"]][:3],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16, help="concurrent clients, one upload each per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds (RSS is read after each)")
    p.add_argument("--workers", type=int, default=2, help="server scan workers")
    p.add_argument("--model", default=None, help="model (default: packaged)")
    p.add_argument("--url", default=None, help="use this running server instead of starting one")
    p.add_argument("--timeout", type=float, default=600, help="seconds per round before jobs count as lost")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args()

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    files = [MEDIA / c for c in CLIPS]
    workload = [files[i % len(files)] for i in range(args.clients)]
    per_clip, batch = baseline(args.model, files, workload)
    print(f"in-process scan seconds: { {k: round(v, 2) for k, v in per_clip.items()} }", file=sys.stderr)
    print(f"in-process batch of {len(workload)} files: {batch:.1f} s", file=sys.stderr)

    proc, url = None, args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        data = Path(tempfile.mkdtemp(prefix="dfdetect-bench-"))
        print(f"server data and log in {data}", file=sys.stderr)
        proc = start_server(args, data, port)
    try:
        wait_healthy(url, proc)
        rounds = []
        for i in range(args.rounds):
            records, wall = asyncio.run(run_round(url, workload, args.timeout))
            summary = summarise(records, per_clip, wall, batch, len(workload))
            if proc is not None:
                summary["server_rss_mib_after"] = round(tree_rss_mib(proc.pid), 1)
                summary["server_peak_rss_mib"] = round(tree_rss_mib(proc.pid, "VmHWM"), 1)
            summary["http_requests_so_far"] = requests_served(url)
            summary["round"] = i + 1
            rounds.append(summary)
            print(json.dumps(summary), file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    if proc is not None and all(not r["errors"] for r in rounds):
        shutil.rmtree(data, ignore_errors=True)  # kept when something failed: its server.log tells why
    result = {"clients": args.clients, "workers": args.workers, "cpus": os.cpu_count(), "rounds": rounds}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    head = ("round", "errors", "lost", "p50 s", "p95 s", "p95/scan", "p95/(wait+scan)", "thr", "RSS MiB")
    print("  ".join(head))
    for r in rounds:
        row = (
            r["round"],
            r["errors"],
            r["lost"],
            r["latency_p50_s"],
            r["latency_p95_s"],
            r["latency_over_scan_p95"],
            r["latency_over_wait_plus_scan_p95"],
            r["throughput_ratio"],
            r.get("server_rss_mib_after"),
        )
        print("  ".join(str(x) for x in row))


if __name__ == "__main__":
    main()
