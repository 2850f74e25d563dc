"""Build a corpus from catalogues of git blobs: extract, verify, cut, then the usual prepare.

``dfdetect prepare catalog corpus/video --git-root /work/.mirror --out DIR``:

1. read and plan the catalogues (:mod:`dfdetect.data.sources.catalog`: media path, family, group, split);
2. extract each blob from its repository (``GIT_ROOT/<owner>+<name>/repo``, the layout of the search
   tool's ``fetch``; with ``clone=True`` a blobless clone is made there when a repository or blob is
   missing) into ``DIR/media/<blob><ext>``, written atomically and **verified by its git blob id**
   (sha1 of ``blob <size>\\0`` + the bytes written), after checking that the catalogue's commit and path
   name that blob;
3. cut composites (``DIR/media/<blob>.<crop>.mp4``, :mod:`dfdetect.data.catalog_crop`);
4. :func:`dfdetect.data.prepare.prepare` the samples into ``DIR/cache`` and write ``DIR/manifest.csv``
   (rows whose file could not be had stay in it and in the report, so a later run picks them up) and
   ``DIR/catalog_index.csv`` (manifest path -> catalogue row, and why a row was left out).

A missing repository, a missing blob (mirrors lack files of 4 MiB and more and LFS content) or a wrong
blob is a failed row whose message names the repository and what to run; the other rows go on. Every step
resumes: a verified file, a cut or a cache entry already there is not made again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfdetect.config import PrepareConfig, PreparedDir
from dfdetect.data.catalog_crop import cut_media, parse_crop
from dfdetect.data.sources.catalog import CatalogEntry, catalog_entries, grid_shapes, is_image
from dfdetect.io.files import atomic_path, atomic_write_text
from dfdetect.types import Status

log = logging.getLogger(__name__)

CLONE_URL = "https://github.com/{repo}.git"
INDEX_NAME = "catalog_index.csv"
MEDIA_DIR = "media"
_LFS_HEAD = b"version https://git-lfs"


class CatalogError(RuntimeError):
    """A catalogue file that cannot be had: ``status`` says which kind (the summary counts them)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def git_blob_id(path: str | os.PathLike) -> str:
    """The git blob id of a file: sha1 of ``blob <size>\\0`` followed by its bytes."""
    h = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Repositories:
    """Git directories of catalogue repositories under one root, cloned on demand when allowed.

    ``root/<owner>+<name>/repo`` (bare, or a work tree with ``.git``) is the mirror layout of ``fetch``;
    ``root/<owner>+<name>/clone`` is where ``clone=True`` makes a blobless clone (``git clone
    --filter=blob:none --no-checkout``) whose missing blobs ``git cat-file`` fetches one by one.
    """

    def __init__(self, root: str | os.PathLike, clone: bool = False, url: str = CLONE_URL) -> None:
        self.root, self.clone, self.url = Path(root), clone, url
        self._specs: dict[str, set[str]] = defaultdict(set)  # repo -> "commit:path" the rows name
        self._trees: dict[str, dict[str, str | None]] = {}  # git dir -> {"commit:path": blob id or None}

    def expect(self, entries: Iterable[CatalogEntry]) -> None:
        """Note the ``commit:path`` of rows to check, so each repository is asked once for all of them."""
        for e in entries:
            if e.commit:
                self._specs[e.repo].add(f"{e.commit}:{e.path}")

    def git_dirs(self, repo: str) -> list[Path]:
        """Existing git directories of ``repo`` (mirror first, then clone)."""
        base = self.root / repo.replace("/", "+")
        found = []
        for name in ("repo", "clone"):
            for candidate in (base / name / ".git", base / name):
                if (candidate / "objects").is_dir() and (candidate / "HEAD").is_file():
                    found.append(candidate)
                    break
        return found

    def make_clone(self, repo: str) -> Path:
        """A blobless clone of ``repo`` under the root (made once).

        Raises:
            CatalogError: the clone failed (no network, no such repository).
        """
        target = self.root / repo.replace("/", "+") / "clone"
        if not (target / ".git").is_dir():
            url = self.url.format(repo=repo)
            cmd = ["git", "clone", "--quiet", "--filter=blob:none", "--no-checkout", url, str(target)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise CatalogError("missing_repo", f"{repo}: `git clone {url}` failed: {done.stderr.strip()}")
        return target / ".git"

    def tree_blob(self, git_dir: Path, entry: CatalogEntry) -> str | None:
        """The blob id that ``entry``'s commit and path name in ``git_dir`` (None: not there)."""
        spec = f"{entry.commit}:{entry.path}"
        table = self._trees.setdefault(str(git_dir), {})
        if spec not in table:
            specs = sorted((self._specs[entry.repo] | {spec}) - set(table))
            done = _git(git_dir, ["cat-file", "--batch-check"], "".join(s + "\n" for s in specs))
            for s, line in zip(specs, done.stdout.decode().splitlines(), strict=False):
                parts = line.split()
                table[s] = parts[0] if len(parts) == 3 and parts[1] == "blob" else None
        return table.get(spec)


def _git(git_dir: Path, args: list[str], stdin: str | None = None, **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], input=None if stdin is None else stdin.encode(),
        capture_output="stdout" not in kw, env=env, **kw,
    )  # fmt: skip


def _fix(repo: str, clone: bool) -> str:
    if clone:
        return f"check that github.com/{repo} is reachable"
    return f"run `fetch github:{repo}` (a mirror under the git root) or use --clone"


def extract_blob(entry: CatalogEntry, repos: Repositories, dst: Path) -> Path:
    """Write ``entry``'s blob to ``dst`` (atomically), verified by its blob id; a verified ``dst``
    already there is kept.

    Raises:
        CatalogError: ``missing_repo``, ``missing_blob``, ``wrong_blob`` or ``lfs_pointer``, with the
            repository and what to do in the message.
    """
    if dst.is_file() and git_blob_id(dst) == entry.blob:
        return dst
    git_dirs = repos.git_dirs(entry.repo)
    if not git_dirs and not repos.clone:
        msg = f"repository {entry.repo} is not under {repos.root}: {_fix(entry.repo, False)}"
        raise CatalogError("missing_repo", msg)
    for git_dir in git_dirs:
        if _cat_blob(git_dir, entry, dst):
            return dst
    if repos.clone:
        git_dir = repos.make_clone(entry.repo)
        if _cat_blob(git_dir, entry, dst):
            return dst
    why = "" if repos.clone else " (mirrors lack files of 4 MiB and more, and LFS content)"
    msg = (f"blob {entry.blob} ({entry.path}, {entry.bytes} bytes) is not in {entry.repo}{why}: "
           f"{_fix(entry.repo, repos.clone)}")  # fmt: skip
    raise CatalogError("missing_blob", msg)


def check_tree(entry: CatalogEntry, repos: Repositories) -> None:
    """Refuse a row whose commit and path name another blob than its own (a catalogue error or a stale row).

    Raises:
        CatalogError: ``wrong_blob``.
    """
    for git_dir in repos.git_dirs(entry.repo) if entry.commit else []:
        actual = repos.tree_blob(git_dir, entry)
        if actual is not None and actual != entry.blob:
            msg = (f"{entry.repo} has blob {actual} at {entry.commit}:{entry.path}, not the catalogue's "
                   f"{entry.blob}: fix the catalogue row ({entry.where})")  # fmt: skip
            raise CatalogError("wrong_blob", msg)


def _cat_blob(git_dir: Path, entry: CatalogEntry, dst: Path) -> bool:
    """Stream the blob into ``dst`` and verify what was written; False when the repository lacks it."""
    if _git(git_dir, ["cat-file", "-e", entry.blob]).returncode != 0:
        return False
    with atomic_path(dst, suffix=dst.suffix) as tmp:
        with open(tmp, "wb") as f:
            done = _git(git_dir, ["cat-file", "blob", entry.blob], stdout=f, stderr=subprocess.PIPE)
        if done.returncode != 0:
            return False
        got = git_blob_id(tmp)
        if got != entry.blob:
            msg = f"{entry.repo}: the bytes written for {entry.path} hash to {got}, not {entry.blob}"
            raise CatalogError("wrong_blob", msg + f": re-fetch the repository ({_fix(entry.repo, False)})")
        if os.path.getsize(tmp) < 1024 and open(tmp, "rb").read(len(_LFS_HEAD)) == _LFS_HEAD:
            msg = f"{entry.repo}: {entry.path} is a Git LFS pointer; its media lives in LFS"
            raise CatalogError("lfs_pointer", msg + " (fetch it with `git lfs` in a clone)")
    return True


@dataclass
class CatalogSummary:
    """What the catalogue step did before preparing: samples had, cut, and failed by status."""

    rows: int = 0  # catalogue rows read
    samples: int = 0  # distinct samples (manifest rows)
    left_out: Counter = field(default_factory=Counter)  # reason kind -> rows left out by the protocol
    extracted: int = 0  # blobs written (and verified) in this run
    cut: int = 0  # composites cut in this run
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # manifest path -> (status, message)

    def format(self, max_failures: int = 20) -> str:
        by_status = _counts(Counter(status for status, _ in self.failed.values()))
        lines = [
            f"catalogue: {self.rows} rows -> {self.samples} samples; left out: {_counts(self.left_out)}",
            f"  extracted {self.extracted} blobs and cut {self.cut} panels in this run; "
            f"failed {len(self.failed)} ({by_status})",
        ]
        for path, (status, message) in list(self.failed.items())[:max_failures]:
            lines.append(f"  FAILED [{status}] {Path(path).name}: {message}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more (see {INDEX_NAME})")
        return "\n".join(lines)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"


def _clean_partial(media: Path) -> None:
    """Remove temporary files a killed run left (``.<name>.<random>.tmp<ext>``): never used as media."""
    if media.is_dir():
        for tmp in media.glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)


def materialise(
    planned: Iterable[CatalogEntry],
    repos: Repositories,
    media: Path,
    progress: bool = True,
    max_seconds: float | None = None,
) -> CatalogSummary:
    """Extract (verified) and cut every kept sample into ``media``; failures are returned, never raised.

    Cuts keep the first ``max_seconds`` of a video (None = all): what prepare reads of it anyway."""
    from tqdm import tqdm

    planned = list(planned)
    shapes = grid_shapes(planned)
    by_blob: dict[str, list[CatalogEntry]] = defaultdict(list)
    for e in planned:
        if e.row is not None:
            by_blob[e.blob].append(e)
    summary = CatalogSummary(rows=len(planned), samples=sum(len(v) for v in by_blob.values()))
    summary.left_out.update(e.excluded.split(":")[0] for e in planned if e.excluded)
    media.mkdir(parents=True, exist_ok=True)
    _clean_partial(media)
    repos.expect(e for entries in by_blob.values() for e in entries)
    for entries in tqdm(by_blob.values(), desc="extract", unit="blob", disable=not progress,
                        dynamic_ncols=True):  # fmt: skip
        _materialise_blob(entries, repos, media, shapes, summary, max_seconds)
    return summary


def _materialise_blob(
    entries: list[CatalogEntry],
    repos: Repositories,
    media: Path,
    shapes: dict,
    summary: CatalogSummary,
    max_seconds: float | None,
) -> None:
    """The blob of ``entries`` and their cuts; a failure marks every sample of that blob failed."""
    full = media / (entries[0].blob + entries[0].suffix)
    todo = [e for e in entries if not Path(e.row.path).is_file() or Path(e.row.path) == full]
    if not todo:
        return  # every sample is a finished cut (cuts are renamed into place only once complete)
    todo = [e for e in todo if _tree_ok(e, repos, summary)]
    try:
        if todo:
            had = full.is_file() and git_blob_id(full) == todo[0].blob
            extract_blob(todo[0], repos, full)
            summary.extracted += not had
    except CatalogError as err:
        for e in todo:
            summary.failed[e.row.path] = (err.status, str(err))
        return
    cuts = [e for e in todo if Path(e.row.path) != full]
    if not cuts:
        return
    try:
        jobs = [(e.row.path, parse_crop(e.crop, shapes.get(e.blob))) for e in cuts]
        cut_media(full, jobs, image=is_image(cuts[0]), max_seconds=max_seconds)
        summary.cut += len(cuts)
    except Exception as err:  # a composite FFmpeg cannot cut must not stop the corpus
        for e in cuts:
            message = f"cannot cut {e.crop!r} out of {e.repo}:{e.path}: {type(err).__name__}: {err}"
            summary.failed[e.row.path] = ("cut_failed", message)


def _tree_ok(entry: CatalogEntry, repos: Repositories, summary: CatalogSummary) -> bool:
    try:
        check_tree(entry, repos)
        return True
    except CatalogError as err:
        summary.failed[entry.row.path] = (err.status, str(err))
        return False


def _index_text(planned: list[CatalogEntry], failed: dict[str, tuple[str, str]]) -> str:
    """``catalog_index.csv``: each catalogue row, its manifest path (or why it is left out) and status."""
    buf = io.StringIO()
    cols = ["path", "status", "message", "catalogue", "repo", "commit", "source_path", "blob", "label",
            "generator", "crop", "speaker", "split", "group"]  # fmt: skip
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for e in planned:
        row = e.row
        status, message = ("left_out", e.excluded) if row is None else failed.get(row.path, ("ok", ""))
        writer.writerow([
            row.path if row else "", status, message, e.where, e.repo, e.commit, e.path, e.blob, e.label,
            e.generator, e.crop, e.speaker, row.split if row else "", row.group if row else "",
        ])  # fmt: skip
    return buf.getvalue()


def prepare_catalog(
    catalogs: str | os.PathLike | list,
    out_dir: str | os.PathLike,
    git_root: str | os.PathLike,
    *,
    clone: bool = False,
    splits: str | os.PathLike | None = None,
    config: PrepareConfig | None = None,
    workers: int = 2,
    progress: bool = True,
    runner: Callable[..., Any] | None = None,
    clone_url: str = CLONE_URL,
) -> tuple[Any, CatalogSummary]:
    """Build catalogues into a prepared folder (see the module docstring); resumable.

    Args:
        catalogs: catalogue CSVs or folders of them (a list, or one path).
        out_dir: the prepared folder (``media/``, ``cache/``, ``manifest.csv``, ``catalog_index.csv``...).
        git_root: where the repositories are (``<owner>+<name>/repo``) or are cloned to.
        clone: make blobless clones of repositories (or blobs) the root lacks (needs the network).
        splits: the split file (``corpus/splits.yaml``); default: the hash rule alone.
        config: preparation settings.
        workers: worker processes of the prepare step.
        progress: progress bars and printed summaries.
        runner: what prepares the rows, called like :func:`dfdetect.data.prepare.prepare` (e.g. Ray).
        clone_url: URL template of ``--clone`` (``{repo}`` = owner/name).

    Returns:
        The prepare step's :class:`~dfdetect.data.prepare.PrepareSummary` (catalogue failures added as
        ``unreadable``) and the :class:`CatalogSummary`.
    """
    from dfdetect.data.manifest import write_manifest
    from dfdetect.data.prepare import prepare
    from dfdetect.data.splits import check_no_leak

    config = config or PrepareConfig()
    catalogs = [catalogs] if isinstance(catalogs, str | os.PathLike) else list(catalogs)
    out, media = Path(out_dir), Path(out_dir) / MEDIA_DIR
    layout = PreparedDir(out)
    planned = catalog_entries(catalogs, media, splits)
    rows = sorted((e.row for e in planned if e.row is not None), key=lambda r: r.path)
    check_no_leak(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(rows, layout.manifest)
    record = {"source": "catalog", "catalogs": [str(c) for c in catalogs], "git_root": str(git_root),
              "clone": clone, "splits": str(splits or ""), "videos": len(rows)}  # fmt: skip
    _drop_short_cuts(layout, config, planned)
    _write_record(layout, record, config)
    summary = materialise(
        planned, Repositories(git_root, clone, clone_url), media, progress, config.max_duration
    )
    atomic_write_text(out / INDEX_NAME, _index_text(planned, summary.failed))
    ready = [r for r in rows if r.path not in summary.failed]
    result = (runner or prepare)(ready, out, config, workers=workers, progress=progress)
    _report_failures(result, summary, layout)
    if progress:
        print(summary.format(), flush=True)
    return result, summary


def _drop_short_cuts(layout: PreparedDir, config: PrepareConfig, planned: list[CatalogEntry]) -> None:
    """Cuts hold the first ``max_duration`` seconds: remove them when this run reads more than the last."""
    try:
        before = json.loads(layout.config.read_text(encoding="utf-8"))["config"].get("max_duration")
    except (OSError, ValueError, KeyError, TypeError):
        return
    if before is None or (config.max_duration is not None and config.max_duration <= before):
        return
    for e in planned:
        if e.row is not None and e.crop:
            Path(e.row.path).unlink(missing_ok=True)


def _write_record(layout: PreparedDir, record: dict[str, Any], config: PrepareConfig) -> None:
    from dfdetect._version import __version__

    record = {**record, "config": config.model_dump(), "dfdetect_version": __version__}
    atomic_write_text(layout.config, json.dumps(record, indent=2) + "\n")


def _report_failures(result: Any, summary: CatalogSummary, layout: PreparedDir) -> None:
    """Add the rows whose file could not be had to the prepare summary and report (as unreadable)."""
    from dfdetect.data.prepare import VideoResult

    with open(layout.report, "a", encoding="utf-8") as report:
        for path, (status, message) in summary.failed.items():
            failure = VideoResult(path, str(Status.UNREADABLE), f"[{status}] {message}")
            result.add(failure)
            result.total += 1
            line = {"path": path, "status": failure.status, "message": failure.message}
            report.write(json.dumps(line) + "\n")
