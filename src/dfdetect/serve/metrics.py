"""Prometheus text exposition (format 0.0.4) of the service's counters, gauges and histograms.

Small on purpose: the service needs a handful of series, so no client library is required.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.n += 1

    def lines(self, name: str) -> list[str]:
        out, total = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            total += count
            out.append(f'{name}_bucket{{le="{bound:g}"}} {total}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.n}')
        out += [f"{name}_sum {self.sum:.6f}", f"{name}_count {self.n}"]
        return out


class Metrics:
    """Counters kept by the running process; gauges are read from the job store when scraped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scans: dict[str, int] = defaultdict(int)  # by prediction status (or "failed")
        self.requests: dict[tuple[str, int], int] = defaultdict(int)  # (method, status code)
        self.rejected: dict[str, int] = defaultdict(int)  # by error code
        self.upload_bytes = 0
        self.scan_seconds = Histogram()
        self.job_seconds = Histogram()  # from upload to result (queue wait + scan)

    def scan_finished(self, status: str, scan_seconds: float, job_seconds: float) -> None:
        with self._lock:
            self.scans[status] += 1
            self.scan_seconds.observe(scan_seconds)
            self.job_seconds.observe(job_seconds)

    def request(self, method: str, code: int) -> None:
        with self._lock:
            self.requests[(method, code)] += 1

    def reject(self, code: str) -> None:
        with self._lock:
            self.rejected[code] += 1

    def uploaded(self, n_bytes: int) -> None:
        with self._lock:
            self.upload_bytes += n_bytes

    def render(self, jobs: dict[str, int], running: int, workers: int, rss_bytes: int | None) -> str:
        """The exposition text; ``jobs`` are job counts by state from the store."""
        m = "dfdetect"
        lines = [
            f"# HELP {m}_queue_length Jobs waiting for a worker.",
            f"# TYPE {m}_queue_length gauge",
            f"{m}_queue_length {jobs.get('queued', 0)}",
            f"# HELP {m}_jobs Jobs in the store by state.",
            f"# TYPE {m}_jobs gauge",
            *(f'{m}_jobs{{state="{s}"}} {n}' for s, n in sorted(jobs.items())),
            f"# HELP {m}_workers_busy Workers scanning now.",
            f"# TYPE {m}_workers_busy gauge",
            f"{m}_workers_busy {running}",
            f"# HELP {m}_workers Scanning workers.",
            f"# TYPE {m}_workers gauge",
            f"{m}_workers {workers}",
        ]
        with self._lock:
            lines += [
                f"# HELP {m}_scans_total Finished scans by prediction status since start.",
                f"# TYPE {m}_scans_total counter",
                *(f'{m}_scans_total{{status="{s}"}} {n}' for s, n in sorted(self.scans.items())),
                f"# HELP {m}_http_requests_total HTTP requests by method and status code.",
                f"# TYPE {m}_http_requests_total counter",
                *(
                    f'{m}_http_requests_total{{method="{k[0]}",code="{k[1]}"}} {n}'
                    for k, n in sorted(self.requests.items())
                ),
                f"# HELP {m}_rejected_total Refused requests by error code.",
                f"# TYPE {m}_rejected_total counter",
                *(f'{m}_rejected_total{{code="{c}"}} {n}' for c, n in sorted(self.rejected.items())),
                f"# HELP {m}_upload_bytes_total Bytes of accepted uploads.",
                f"# TYPE {m}_upload_bytes_total counter",
                f"{m}_upload_bytes_total {self.upload_bytes}",
                f"# HELP {m}_scan_seconds Seconds a worker spent on one scan.",
                f"# TYPE {m}_scan_seconds histogram",
                *self.scan_seconds.lines(f"{m}_scan_seconds"),
                f"# HELP {m}_job_seconds Seconds from upload to result (queue wait + scan).",
                f"# TYPE {m}_job_seconds histogram",
                *self.job_seconds.lines(f"{m}_job_seconds"),
            ]
        if rss_bytes is not None:
            lines += [
                "# HELP process_resident_memory_bytes Resident memory size in bytes.",
                "# TYPE process_resident_memory_bytes gauge",
                f"process_resident_memory_bytes {rss_bytes}",
            ]
        return "\n".join(lines) + "\n"


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc``), else None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")
