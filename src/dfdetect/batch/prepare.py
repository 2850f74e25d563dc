"""``prepare`` over Ray workers: the single-machine runner's resume, report and atomic cache entries,
with the videos spread over a cluster.

Each worker runs :func:`dfdetect.data.prepare.process_video` (the per-video function of the
single-machine path) with its own face detector and writes the cache entry atomically; the driver
decides what is up to date and writes ``prepare_report.jsonl`` exactly as
:func:`dfdetect.data.prepare.prepare` does. The cache folder must be on storage every node sees.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dfdetect.batch.cluster import ActorPool, Outcome, Task, ray_session, worker_count
from dfdetect.config import PrepareConfig
from dfdetect.data.manifest import ManifestRow
from dfdetect.data.prepare import PrepareSummary, VideoResult, prepare
from dfdetect.types import Status


class PrepareWorker:
    """A Ray actor body: a face detector and the prepare settings; one video per call."""

    def __init__(self, config_json: str, cache_dir: str, threads: int = 1) -> None:
        import torch

        from dfdetect.faces.detect import detector_from_config

        torch.set_num_threads(max(1, threads))
        self.config = PrepareConfig.model_validate_json(config_json)
        self.cache_dir = cache_dir
        self.detector = detector_from_config(self.config)

    def info(self) -> dict[str, Any]:
        import socket

        return {"pid": os.getpid(), "host": socket.gethostname()}

    def process(self, path: str, labels: dict[str, Any] | None = None) -> VideoResult:
        from dfdetect.data.prepare import process_video

        return process_video(path, self.config, self.detector, self.cache_dir, labels)


def _result(outcome: Outcome) -> VideoResult:
    if outcome.error is None:
        return outcome.value
    message = f"{outcome.error}; re-encode the video or drop it, then run prepare again"
    return VideoResult(outcome.task.key, str(Status.ERROR), message)


def prepare_on_ray(
    rows: Iterable[ManifestRow | str | os.PathLike],
    out_dir: str | os.PathLike,
    config: PrepareConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
    *,
    address: str | None = None,
    num_cpus: float = 1.0,
    retries: int = 2,
) -> PrepareSummary:
    """:func:`dfdetect.data.prepare.prepare` with the videos spread over Ray workers.

    Same outputs (``cache/``, ``prepare_report.jsonl``), same resume rule (entries with the same
    parameters are skipped), same atomic entries. A video whose worker dies is retried on a fresh
    worker up to ``retries`` times, then reported as ``error``.

    Args:
        rows: manifest rows (or plain video paths; full paths every node can read).
        out_dir: output folder, on storage every node sees.
        config: preparation settings.
        workers: Ray workers (default: as many as the cluster's CPUs hold at ``num_cpus`` each).
        progress: progress bar and printed summary.
        address: ``None``/``"local"`` (a local Ray), ``"auto"``, ``"HOST:6379"`` or ``"ray://HOST:10001"``.
        num_cpus: CPUs per worker (its torch threads).
        retries: tries after a worker dies on a video.

    Raises:
        dfdetect.batch.cluster.ClusterError: Ray cannot be reached or its workers cannot start.
    """
    run = functools.partial(_ray_videos, address=address, num_cpus=num_cpus, workers=workers, retries=retries)
    return prepare(rows, out_dir, config, workers=1, progress=progress, run_videos=run)


def _ray_videos(
    todo: list[str], config: PrepareConfig, cache_dir: Path, labels: dict[str, dict] | None = None, *,
    address: str | None, num_cpus: float, workers: int | None, retries: int,
) -> Iterator[VideoResult]:  # fmt: skip
    """Prepare ``todo`` on an actor pool, yielding each result as it comes."""
    if not todo:
        return
    with ray_session(address) as ray:
        size = min(worker_count(ray, num_cpus, 0.0, workers), len(todo))
        actor = ray.remote(num_cpus=num_cpus)(PrepareWorker)
        init = (config.model_dump_json(), str(Path(cache_dir).resolve()), max(1, int(num_cpus)))
        pool = ActorPool([lambda: actor.remote(*init)] * size, "process", retries)
        try:
            pool.start()
            yield from map(_result, pool.run(Task(p, (p, (labels or {}).get(p))) for p in todo))
        finally:
            pool.shutdown()
