"""Batch scanning on Ray: actors that each hold a loaded :class:`~dfdetect.infer.pipeline.Detector`.

:func:`run_batch` starts (or joins) Ray, starts one :class:`ScanWorker` actor per worker, skips files
already done (see :mod:`dfdetect.batch.results`), scans the rest (one file in flight per worker), and
records every file as it finishes. A worker that dies loses only the file it was scanning: that file
is retried on a fresh worker up to ``retries`` times, then recorded with status ``error``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dfdetect.batch.cluster import LOCAL, ActorPool, ClusterError, Outcome, Task, ray_session, worker_count
from dfdetect.batch.results import BatchSummary, ResultStore, sha256_file
from dfdetect.constants import VERDICT_BAND
from dfdetect.infer.pipeline import kind_of_name
from dfdetect.types import Status


@dataclass
class BatchOptions:
    """Settings of a batch run (``model``, Ray resources, retries, and the scan options)."""

    model: str | None = None  # name or checkpoint path (None: the packaged default)
    address: str | None = None  # None/"local": a local Ray; "auto", "HOST:6379", "ray://HOST:10001"
    workers: int | None = None  # actors (default: as many as the cluster's CPUs/GPUs hold)
    num_cpus: float = 1.0  # CPUs per worker (also its torch threads)
    num_gpus: float = 0.0  # GPUs per worker (> 0: the model runs on CUDA)
    cpu_workers: int = 0  # more workers, CPU only, 1 CPU each (beside GPU workers: CPU nodes help too)
    retries: int = 2  # tries after a worker dies on a file
    shard_size: int = 1000  # records per Parquet shard
    progress: bool = True
    scan: dict[str, Any] = field(default_factory=dict)  # Detector options: thresholds, speech, ...

    def scan_options(self) -> dict[str, Any]:
        """The options that change a prediction (part of what resume compares), JSON-ready."""
        opts: dict[str, Any] = {"thresholds": list(VERDICT_BAND), "aggregation": "mean"}
        opts.update(max_duration=None, speech="auto")
        opts.update(self.scan)
        opts["thresholds"] = [float(x) for x in opts["thresholds"]]
        return opts


class ScanWorker:
    """A Ray actor body: one loaded detector, scanning one file per call."""

    def __init__(self, model: str | None, device: str, options: dict[str, Any], threads: int) -> None:
        import torch

        from dfdetect.infer.lookup import resolve_model
        from dfdetect.infer.pipeline import load_detector

        torch.set_num_threads(max(1, threads))
        path, _ = resolve_model(model)
        self.model_hash = sha256_file(path)
        opts = {**options, "thresholds": tuple(options["thresholds"])}
        self.detector = load_detector(model, device=device, **opts)
        if self.detector.modalities & {"video", "frequency"}:
            _ = self.detector.face_detector  # built now: start-up, not the first file, pays for it

    def info(self) -> dict[str, Any]:
        """Who this worker is: pid, host, model name and hash, device."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "model": self.detector.name,
            "model_hash": self.model_hash,
            "device": str(self.detector.device),
        }

    def scan(self, path: str, known_hash: str | None = None) -> dict[str, Any]:
        """Hash and scan ``path``; returns a result record without the run's fields.

        When the content hashes to ``known_hash`` (the file was touched, not changed) the scan is
        skipped: the record then has ``"unchanged": True`` and no prediction.
        """
        start = time.perf_counter()
        record: dict[str, Any] = {"path": path, "file_hash": None, "size": None, "mtime_ns": None}
        try:
            st = os.stat(path)
            record.update(size=st.st_size, mtime_ns=st.st_mtime_ns, file_hash=sha256_file(path))
        except OSError:
            pass  # missing or unreadable: the scan below says so in its status
        worker = {"pid": os.getpid(), "host": socket.gethostname()}
        if known_hash is not None and record["file_hash"] == known_hash:
            return {**record, "unchanged": True, "worker": worker}
        pred = self.detector.scan(path).to_dict()
        seconds = round(time.perf_counter() - start, 4)
        return {**record, **_headline(pred), "worker": worker, "seconds": seconds, "prediction": pred}


def _headline(pred: dict[str, Any]) -> dict[str, Any]:
    return {k: pred.get(k) for k in ("status", "kind", "verdict", "p_fake", "message")}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _failure_record(path: str, error: str) -> dict[str, Any]:
    message = f"{error}; the file is retried on the next run (re-encode or drop it if it keeps failing)"
    return {
        "path": path,
        "file_hash": None,
        "size": None,
        "mtime_ns": None,
        "status": str(Status.ERROR),
        "kind": str(kind_of_name(path)),
        "verdict": None,
        "p_fake": None,
        "message": message,
        "batch_error": True,
        "prediction": None,
    }


def _plan(
    paths: list[str], store: ResultStore, model_hash: str, options: dict[str, Any], summary: BatchSummary
) -> list[Task]:
    """Tasks for the files not done yet; a done file whose size and time are unchanged is skipped, a
    done file that was touched goes to a worker with its known hash (hashed there, scanned if changed)."""
    tasks = []
    for path in paths:
        known = store.is_done(path, model_hash, options)
        if known is not None and store.unchanged(path, known):
            summary.add({"status": known.status, "verdict": known.verdict}, skipped=True)
            continue
        tasks.append(Task(path, (path, known.file_hash if known else None)))
    return tasks


def _finish(
    outcome: Outcome, run: dict[str, Any], store: ResultStore, summary: BatchSummary
) -> dict[str, Any]:
    """Turn a finished task into a stored record (or a skip, for a touched but unchanged file)."""
    value = outcome.value
    if outcome.error is not None:
        record = _failure_record(outcome.task.key, outcome.error)
    elif value.pop("unchanged", False):
        known = store.known[outcome.task.key]
        store.remember_hash(value["path"], value["size"], value["mtime_ns"], value["file_hash"])
        summary.add({"status": known.status, "verdict": known.verdict}, skipped=True)
        return value
    else:
        record = value
    record = {**record, **run, "attempts": outcome.task.attempts, "finished_at": _now()}
    store.append(record)
    summary.add(record)
    return record


def run_batch(
    paths: list[str],
    out_dir: str | os.PathLike,
    options: BatchOptions | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    missing: list[str] | None = None,
) -> BatchSummary:
    """Scan ``paths`` on Ray into ``out_dir`` (resumable); see :mod:`dfdetect.batch.results`.

    Args:
        paths: absolute file paths (:func:`dfdetect.batch.inputs.collect_inputs`).
        out_dir: the results folder.
        options: model, Ray address and resources, retries, scan options.
        on_record: called on the driver with each record as it is stored (and with the bare worker
            answer of a touched but unchanged file).
        missing: inputs that matched no file (reported in the summary).

    Returns:
        The run's :class:`BatchSummary` (also written to ``summary.json``).

    Raises:
        dfdetect.batch.cluster.ClusterError: Ray cannot be reached or the workers cannot start
            (an unknown model, say).
        dfdetect.batch.results.BatchOutputError: another run holds ``out_dir``.
        dfdetect.infer.lookup.ModelNotFoundError: a local run with an unknown model.
    """
    options = options or BatchOptions()
    summary = BatchSummary(out_dir=str(out_dir), total=len(paths), missing=list(missing or []))
    scan_opts = options.scan_options()
    local_model = _local_model(options.model, required=options.address in (None, LOCAL))
    with ResultStore(out_dir, options.shard_size) as store, ray_session(options.address) as ray:
        start = time.perf_counter()
        size = worker_count(ray, options.num_cpus, options.num_gpus, options.workers, options.cpu_workers)
        pool = ActorPool(_factories(ray, options, scan_opts, size), "scan", options.retries)
        try:
            infos = [] if local_model else pool.start()  # no model here: the workers say which
            model = local_model or _model_of(infos[0])
            summary.model, summary.model_hash = model["model"], model["model_hash"]
            tasks = _plan(paths, store, model["model_hash"], scan_opts, summary)
            if tasks:
                _check_model(infos or pool.start(), model)
                summary.workers = len(pool.factories)
                summary.startup_seconds = round(time.perf_counter() - start, 3)
                run = {**model, "options": scan_opts}
                _drive(pool, tasks, len(paths), run, store, summary, options.progress, on_record)
        finally:
            pool.shutdown()
        summary.worker_restarts = pool.restarts
        summary.seconds = round(time.perf_counter() - start, 3)
        summary.rate = round((summary.done + summary.failed) / max(summary.seconds, 1e-9), 4)
        store.write_summary(summary)
    return summary


def _model_of(info: dict[str, Any]) -> dict[str, str]:
    return {"model": info["model"], "model_hash": info["model_hash"]}


def _local_model(model: str | None, required: bool) -> dict[str, str] | None:
    """Name and hash of the checkpoint when this machine has it (None: ask a worker).

    Raises:
        ModelNotFoundError: ``required`` (a local Ray) and the model is not here.
    """
    from dfdetect.infer.lookup import ModelNotFoundError, resolve_model

    try:
        path, name = resolve_model(model)
    except ModelNotFoundError:
        if required:
            raise
        return None
    return {"model": name, "model_hash": sha256_file(path)}


def _check_model(infos: list[dict[str, Any]], model: dict[str, str]) -> None:
    for info in infos:
        if info["model_hash"] != model["model_hash"]:
            raise ClusterError(
                f"the worker on {info['host']} has another checkpoint for {model['model']!r} "
                f"(sha256 {info['model_hash'][:12]}, here {model['model_hash'][:12]}): install the same "
                "model on every node, or pass a checkpoint path on a shared file system"
            )


def _factories(
    ray: Any, options: BatchOptions, scan_opts: dict[str, Any], size: int
) -> list[Callable[[], Any]]:
    """One function per worker that starts its scan actor: ``size`` workers with the run's resources
    (on CUDA when they have GPUs), then ``cpu_workers`` CPU-only workers of one CPU each."""
    model = options.model
    if model is not None and Path(model).expanduser().is_file():
        model = str(Path(model).expanduser().resolve())  # workers may start in another folder

    def kind(num_cpus: float, num_gpus: float) -> Callable[[], Any]:
        actor = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(ScanWorker)
        device, threads = ("cuda" if num_gpus > 0 else "cpu"), max(1, int(num_cpus))
        return lambda: actor.remote(model, device, scan_opts, threads)

    return [kind(options.num_cpus, options.num_gpus)] * size + [kind(1.0, 0.0)] * options.cpu_workers


def _drive(
    pool: ActorPool,
    tasks: list[Task],
    total: int,
    run: dict[str, Any],
    store: ResultStore,
    summary: BatchSummary,
    progress: bool,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Run the tasks with a progress bar (rate and ETA), storing each record as it comes."""
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        initial=total - len(tasks),
        unit="file",
        desc="batch",
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    with bar:
        for outcome in pool.run(tasks):
            record = _finish(outcome, run, store, summary)
            if on_record is not None:
                on_record(record)
            bar.update(1)
            bar.set_postfix(done=summary.done, failed=summary.failed, restarts=pool.restarts, refresh=False)
