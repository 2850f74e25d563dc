"""batch.results without Ray: durable appends, torn lines, Parquet shards, the resume rules."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from dfdetect.batch.inputs import collect_inputs
from dfdetect.batch.results import (
    JSONL,
    BatchOutputError,
    ResultStore,
    read_results,
)
from dfdetect.hub import sha256_file
from tests.conftest import media

OPTS = {"thresholds": [0.3, 0.7]}


def _record(path, i=0, model_hash="m1", **extra):
    st = os.stat(path)
    pred = {"path": str(path), "status": "ok", "modality": {"visual": 0.25}, "tracks": [{"track_id": 0}]}
    return {"path": str(path), "file_hash": sha256_file(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "model_hash": model_hash, "options": OPTS, "status": "ok", "verdict": "real", "p_fake": 0.1 * i,
            "attempts": 1, "prediction": pred, **extra}  # fmt: skip


def test_shards_resume_and_torn_line(tmp_path):
    files = []
    for i in range(5):
        files.append(tmp_path / f"v{i}.mp4")
        files[-1].write_bytes(bytes([i]) * 100)
    out = tmp_path / "out"
    with ResultStore(out, shard_size=2) as store:
        for i, f in enumerate(files):
            store.append(_record(f, i))
        with pytest.raises(BatchOutputError, match="another dfdetect batch"):
            ResultStore(out).__enter__()  # one run at a time
    shards = sorted((out / "parquet").glob("*.parquet"))
    assert [pq.read_metadata(s).num_rows for s in shards] == [2, 2, 1]
    table = pq.read_table(shards[0]).to_pylist()
    assert table[0]["visual"] == 0.25 and table[0]["n_tracks"] == 1
    assert json.loads(table[0]["prediction"])["status"] == "ok"

    # a run killed inside a write leaves a torn line; a shard went missing
    with open(out / JSONL, "a", encoding="utf-8") as f:
        f.write('{"path": "torn')
    shards[1].unlink()
    with ResultStore(out, shard_size=2) as store:
        assert store.count == 5
        assert store.is_done(str(files[0]), "m1", OPTS) is not None
        assert store.is_done(str(files[0]), "m2", OPTS) is None  # another model
        assert store.is_done(str(files[0]), "m1", {"thresholds": [0.2, 0.8]}) is None  # other options
        known = store.is_done(str(files[1]), "m1", OPTS)
        assert store.unchanged(str(files[1]), known)
        files[1].write_bytes(b"changed content")
        assert not store.unchanged(str(files[1]), known)
        store.append(_record(files[2], 9, batch_error=True, status="error"))
        assert store.is_done(str(files[2]), "m1", OPTS) is None  # a batch failure is retried
    assert (out / JSONL).read_text().endswith("\n")
    assert pq.read_metadata(out / "parquet" / "part-00001.parquet").num_rows == 2  # rebuilt
    assert pq.read_metadata(out / "parquet" / "part-00002.parquet").num_rows == 2
    latest = {r["path"]: r for r in read_results(out)}
    assert len(latest) == 5 and latest[str(files[2])]["status"] == "error"


def test_collect_inputs_reads_manifests_lists_folders_and_globs(tmp_path):
    clip = media("real/pcavs_Pose_Source_00067.mp4")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.mp4").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text(f"path,label\n{clip},0\nsub/a.mp4,1\n")
    (tmp_path / "plain.csv").write_text("id,path\n1,gone.mp4\n")
    (tmp_path / "list.txt").write_text(f"# comment\n{clip}\n\nsub\n{tmp_path}/nothing*.mp4\n")
    lists = [tmp_path / "manifest.csv", tmp_path / "plain.csv", tmp_path / "list.txt"]
    found, missing = collect_inputs(lists)
    assert found == [str(clip), str(tmp_path / "sub" / "a.mp4"), str(tmp_path / "gone.mp4")]
    assert missing == [f"{tmp_path}/nothing*.mp4"]
    (tmp_path / "bad.csv").write_text("file\nx.mp4\n")
    with pytest.raises(ValueError, match="'path' column"):
        collect_inputs([tmp_path / "bad.csv"])


def test_cli_usage_errors_name_the_problem(tmp_path, capsys):
    from dfdetect.cli import main

    clip = str(media("real/pcavs_Pose_Source_00067.mp4"))
    assert main(["batch", clip, "--out", str(tmp_path / "out"), "--model", "nope"]) == 2
    assert "unknown model 'nope'; available models:" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "none-*.mp4"), "--out", str(tmp_path / "out")]) == 2
    assert "no input found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
