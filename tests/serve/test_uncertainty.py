"""REST API: the ``uncertainty=N`` upload field reaches the scanner; older job databases gain the column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dfdetect.serve.jobs import JobStore, NewJob
from tests.serve.conftest import NO_AUDIO_CLIP, clip_bytes, upload, wait_done


def test_upload_field_gives_the_spread(make_client) -> None:
    client = make_client()
    res = upload(client, ("a.mp4", clip_bytes(NO_AUDIO_CLIP)), uncertainty="3")
    assert res.status_code == 202, res.text
    (job,) = res.json()["jobs"]
    assert job["uncertainty"] == 3
    done = wait_done(client, job["id"])
    u = done["prediction"]["uncertainty"]
    assert done["state"] == "done" and u["passes"] == 3 and u["std"] > 0 and u["low"] <= u["high"]
    report = client.get(f"/v1/scans/{job['id']}/report").text
    assert "3 dropout passes" in report
    for bad in ("1", "33", "many", "-2"):
        res = upload(client, ("b.mp4", clip_bytes(NO_AUDIO_CLIP)), uncertainty=bad)
        assert res.status_code == 400 and res.json()["error"]["code"] == "bad_field", bad


def test_an_older_job_database_gains_the_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "jobs.db")
    db.execute(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
        " owner TEXT NOT NULL, filename TEXT NOT NULL, media_kind TEXT NOT NULL, size INTEGER NOT NULL,"
        " upload TEXT, explain INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, started REAL, finished REAL,"
        " scan_seconds REAL, result TEXT, error TEXT)"
    )
    db.execute("INSERT INTO jobs (id, owner, filename, media_kind, size, state, created) VALUES"
               " ('old', 'o', 'x.mp4', 'video', 1, 'queued', 0)")  # fmt: skip
    db.commit()
    db.close()
    store = JobStore(tmp_path / "jobs.db")
    store.add("o", [NewJob("new", "y.mp4", "video", 1, "u", False, 4)], 10, lambda _: 1)
    assert store.get("old").uncertainty == 0 and store.get("new").uncertainty == 4
    assert store.claim().id == "old"
    store.close()
