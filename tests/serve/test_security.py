"""Hostile pages and clients (issue 24): Host and Origin checks, bounded forms, one error path, headers,
private files, opaque cursors."""

from __future__ import annotations

import stat

import pytest

from dfdetect.serve.auth import load_keys, new_key
from dfdetect.serve.uploads import UploadLimits
from tests.serve.conftest import CLIP, GatedDetector, clip_bytes, upload

EVIL = "https://evil.example"
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + bytes(64)


def _error(res, status: int, code: str) -> dict:
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert err == {"status": status, "code": code, "message": err["message"]} and err["message"]
    assert res.headers["x-content-type-options"] == "nosniff", "refusals carry the security headers too"
    return err


def _keyed(make_client, tmp_path, **kwargs):
    path = tmp_path / "keys.txt"
    alice, bob = new_key(path, "alice"), new_key(path, "bob")
    client = make_client(keys=load_keys(path), **kwargs)
    return client, {"X-API-Key": alice}, {"X-API-Key": bob}


@pytest.mark.parametrize("keyed", [False, True])
def test_a_foreign_host_name_is_refused(make_client, tmp_path, keyed: bool) -> None:
    """DNS rebinding: a page on attacker.example whose name now points at 127.0.0.1 reads nothing."""
    gated = GatedDetector()
    gated.gate.set()
    if keyed:
        client, key, _ = _keyed(make_client, tmp_path, load=lambda: gated)
    else:
        client, key = make_client(load=lambda: gated), {}
    assert upload(client, ("a.mp4", clip_bytes(CLIP)), headers=key).status_code == 202
    for host in ("attacker.example:8000", "attacker.example", "127.0.0.1.attacker.example", ""):
        res = client.get("/v1/scans", headers={**key, "host": host})
        err = _error(res, 400, "bad_host")
        assert "--allowed-host" in err["message"]
        assert client.delete("/v1/scans/" + "a" * 32, headers={**key, "host": host}).status_code == 400
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST."):
        assert client.get("/v1/scans", headers={**key, "host": host}).status_code == 200, host
    metrics = client.get("/metrics").text
    assert 'dfdetect_rejected_total{code="bad_host"} 8' in metrics
    assert 'dfdetect_http_requests_total{method="GET",code="400"} 4' in metrics


@pytest.mark.parametrize("keyed", [False, True])
def test_pages_of_other_origins_cannot_upload_or_delete(make_client, tmp_path, keyed: bool) -> None:
    gated = GatedDetector()
    gated.gate.set()
    if keyed:
        client, key, _ = _keyed(make_client, tmp_path, load=lambda: gated)
    else:
        client, key = make_client(load=lambda: gated), {}
    data = clip_bytes(CLIP)
    for hostile in ({"Origin": EVIL}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:9999"}):
        err = _error(upload(client, ("a.mp4", data), headers={**key, **hostile}), 403, "cross_origin")
        assert "--cors-origin" in err["message"]
    _error(
        upload(client, ("a.mp4", data), headers={**key, "Sec-Fetch-Site": "cross-site"}), 403, "cross_origin"
    )
    assert client.get("/v1/scans", headers=key).json()["jobs"] == [], "nothing was accepted"
    same = {**key, "Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    job = upload(client, ("a.mp4", data), headers=same).json()["jobs"][0]  # the page itself
    _error(client.delete(f"/v1/scans/{job['id']}", headers={**key, "Origin": EVIL}), 403, "cross_origin")
    assert client.get(f"/v1/scans/{job['id']}", headers={**key, "Origin": EVIL}).status_code == 200
    assert client.delete(f"/v1/scans/{job['id']}", headers=same).status_code == 200

    keys = client.app.state.service.settings.keys
    opened = make_client(load=GatedDetector, cors_origins=(EVIL,), keys=keys)
    res = upload(opened, ("a.mp4", data), headers={**key, "Origin": EVIL})
    assert res.status_code == 202 and res.headers["access-control-allow-origin"] == EVIL


def test_a_refused_cors_preflight_is_a_json_error(make_client) -> None:
    origin = "https://tools.example.org"
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    closed = make_client(load=GatedDetector)
    _error(closed.options("/v1/scans", headers={"Origin": origin, **ask}), 403, "cross_origin")
    opened = make_client(load=GatedDetector, cors_origins=(origin,))
    _error(opened.options("/v1/scans", headers={"Origin": EVIL, **ask}), 403, "cross_origin")
    put = {"Origin": origin, "Access-Control-Request-Method": "PUT"}
    _error(opened.options("/v1/scans", headers=put), 403, "cors_refused")
    odd = {"Origin": origin, **ask, "Access-Control-Request-Headers": "x-forwarded-for"}
    _error(opened.options("/v1/scans", headers=odd), 403, "cors_refused")
    ok = opened.options("/v1/scans", headers={"Origin": origin, **ask})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == origin


def test_the_page_has_one_set_of_headers_at_both_addresses(make_client) -> None:
    client = make_client(load=GatedDetector)
    root, static = client.get("/"), client.get("/static/index.html")
    assert root.status_code == static.status_code == 200 and root.text == static.text
    for res in (root, static):
        csp = res.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert res.headers["x-frame-options"] == "DENY" and res.headers["x-content-type-options"] == "nosniff"


def test_an_unexpected_error_is_a_counted_json_500_with_the_headers(make_client, monkeypatch) -> None:
    client = make_client(load=GatedDetector)

    def broken() -> dict:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(client.app.state.service.store, "counts", broken)
    res = client.get("/healthz")
    err = _error(res, 500, "internal")
    assert "disk on fire" not in err["message"], "internals stay in the server's log"
    monkeypatch.undo()
    metrics = client.get("/metrics").text
    assert 'dfdetect_http_requests_total{method="GET",code="500"} 1' in metrics
    assert 'dfdetect_rejected_total{code="internal"} 1' in metrics


BAD_FIELDS = [
    ({"uncertainty": "²"}, 400, "bad_field"),  # isdigit() says yes, int() says no: was a 500
    ({"uncertainty": "٣"}, 400, "bad_field"),
    ({"uncertainty": "0003"}, 400, "bad_field"),
    ({"uncertainty": "1e3"}, 400, "bad_field"),
    ({"explain": "\u00ff"}, 400, "bad_field"),
    ({"comment": "hello"}, 400, "bad_field"),
    ({"explain": "x" * 2000}, 400, "field_too_large"),
]


@pytest.mark.parametrize(("fields", "status", "code"), BAD_FIELDS)
def test_every_bad_field_is_a_4xx(make_client, fields, status, code) -> None:
    client = make_client(load=GatedDetector)
    _error(client.post("/v1/scans", files={"file": ("a.mp4", MP4_HEAD)}, data=fields), status, code)
    assert list(client.app.state.service.uploads.iterdir()) == []


def test_form_fields_and_the_whole_request_are_bounded(make_client) -> None:
    """54,831 small fields once grew the server by 62 MiB; now the 9th field ends the request."""
    flood = [("explain", "true")] * 10_000
    parts = [("file", ("a.mp4", MP4_HEAD, "video/mp4")), *((k, (None, v)) for k, v in flood)]
    err = _error(make_client(load=GatedDetector).post("/v1/scans", files=parts), 413, "too_many_fields")
    assert "at most 8" in err["message"]
    client = make_client(
        load=GatedDetector, limits=UploadLimits(max_file_bytes=40_000, max_request_bytes=60_000)
    )
    part = clip_bytes(CLIP)[:35_000]
    err = _error(upload(client, ("a.mp4", part), ("b.mp4", part)), 413, "too_large")
    assert "larger than" in err["message"], "two files under the per-file limit, over the request limit"
    assert list(client.app.state.service.uploads.iterdir()) == []
    assert upload(client, ("a.mp4", part)).status_code == 202


def test_data_folder_database_and_uploads_are_private(make_client, tmp_path) -> None:
    gated = GatedDetector()
    client = make_client(load=lambda: gated)
    service = client.app.state.service
    job = upload(client, ("a.mp4", clip_bytes(CLIP))).json()["jobs"][0]
    assert gated.started.wait(10)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(service.uploads) == 0o700 and mode(service.uploads.parent) == 0o700
    db = service.store.path
    assert [mode(p) for p in (db, db.with_name(db.name + "-wal"))] == [0o600, 0o600]
    (stored,) = service.uploads.iterdir()
    assert stored.name.startswith(job["id"]) and mode(stored) == 0o600
    gated.gate.set()


def test_the_next_cursor_is_opaque_and_per_key(make_client, tmp_path) -> None:
    gated = GatedDetector()
    gated.gate.set()
    client, alice, bob = _keyed(make_client, tmp_path, load=lambda: gated)
    data = clip_bytes(CLIP)[:20_000]
    mine = [upload(client, (f"{i}.mp4", data), headers=alice).json()["jobs"][0]["id"] for i in range(3)]
    theirs = upload(client, ("b.mp4", data), headers=bob).json()["jobs"][0]["id"]
    page = client.get("/v1/scans", params={"limit": 2}, headers=alice).json()
    assert [j["id"] for j in page["jobs"]] == mine[:0:-1]
    assert page["next"] == mine[1], "the cursor is the caller's own last job id, not a global sequence"
    rest = client.get("/v1/scans", params={"limit": 2, "before": page["next"]}, headers=alice).json()
    assert [j["id"] for j in rest["jobs"]] == [mine[0]] and rest["next"] is None
    for who, cursor in ((alice, theirs), (bob, mine[1]), (bob, "5"), (alice, "2")):
        _error(client.get("/v1/scans", params={"before": cursor}, headers=who), 400, "bad_cursor")
