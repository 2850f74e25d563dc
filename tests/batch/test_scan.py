"""dfdetect batch on a local Ray with 2 workers: real clips + the malformed corpus, resume, dead workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dfdetect.batch import scan as batch_scan
from dfdetect.batch.cluster import ActorPool, Task
from dfdetect.batch.results import JSONL, read_results
from dfdetect.batch.scan import BatchOptions, run_batch
from dfdetect.cli import main
from dfdetect.hub import sha256_file
from tests.conftest import media
from tests.malformed import SCAN_EXPECTED, make_malformed_corpus

REAL = {  # short real clips -> the status a scan gives them
    "real/pcavs_Pose_Source_00067.mp4": "ok",
    "real/pcavs_Pose_Source_620900105.mp4": "ok",
    "real/liveportrait_d0.mp4": "no_audio",  # no audio stream
}
TOUCHED, CHANGED = "touched.mp4", "changed.mp4"  # copies the resume test touches and rewrites


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / JSONL).read_text().splitlines()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder with the real clips (two of them copies, the others linked) and every malformed file,
    and the status expected of each."""
    root = tmp_path_factory.mktemp("batch-inputs")
    names = dict(zip(REAL, [CHANGED, TOUCHED, "liveportrait_d0.mp4"], strict=True))
    expected = {}
    for rel, status in REAL.items():
        if names[rel] in (TOUCHED, CHANGED):
            shutil.copy(media(rel), root / names[rel])
        else:
            (root / names[rel]).symlink_to(media(rel))
        expected[str(root / names[rel])] = status
    for name, path in make_malformed_corpus(root / "bad").items():
        expected[str(path)] = str(SCAN_EXPECTED[name])
    return root, expected


@pytest.fixture(scope="module")
def scanned(ray_local, tiny_model, inputs, tmp_path_factory):
    """The first run, through the CLI: a folder argument plus a missing one."""
    root, expected = inputs
    out = tmp_path_factory.mktemp("batch-out")
    argv = ["batch", str(root), str(root / "nothing-*.mp4"), "--out", str(out), "--model", str(tiny_model),
            "--workers", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_every_file_ends_with_a_status(scanned, inputs):
    _, expected = inputs
    records = _lines(scanned)
    got = {r["path"]: r["status"] for r in records}
    assert len(records) == len(expected)  # one record per file, none lost or repeated
    assert got == expected
    for r in records:
        assert r["attempts"] == 1 and not r.get("batch_error")
        assert r["model"] == "tiny" and len(r["model_hash"]) == 64
        assert r["prediction"]["status"] == r["status"]
        if r["status"] in ("ok", "no_audio"):
            assert 0.0 <= r["p_fake"] <= 1.0 and r["verdict"] in ("real", "fake", "uncertain")
    assert len({r["worker"]["pid"] for r in records}) == 2  # both workers scanned
    rows = pq.read_table(scanned / "parquet").to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(got)
    summary = json.loads((scanned / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (len(expected), 0, 0)
    assert summary["by_status"] == {s: list(got.values()).count(s) for s in set(got.values())}
    assert summary["missing"] == [f"{inputs[0]}/nothing-*.mp4"] and summary["rate"] > 0


def test_resume_skips_done_files_and_rescans_a_changed_one(scanned, inputs, tiny_model):
    root, expected = inputs
    paths = list(expected)
    options = BatchOptions(model=str(tiny_model), workers=2, progress=False)
    again = run_batch(paths, scanned, options)
    assert (again.done, again.skipped, again.workers) == (0, len(paths), 0)  # no worker even started
    os.utime(root / TOUCHED, ns=(1, 1))  # touched, same content: hashed again by a worker, not scanned
    shutil.copy(media("real/liveportrait_d0.mp4"), root / CHANGED)  # new content: scanned again
    changed = run_batch(paths, scanned, options)
    assert (changed.done, changed.skipped, changed.failed) == (1, len(paths) - 1, 0)
    latest = {r["path"]: r for r in read_results(scanned)}
    assert latest[str(root / CHANGED)]["status"] == "no_audio"  # the new content's answer
    assert len(_lines(scanned)) == len(paths) + 1
    assert run_batch([str(root / TOUCHED)], scanned, options).workers == 0  # its new time is remembered


def _busy_worker(method: str, pid: int | None = None) -> int | None:
    """The pid of a Ray scan worker busy in ``method``, other than ``pid`` (Ray titles it
    ray::ScanWorker.<method>)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                title = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(f"ray::ScanWorker.{method}".encode()):
                return int(entry)
    return None


def test_a_worker_killed_mid_scan_loses_nothing(ray_local, tiny_model, inputs, tmp_path, monkeypatch):
    root, expected = inputs
    paths = [p for p in expected if Path(p).name in ("liveportrait_d0.mp4", "faceless.mp4", "audio_only.mp4")]
    paths.append(str(media("real/pcavs_Pose_Source_517600055.mp4")))
    expected = {**expected, paths[-1]: "ok"}
    killed: list[int] = []

    def kill_the_other_worker(record: dict) -> None:
        victim = None if killed else _busy_worker("scan", record["worker"]["pid"])
        if victim is not None:  # the other worker is busy scanning: kill it mid-scan
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    # as on a cluster whose driver does not have the model: the workers say which model they loaded
    monkeypatch.setattr(batch_scan, "_local_model", lambda model, required: None)
    # one worker of the run's kind and one --cpu-workers worker (the pool replaces each with its own kind)
    options = BatchOptions(model=str(tiny_model), workers=1, cpu_workers=1, retries=1, progress=False)
    summary = run_batch(paths, tmp_path / "out", options, on_record=kill_the_other_worker)
    records = _lines(tmp_path / "out")
    assert len(killed) == 1
    assert sorted(r["path"] for r in records) == sorted(paths)  # every file once: nothing lost
    assert summary.failed == 0 and summary.worker_restarts == 1 and summary.workers == 2
    assert {r["model_hash"] for r in records} == {sha256_file(tiny_model)}
    retried = [r for r in records if r["attempts"] == 2]
    assert len(retried) == 1 and retried[0]["worker"]["pid"] != killed[0]
    assert {r["path"]: r["status"] for r in records} == {p: expected[p] for p in paths}


def test_two_stages_give_the_same_answers(scanned, inputs, tiny_model, tmp_path):
    """--extract-workers: one worker decodes and finds faces, the other only runs the model."""
    _, expected = inputs
    out = tmp_path / "staged"
    argv = ["batch", *expected, "--out", str(out), "--model", str(tiny_model), "--workers", "1",
            "--extract-workers", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    staged, single = {r["path"]: r for r in _lines(out)}, {r["path"]: r for r in read_results(scanned)}
    assert {p: r["status"] for p, r in staged.items()} == {p: single[p]["status"] for p in expected}
    for path, r in staged.items():
        assert r["attempts"] == 1 and r["p_fake"] == pytest.approx(single[path]["p_fake"], abs=1e-6)
        timeline, before = r["prediction"]["timeline"], single[path]["prediction"]["timeline"]
        assert sum(timeline, []) == pytest.approx(sum(before, []), abs=1e-6)
    scored = [r for r in staged.values() if r["status"] in ("ok", "no_audio")]
    assert scored and all(r["extractor"]["pid"] != r["worker"]["pid"] for r in scored)
    assert json.loads((out / "summary.json").read_text())["workers"] == 2


def test_a_dead_extractor_loses_nothing(ray_local, tiny_model, tmp_path):
    paths = [str(media(rel)) for rel in [*REAL, "real/pcavs_Pose_Source_517600055.mp4"]]
    killed: list[int] = []

    def kill_the_extractor(record: dict) -> None:
        victim = None if killed else _busy_worker("extract")
        if victim is not None:  # the extractor is busy with the next file: kill it mid-extraction
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    options = BatchOptions(model=str(tiny_model), workers=1, extract_workers=1, retries=1, progress=False)
    summary = run_batch(paths, tmp_path / "out", options, on_record=kill_the_extractor)
    records = _lines(tmp_path / "out")
    assert len(killed) == 1 and summary.failed == 0 and summary.worker_restarts == 1
    assert sorted(r["path"] for r in records) == sorted(paths)  # every file once: nothing lost
    assert [r["attempts"] for r in records].count(2) == 1
    assert {r["status"] for r in records} <= {"ok", "no_audio"}


def test_layouts_do_not_mix() -> None:
    with pytest.raises(ValueError, match="choose one"):
        BatchOptions(cpu_workers=1, extract_workers=1)


@pytest.fixture(scope="module")
def fragile(ray_local):
    class Fragile:
        def work(self, key: str) -> str:
            if key == "poison":
                os._exit(1)  # a crash inside a decoder, say
            return key.upper()

        def info(self) -> int:
            return os.getpid()

    return ray_local.remote(num_cpus=0.5)(Fragile)


def test_pool_gives_up_after_retries_and_goes_on(fragile):
    pool = ActorPool([fragile.remote], "work", retries=0)  # retries > 0: the test above
    assert len(pool.start()) == 1
    outcomes = {o.task.key: o for o in pool.run(Task(k, (k,)) for k in ["a", "poison", "b", "c"])}
    assert {k: o.value for k, o in outcomes.items() if o.error is None} == {"a": "A", "b": "B", "c": "C"}
    assert "died on each of 1 tries" in outcomes["poison"].error
    assert outcomes["poison"].task.attempts == 1 and pool.restarts == 1
    pool.shutdown()
