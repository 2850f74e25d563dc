"""Limits and refusals: 413, 415, 429 (queue and rate), the bad-input corpus, and no 500 for bad requests."""

from __future__ import annotations

import json

import pytest

from dfdetect.serve.uploads import UploadLimits
from tests.malformed import EXPECTED, make_malformed_corpus
from tests.serve.conftest import CLIP, GatedDetector, clip_bytes, upload, wait_done

REFUSED = {"zero_byte", "random_bytes", "text"}  # not media by their bytes: 415 before any scan
# What a scan may answer for each accepted file: prepare's status, except that an audio-only file is
# scored from audio alone when the model hears (else no_video / no_speech).
SCAN_EXPECTED = {name: {str(status)} for name, status in EXPECTED.items()}
SCAN_EXPECTED["audio_only"] = {"ok", "no_video", "no_speech"}


def _uploads(client) -> list[str]:
    folder = client.app.state.service.uploads
    return sorted(p.name for p in folder.iterdir())


def _error(res, status: int, code: str) -> dict:
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert err["status"] == status and err["code"] == code and err["message"]
    return err


def test_bad_input_corpus_through_the_api(make_client, tmp_path) -> None:
    client = make_client()
    corpus = make_malformed_corpus(tmp_path / "corpus")
    jobs = {}
    for name, path in corpus.items():
        res = upload(client, (path.name, path.read_bytes()))
        if name in REFUSED:
            err = _error(res, 415, "unsupported_media")
            assert path.name in err["message"] and "content was checked" in err["message"]
        else:
            assert res.status_code == 202, (name, res.text)
            jobs[name] = res.json()["jobs"][0]["id"]
    assert set(jobs) == set(EXPECTED) - REFUSED
    data_dir = str(client.app.state.service.uploads.parent.resolve())
    for name, job_id in jobs.items():
        done = wait_done(client, job_id)
        assert done["state"] == "done", (name, done)
        pred = done["prediction"]
        assert pred["status"] in SCAN_EXPECTED[name], (name, pred["status"], pred["message"])
        assert pred["message"], f"{name}: a file that cannot be scored says why"
        report = client.get(f"/v1/scans/{job_id}/report").text
        for shown in (json.dumps(done), report):
            assert data_dir not in shown and "uploads/" not in shown, (name, pred["message"])
        if pred["status"] == "unreadable":
            assert corpus[name].name in pred["message"], "the user sees their own file name"
    assert _uploads(client) == [], "uploads are deleted once scanned; refused ones are never kept"


def test_too_large_and_too_many_files(make_client) -> None:
    client = make_client(limits=UploadLimits(max_file_bytes=100_000, max_files=2))
    big = clip_bytes(CLIP)
    assert len(big) > 100_000
    err = _error(upload(client, ("big.mp4", big)), 413, "too_large")
    assert "big.mp4" in err["message"] and "limit" in err["message"]
    small = clip_bytes("real/pcavs_Pose_Source_00067.mp4")[:50_000]
    _error(upload(client, ("a.mp4", small), ("b.mp4", small), ("c.mp4", small)), 413, "too_many_files")
    huge = client.post(
        "/v1/scans",
        content=b"x",
        headers={"content-type": "multipart/form-data; boundary=b", "content-length": str(10**10)},
    )
    _error(huge, 413, "too_large")
    assert _uploads(client) == [], "a refused upload leaves no file behind"
    assert client.get("/v1/scans").json()["jobs"] == []


def test_queue_full_gives_429_with_retry_after(make_client) -> None:
    gated = GatedDetector()
    client = make_client(load=lambda: gated, max_queue=2)
    data = clip_bytes(CLIP)
    first = upload(client, ("1.mp4", data)).json()["jobs"][0]
    assert gated.started.wait(10), "the first job is running and holds the only worker"
    assert upload(client, ("2.mp4", data), ("3.mp4", data)).status_code == 202
    res = upload(client, ("4.mp4", data))
    _error(res, 429, "queue_full")
    assert int(res.headers["retry-after"]) >= 1
    gated.gate.set()
    assert wait_done(client, first["id"])["state"] == "done"
    assert len(client.get("/v1/scans").json()["jobs"]) == 3
    assert _uploads(client) == [] or all(not n.startswith("4") for n in _uploads(client))


def test_a_refused_multi_file_upload_spends_no_token(make_client) -> None:
    gated = GatedDetector()
    gated.gate.set()
    client = make_client(load=lambda: gated, uploads_per_minute=2, limits=UploadLimits(max_files=3))
    data = clip_bytes(CLIP)[:20_000]
    _error(upload(client, *[(f"{i}.mp4", data) for i in range(4)]), 413, "too_many_files")
    res = upload(client, *[(f"{i}.mp4", data) for i in range(3)])
    _error(res, 429, "rate_limited")
    assert int(res.headers["retry-after"]) >= 29, "1 token more than the 2 in the bucket: 30 s at 2/min"
    assert upload(client, ("a.mp4", data), ("b.mp4", data)).status_code == 202, "both tokens were left"
    _error(upload(client, ("c.mp4", data)), 429, "rate_limited")


def test_rate_limit_per_key(make_client) -> None:
    gated = GatedDetector()
    gated.gate.set()
    client = make_client(load=lambda: gated, uploads_per_minute=2)
    data = clip_bytes(CLIP)[:20_000]
    assert upload(client, ("a.mp4", data)).status_code == 202
    assert upload(client, ("b.mp4", data)).status_code == 202
    res = upload(client, ("c.mp4", data))
    _error(res, 429, "rate_limited")
    assert 1 <= int(res.headers["retry-after"]) <= 60


BAD_REQUESTS = [
    ("post", "/v1/scans", {"json": {"file": "x"}}, 415, "not_multipart"),
    ("post", "/v1/scans", {"content": b""}, 415, "not_multipart"),
    ("post", "/v1/scans", {"data": {"explain": "true"}, "files": {}}, 415, "not_multipart"),
    ("post", "/v1/scans", {"files": {"explain": (None, b"true")}}, 400, "no_files"),
    ("post", "/v1/scans", {"files": {"video": ("a.mp4", b"\x00\x00\x00\x18ftypmp42")}}, 400, "bad_field"),
    (
        "post",
        "/v1/scans",
        {"files": {"file": ("a.mp4", b"\x00\x00\x00\x18ftypmp42")}, "data": {"explain": "maybe"}},
        400,
        "bad_field",
    ),
    ("get", "/v1/scans/../../etc/passwd", {}, 404, "not_found"),
    ("get", "/v1/scans/0123456789abcdef0123456789abcdef", {}, 404, "not_found"),
    ("get", "/v1/scans/%00", {}, 404, "not_found"),
    ("delete", "/v1/scans/" + "a" * 5000, {}, 404, "not_found"),
    ("get", "/v1/scans", {"params": {"limit": "abc"}}, 422, "invalid_request"),
    ("get", "/v1/scans", {"params": {"limit": "-1"}}, 422, "invalid_request"),
    ("get", "/v1/scans", {"params": {"state": "exploded"}}, 400, "bad_state"),
    ("get", "/v1/scans", {"params": {"before": "1e9999"}}, 400, "bad_cursor"),
    ("get", "/v1/scans", {"params": {"before": "x" * 65}}, 422, "invalid_request"),
    ("put", "/v1/scans", {}, 405, "method_not_allowed"),
    ("get", "/v2/scans", {}, 404, "not_found"),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "code"), BAD_REQUESTS)
def test_bad_requests_get_clear_json_errors(make_client, method, url, kwargs, status, code) -> None:
    client = make_client(load=GatedDetector)
    res = getattr(client, method)(url, **kwargs)
    _error(res, status, code)


def test_malformed_multipart_and_hostile_names(make_client) -> None:
    gated = GatedDetector()
    gated.gate.set()
    client = make_client(load=lambda: gated)
    boundary = "XyZ"
    ctype = {"content-type": f"multipart/form-data; boundary={boundary}"}

    def part(filename: bytes, data: bytes) -> bytes:
        disposition = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
        return f"--{boundary}\r\n".encode() + disposition + b"\r\n\r\n" + data

    cut = client.post("/v1/scans", content=part(b"a.mp4", clip_bytes(CLIP)[:10_000]), headers=ctype)
    _error(cut, 400, "bad_multipart")
    garbage = client.post(
        "/v1/scans", content=b"\x00" * 5000, headers={"content-type": "multipart/form-data; boundary=Q"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] in ("bad_multipart", "no_files")
    body = part(b"../../etc/\x07pass\twd.mp4", clip_bytes(CLIP)) + f"\r\n--{boundary}--\r\n".encode()
    res = client.post("/v1/scans", content=body, headers=ctype)
    assert res.status_code == 202, res.text
    job = res.json()["jobs"][0]
    assert job["filename"] == "passwd.mp4", "only the last path component, without control characters"
    assert _uploads(client) in ([], [f"{job['id']}.mp4"]), "stored under the job id, never the client's name"
