"""The prepare batch runner: many videos -> cache entries, in worker processes, resumable.

Per-file extraction (one file -> :class:`~dfdetect.types.Clip`, what ``scan`` uses too) lives in
:mod:`dfdetect.data.extract`. :func:`prepare` runs it over many videos with resume, a per-video report
(``prepare_report.jsonl``) and a summary; a bad file is reported with its status and never stops the
batch. :func:`prepare_source` scans a dataset layout first and writes the manifest. The folder's layout
is :class:`~dfdetect.config.PreparedDir`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.config import PrepareConfig, PreparedDir
from dfdetect.data import cache
from dfdetect.data.extract import clip_status, extract_clip
from dfdetect.data.manifest import ManifestRow, write_manifest
from dfdetect.io.files import atomic_write_text
from dfdetect.io.video import MediaError
from dfdetect.types import AudioStatus, Clip, MediaKind, Status

log = logging.getLogger(__name__)

REPORT_NAME = PreparedDir.REPORT
_FAILED = (Status.UNREADABLE, Status.NO_VIDEO, Status.ERROR)


def prepare_clip(
    path: str | os.PathLike,
    config: PrepareConfig,
    detector: Any = None,
    timings: dict[str, float] | None = None,
) -> Clip:
    """One media file -> :class:`Clip` (:func:`~dfdetect.data.extract.extract_clip`): a video, a still
    image (a one-frame clip: face-image sets train the frame model and self-blending) or an audio file
    (an audio-only entry: speech sets)."""
    return extract_clip(path, config, detector, timings, kinds=tuple(MediaKind))


@dataclass(frozen=True)
class VideoResult:
    """One line of ``prepare_report.jsonl``."""

    path: str
    status: str
    message: str = ""
    seconds: float = 0.0
    n_faces: int = 0
    audio_status: str | None = None
    skipped: bool = False
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class PrepareSummary:
    """What a :func:`prepare` run did: counts per status, and every failure with its reason."""

    out_dir: str
    total: int = 0
    done: int = 0  # entries written in this run (ok, no_audio, no_face)
    skipped: int = 0  # entries already there with the same parameters
    failed: list[VideoResult] = field(default_factory=list)  # unreadable, no_video, error
    counts: dict[str, int] = field(default_factory=dict)  # status -> videos (this run + skipped)
    seconds: float = 0.0

    def add(self, result: VideoResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if result.skipped:
            self.skipped += 1
        elif Status(result.status) in _FAILED:
            self.failed.append(result)
        else:
            self.done += 1

    def format(self, max_failures: int = 20) -> str:
        """Human-readable summary (done / skipped / failed with reasons)."""
        by_status = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        lines = [
            f"prepared {self.total} videos in {self.seconds:.1f} s -> {self.out_dir}",
            f"  done {self.done}, skipped {self.skipped} (up to date), failed {len(self.failed)}",
            f"  by status: {by_status or 'none'}",
        ]
        for r in self.failed[:max_failures]:
            lines.append(f"  FAILED [{r.status}] {r.path}: {r.message}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more (see {REPORT_NAME})")
        return "\n".join(lines)


def process_video(
    path: str,
    config: PrepareConfig,
    detector: Any,
    cache_dir: str | os.PathLike,
    labels: dict[str, Any] | None = None,
) -> VideoResult:
    """Prepare one video and write its cache entry (with ``labels`` in its metadata, e.g. the manifest's
    ``segments``); every failure becomes a status, never an exception."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        clip = prepare_clip(path, config, detector, timings)
        cache.write_entry(cache_dir, clip, labels)
    except MediaError as e:
        return VideoResult(path, str(e.status), str(e), time.perf_counter() - t0)
    except Exception as e:  # an unexpected failure must not stop a batch
        log.exception("%s: unexpected error", path)
        return VideoResult(path, str(Status.ERROR), f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    status = clip_status(clip)
    message = {
        Status.NO_FACE: "no face track passed the quality filters (size, score, length); entry has no faces",
        Status.NO_AUDIO: f"audio: {clip.audio_status}; video-only models and checks still apply",
    }.get(status, "")
    return VideoResult(
        path, str(status), message, time.perf_counter() - t0, len(clip.faces), str(clip.audio_status),
        timings={k: round(v, 4) for k, v in timings.items()},
    )  # fmt: skip


# --------------------------------------------------------------------------- batch runner

_WORKER: dict[str, Any] = {}


def _init_worker(config_json: str, cache_dir: str) -> None:
    """Process-pool initializer: one detector per worker, one torch thread (workers are the parallelism)."""
    import torch

    from dfdetect.faces.detect import detector_from_config

    torch.set_num_threads(1)
    config = PrepareConfig.model_validate_json(config_json)
    _WORKER.update(config=config, detector=detector_from_config(config), cache_dir=cache_dir)


def _work(path: str, labels: dict[str, Any] | None = None) -> VideoResult:
    return process_video(path, _WORKER["config"], _WORKER["detector"], _WORKER["cache_dir"], labels)


def _entry_params(cache_dir: Path, path: str) -> dict[str, Any] | None:
    """Metadata of an existing entry (None when absent or unreadable: prepare it again)."""
    try:
        return cache.read_meta(cache.entry_path(cache_dir, path))
    except cache.CacheError:
        return None


def _up_to_date(meta: dict[str, Any] | None, config: PrepareConfig) -> bool:
    if meta is None:
        return False
    params = meta.get("params", {})
    return all(params.get(k) == v for k, v in config.model_dump().items() if k != "detector")


def _skipped(path: str, meta: dict[str, Any]) -> VideoResult:
    n_faces = int(meta.get("n_faces", 0))
    audio_status = AudioStatus(meta.get("audio_status", AudioStatus.NO_STREAM))
    if meta.get("kind") == MediaKind.AUDIO:  # an audio-only entry (speech sets) has no faces to look for
        status = Status.OK if audio_status is AudioStatus.OK and meta.get("speech") else Status.NO_SPEECH
    elif n_faces == 0:
        status = Status.NO_FACE
    else:  # a still image has no audio to miss (as clip_status says when the entry is made)
        image = meta.get("kind") == MediaKind.IMAGE
        status = Status.OK if audio_status is AudioStatus.OK or image else Status.NO_AUDIO
    return VideoResult(path, str(status), "cache entry up to date", 0.0, n_faces, str(audio_status), True)


def _run_pool(
    paths: list[str],
    config: PrepareConfig,
    cache_dir: Path,
    workers: int,
    labels: dict[str, dict] | None = None,
) -> Iterator[VideoResult]:
    """Results in completion order. A video whose worker dies (e.g. a crash inside FFmpeg) is retried
    alone in a fresh process; if that process dies too, the video is reported as an ERROR."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # forkserver: workers fork from a clean server that imported torch + this module once (fast start;
    # plain fork after torch/OpenMP start-up can deadlock, spawn re-imports everything per worker)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "dfdetect.data.prepare", "dfdetect.faces.extract"])
    init = (config.model_dump_json(), str(cache_dir))
    crashed: list[str] = []
    pool_options = {"mp_context": ctx, "initializer": _init_worker, "initargs": init}
    with ProcessPoolExecutor(max_workers=workers, **pool_options) as pool:
        futures = {pool.submit(_work, p, (labels or {}).get(p)): p for p in paths}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool:
                crashed.append(futures[future])
    for path in crashed:
        with ProcessPoolExecutor(max_workers=1, **pool_options) as pool:
            try:
                yield pool.submit(_work, path, (labels or {}).get(path)).result()
            except BrokenProcessPool:
                message = "the worker process crashed while reading this video; re-encode it or drop it"
                yield VideoResult(path, str(Status.ERROR), message)


def _run_local(
    paths: list[str], config: PrepareConfig, cache_dir: Path, labels: dict[str, dict] | None = None
) -> Iterator[VideoResult]:
    from dfdetect.faces.detect import detector_from_config

    detector = detector_from_config(config) if paths else None
    for path in paths:
        yield process_video(path, config, detector, cache_dir, (labels or {}).get(path))


def row_labels(rows: Iterable[ManifestRow | str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """Labels kept in the cache entries of ``rows``: ``{path: {"segments": [[start, end], ...]}}`` for the
    rows whose manipulated spans are known (LAV-DF, AV-Deepfake1M)."""
    return {
        r.path: {"segments": [list(s) for s in r.segments]}
        for r in rows
        if isinstance(r, ManifestRow) and r.segments is not None
    }


def _paths(rows: Iterable[ManifestRow | str | os.PathLike]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen[row.path if isinstance(row, ManifestRow) else str(row)] = None
    return list(seen)


def prepare(
    rows: Iterable[ManifestRow | str | os.PathLike],
    out_dir: str | os.PathLike,
    config: PrepareConfig | None = None,
    workers: int = 2,
    progress: bool = True,
    run_videos: Callable[..., Iterator[VideoResult]] | None = None,
) -> PrepareSummary:
    """Prepare every video into ``out_dir/cache`` (resumable), logging ``out_dir/prepare_report.jsonl``.

    Videos whose entry exists with the same parameters are skipped. Each video gets one report line
    (path, status, message, seconds, n_faces, audio_status); a failing video is reported, never fatal.

    Args:
        rows: manifest rows (or plain video paths).
        out_dir: output folder (``cache/`` and the report go there).
        config: preparation settings (default :class:`~dfdetect.config.PrepareConfig`).
        workers: worker processes (1 = run in this process).
        progress: show a progress bar and print the summary.
        run_videos: what prepares the videos that are not up to date, called as
            ``run_videos(paths, config, cache_dir, labels=...)`` and yielding one :class:`VideoResult`
            per path in any order (default: this process or ``workers`` processes; see
            :func:`dfdetect.batch.prepare.prepare_on_ray` for Ray workers).

    Returns:
        The run's :class:`PrepareSummary`.
    """
    from tqdm import tqdm

    config = config or PrepareConfig()
    out = Path(out_dir)
    layout = PreparedDir(out)
    cache_dir = layout.cache
    cache_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    paths, labels = _paths(rows), row_labels(rows)
    summary = PrepareSummary(out_dir=str(out), total=len(paths))
    t0 = time.perf_counter()
    with open(layout.report, "a", encoding="utf-8") as report:
        todo = []
        for path in paths:
            meta = _entry_params(cache_dir, path)
            if _up_to_date(meta, config):
                _record(_skipped(path, meta), summary, report)
            else:
                todo.append(path)
        if run_videos is None:
            run_videos = _run_local if workers <= 1 else functools.partial(_run_pool, workers=workers)
        run = run_videos(todo, config, cache_dir, labels=labels)
        bar = tqdm(total=len(paths), initial=len(paths) - len(todo), unit="video", desc="prepare",
                   disable=not progress, dynamic_ncols=True)  # fmt: skip
        with bar:
            for result in run:
                _record(result, summary, report)
                bar.update(1)
                bar.set_postfix(done=summary.done, failed=len(summary.failed), refresh=False)
    summary.seconds = time.perf_counter() - t0
    if progress:
        print(summary.format(), flush=True)
    return summary


def _record(result: VideoResult, summary: PrepareSummary, report: Any) -> None:
    summary.add(result)
    line = dataclasses.asdict(result)
    line["seconds"] = round(result.seconds, 3)
    report.write(json.dumps(line) + "\n")
    report.flush()


def _limit(rows: list[ManifestRow], limit: int, seed: int) -> list[ManifestRow]:
    """A reproducible subset of ``limit`` rows, drawn alternately from each label (then by path)."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[ManifestRow]] = {}
    for i in rng.permutation(len(rows)):
        by_label.setdefault(rows[i].label, []).append(rows[i])
    picked: list[ManifestRow] = []
    queues = [by_label[k] for k in sorted(by_label)]
    while len(picked) < limit and any(queues):
        for pending in queues:
            if pending and len(picked) < limit:
                picked.append(pending.pop(0))
    return sorted(picked, key=lambda r: r.path)


def prepare_source(
    source: str,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PrepareConfig | None = None,
    workers: int = 2,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    runner: Callable[..., PrepareSummary] | None = None,
    **source_options: Any,
) -> PrepareSummary:
    """Scan a dataset (``dfdetect.data.sources``), write its manifest and config, then :func:`prepare` it.

    Writes ``out_dir/manifest.csv`` (every row scanned, or the ``limit`` subset), ``prepare_config.json``,
    ``cache/`` and ``prepare_report.jsonl``.

    Args:
        source: ffpp, celebdf, dfdc, fakeavceleb or folder.
        root: the dataset folder in its official layout (or a user's folder of videos).
        out_dir: output folder.
        config: preparation settings.
        workers: worker processes.
        seed: seed of split assignment and of the ``limit`` subset.
        limit: prepare only this many videos (a reproducible subset balanced over labels).
        progress: progress bar and printed summary.
        runner: what prepares the rows, called like :func:`prepare` (default :func:`prepare`; e.g.
            :func:`dfdetect.batch.prepare.prepare_on_ray` to spread the videos over a Ray cluster).
        **source_options: options of the source (e.g. ``compressions="c23"`` for ffpp).

    Raises:
        DatasetLayoutError: ``root`` does not hold the layout ``source`` expects.
    """
    from dfdetect._version import __version__
    from dfdetect.data.sources import scan_source

    config = config or PrepareConfig()
    rows = scan_source(source, root, seed=seed, **source_options)
    if limit is not None:
        rows = _limit(rows, limit, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = PreparedDir(out)
    write_manifest(rows, layout.manifest)
    record = {
        "source": source,
        "root": str(Path(root).resolve()),
        "source_options": {k: v if isinstance(v, str | int | float | bool | None) else list(v)
                           for k, v in source_options.items()},
        "seed": seed,
        "limit": limit,
        "videos": len(rows),
        "config": config.model_dump(),
        "dfdetect_version": __version__,
    }  # fmt: skip
    atomic_write_text(layout.config, json.dumps(record, indent=2) + "\n")
    return (runner or prepare)(rows, out, config, workers=workers, progress=progress)
