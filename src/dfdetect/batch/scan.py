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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dfdetect.batch.cluster import (
    LOCAL,
    ActorPool,
    ClusterError,
    Outcome,
    Task,
    ray_session,
    run_staged,
    worker_count,
)
from dfdetect.batch.results import BatchSummary, ResultStore
from dfdetect.hub import sha256_file
from dfdetect.infer.options import ScanOptions
from dfdetect.infer.pipeline import Extraction, kind_of_name
from dfdetect.types import Prediction, Status


@dataclass
class BatchOptions:
    """Settings of a batch run (``model``, Ray resources, retries, and the scan options)."""

    model: str | None = None  # name or checkpoint path (None: the packaged default)
    address: str | None = None  # None/"local": a local Ray; "auto", "HOST:6379", "ray://HOST:10001"
    workers: int | None = None  # actors (default: as many as the cluster's CPUs/GPUs hold)
    num_cpus: float = 1.0  # CPUs per worker (also its torch threads)
    num_gpus: float = 0.0  # GPUs per worker (> 0: the model runs on CUDA)
    cpu_workers: int = 0  # more workers, CPU only, 1 CPU each (beside GPU workers: CPU nodes help too)
    extract_workers: int = 0  # > 0: two stages, these 1-CPU workers decode and find faces for the others
    retries: int = 2  # tries after a worker dies on a file
    shard_size: int = 1000  # records per Parquet shard
    progress: bool = True
    scan: ScanOptions = field(default_factory=ScanOptions)  # how each file is scanned

    def __post_init__(self) -> None:
        if self.cpu_workers and self.extract_workers:
            raise ValueError("--cpu-workers and --extract-workers are two layouts: choose one")

    def scan_options(self) -> dict[str, Any]:
        """The scan options, JSON-ready: what the workers load with, and part of what resume compares."""
        return self.scan.to_dict()


class ScanWorker:
    """A Ray actor body: one loaded detector, scanning one file per call."""

    def __init__(
        self, model: str | None, device: str, options: dict[str, Any], threads: int, extracts: bool = True
    ) -> None:
        import torch

        from dfdetect.infer.lookup import resolve_model
        from dfdetect.infer.pipeline import load_detector

        torch.set_num_threads(max(1, threads))
        path, _ = resolve_model(model)
        self.model_hash = sha256_file(path)
        self.detector = load_detector(model, device=device, options=ScanOptions.from_dict(options))
        if extracts and self.detector.modalities & {"video", "frequency"}:
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
        header, extraction = self.extract(path, known_hash)
        return header if extraction is None else self.judge(header, extraction)

    def extract(self, path: str, known_hash: str | None = None) -> tuple[dict[str, Any], Extraction | None]:
        """The first stage of :meth:`scan` (hash, decode, faces, audio): ``(record, extraction)``.

        The record is final (an unchanged file, or a failure such as ``unreadable``) when the extraction
        is None; else it is the header that :meth:`judge` completes.
        """
        start = time.perf_counter()
        record: dict[str, Any] = {"path": path, "file_hash": None, "size": None, "mtime_ns": None}
        try:
            st = os.stat(path)
            record.update(size=st.st_size, mtime_ns=st.st_mtime_ns, file_hash=sha256_file(path))
        except OSError:
            pass  # missing or unreadable: the scan below says so in its status
        record["worker"] = _whoami()
        if known_hash is not None and record["file_hash"] == known_hash:
            return {**record, "unchanged": True}, None
        extraction = self.detector.extract(path)
        record["seconds"] = time.perf_counter() - start
        if extraction.failure is not None:
            return _completed(record, extraction.failure), None
        return record, extraction

    def judge(self, header: dict[str, Any], extraction: Extraction) -> dict[str, Any]:
        """The second stage of :meth:`scan`: the model on what :meth:`extract` read (here or on another
        worker, then named ``extractor`` in the record)."""
        start = time.perf_counter()
        pred = self.detector.judge(extraction)
        record = {**header, "seconds": header["seconds"] + time.perf_counter() - start}
        if header["worker"] != _whoami():
            record.update(extractor=header["worker"], worker=_whoami())
        return _completed(record, pred)


def _whoami() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _completed(record: dict[str, Any], pred: Prediction) -> dict[str, Any]:
    """``record`` with the prediction (and its headline fields) of a finished file."""
    data = pred.to_dict()
    return {**record, **_headline(data), "seconds": round(record["seconds"], 4), "prediction": data}


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
        pools = _pools(ray, options, scan_opts)
        try:
            infos = [] if local_model else pools[0].start()  # no model here: the workers say which
            model = local_model or _model_of(infos[0])
            summary.model, summary.model_hash = model["model"], model["model_hash"]
            tasks = _plan(paths, store, model["model_hash"], scan_opts, summary)
            if tasks:
                _check_model((infos or pools[0].start()) + [i for p in pools[1:] for i in p.start()], model)
                summary.workers = sum(len(p.factories) for p in pools)
                summary.startup_seconds = round(time.perf_counter() - start, 3)
                run = {**model, "options": scan_opts}
                _drive(pools, tasks, len(paths), run, store, summary, options.progress, on_record)
        finally:
            for pool in pools:
                pool.shutdown()
        summary.worker_restarts = sum(p.restarts for p in pools)
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


def _pools(ray: Any, options: BatchOptions, scan_opts: dict[str, Any]) -> list[ActorPool]:
    """The scan's actor pools: ``[scan]`` (each worker scans whole files), or, with ``extract_workers``,
    ``[judge, extract]`` (1-CPU workers decode and find faces, the others run the model on what they
    send; the model's pool is first: its workers answer which model runs).

    Raises:
        ClusterError: the workers do not fit the cluster.
    """
    model = options.model
    if model is not None and Path(model).expanduser().is_file():
        model = str(Path(model).expanduser().resolve())  # workers may start in another folder
    extra = options.cpu_workers + options.extract_workers
    size = worker_count(ray, options.num_cpus, options.num_gpus, options.workers, extra)

    def kind(num_cpus: float, num_gpus: float, extracts: bool = True) -> Callable[[], Any]:
        actor = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(ScanWorker)
        device, threads = ("cuda" if num_gpus > 0 else "cpu"), max(1, int(num_cpus))
        return lambda: actor.remote(model, device, scan_opts, threads, extracts)

    if not options.extract_workers:
        factories = [kind(options.num_cpus, options.num_gpus)] * size + [kind(1.0, 0.0)] * options.cpu_workers
        return [ActorPool(factories, "scan", options.retries)]
    judges = [kind(options.num_cpus, options.num_gpus, extracts=False)] * size
    extractors = [kind(1.0, 0.0)] * options.extract_workers
    return [ActorPool(judges, "judge", options.retries), ActorPool(extractors, "extract", options.retries, 2)]


def _handoff(outcome: Outcome) -> Task | None:
    """The judge's task for an extracted file; None when extraction finished it (unchanged, failed)."""
    header = outcome.value
    if header.get("unchanged") or "prediction" in header:
        return None
    return Task(outcome.task.key, (header, outcome.payload), attempts=outcome.task.attempts - 1)


def _outcomes(pools: list[ActorPool], tasks: list[Task]) -> Iterator[Outcome]:
    if len(pools) == 1:
        return pools[0].run(tasks)
    judge, extract = pools
    return run_staged(extract, judge, tasks, _handoff, queue=2 * len(judge.factories))


def _drive(
    pools: list[ActorPool],
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
        for outcome in _outcomes(pools, tasks):
            record = _finish(outcome, run, store, summary)
            if on_record is not None:
                on_record(record)
            bar.update(1)
            restarts = sum(p.restarts for p in pools)
            bar.set_postfix(done=summary.done, failed=summary.failed, restarts=restarts, refresh=False)
