"""API keys stored hashed, per-key isolation and rate limits, local-only bind without keys."""

from __future__ import annotations

import pytest

from dfdetect.serve.auth import KeyFileError, RateLimiter, hash_key, load_keys, new_key
from tests.serve.conftest import CLIP, GatedDetector, clip_bytes, upload, wait_done


def test_key_file_stores_hashes_only(tmp_path) -> None:
    path = tmp_path / "keys.txt"
    alice = new_key(path, "alice")
    bob = new_key(path, "bob", rate_per_minute=5)
    text = path.read_text()
    assert alice not in text and bob not in text and hash_key(alice) in text
    assert path.stat().st_mode & 0o777 == 0o600
    keys = load_keys(path)
    assert keys[hash_key(alice)].name == "alice" and keys[hash_key(bob)].rate_per_minute == 5
    with pytest.raises(KeyFileError, match="already has a key named 'alice'"):
        new_key(path, "alice")
    with pytest.raises(KeyFileError, match="use 1-64 letters"):
        new_key(path, "no spaces")
    clear = tmp_path / "clear.txt"
    clear.write_text("carol dfd_plaintextkey\n")
    with pytest.raises(KeyFileError, match="keys are stored hashed"):
        load_keys(clear)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_keys(tmp_path / "missing.txt")


def test_new_key_after_a_last_line_without_newline_and_duplicate_names(tmp_path) -> None:
    path = tmp_path / "keys.txt"
    alice = new_key(path, "alice")
    path.write_text(path.read_text().rstrip("\n"))  # edited by hand: no final newline
    bob = new_key(path, "bob")
    keys = load_keys(path)
    assert (
        {k.name for k in keys.values()} == {"alice", "bob"}
        and hash_key(alice) in keys
        and hash_key(bob) in keys
    )
    twice = tmp_path / "twice.txt"
    twice.write_text(f"carol sha256:{'a' * 64}\ndave sha256:{'b' * 64}\ncarol sha256:{'c' * 64}\n")
    with pytest.raises(KeyFileError, match="twice.txt:3: the name 'carol' is already used on line 1"):
        load_keys(twice)


def test_requests_need_a_valid_key_and_see_only_their_jobs(make_client, tmp_path) -> None:
    path = tmp_path / "keys.txt"
    alice, bob = new_key(path, "alice"), new_key(path, "bob")
    gated = GatedDetector()
    gated.gate.set()
    client = make_client(load=lambda: gated, keys=load_keys(path))
    a, b = {"Authorization": f"Bearer {alice}"}, {"X-API-Key": bob}

    res = upload(client, ("a.mp4", clip_bytes(CLIP)))
    assert res.status_code == 401 and res.json()["error"]["code"] == "unauthorized"
    assert res.headers["www-authenticate"] == "Bearer"
    bad = client.get("/v1/scans", headers={"Authorization": "Bearer dfd_wrong"})
    assert bad.status_code == 401 and "not valid" in bad.json()["error"]["message"]
    assert client.get("/v1/models").status_code == 401
    assert client.get("/healthz").json()["auth"] is True, "health needs no key and says keys are on"

    job = upload(client, ("a.mp4", clip_bytes(CLIP)), headers=a).json()["jobs"][0]
    assert wait_done(client, job["id"], headers=a)["state"] == "done"
    assert client.get(f"/v1/scans/{job['id']}", headers=b).status_code == 404, "bob cannot see alice's job"
    assert client.delete(f"/v1/scans/{job['id']}", headers=b).status_code == 404
    assert client.get("/v1/scans", headers=b).json()["jobs"] == []
    assert [j["id"] for j in client.get("/v1/scans", headers=a).json()["jobs"]] == [job["id"]]


def test_token_bucket() -> None:
    limiter = RateLimiter(rate_per_minute=60, burst=2)
    assert limiter.take("k") == 0 and limiter.take("k") == 0
    wait = limiter.take("k")
    assert 0 < wait <= 1.0, "one token a second"
    assert limiter.take("other") == 0, "buckets are per key"
    assert RateLimiter(0).take("k", 100) == 0, "rate 0 disables the limit"


def test_cli_binds_locally_without_keys(monkeypatch, caplog, tmp_path) -> None:
    import argparse

    from dfdetect.cli import serve as cli_serve

    calls = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.update(kw, hosts=_hosts(app)))
    monkeypatch.setattr("dfdetect.load_detector", lambda *a, **k: GatedDetector())
    parser = argparse.ArgumentParser()
    cli_serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path), "--device", "cpu"])
    assert cli_serve.run(args) == 0
    assert calls["host"] == "127.0.0.1" and "binding to 127.0.0.1 instead of 0.0.0.0" in caplog.text
    assert calls["hosts"] == ("127.0.0.1", "localhost", "::1"), "the Host names a local server answers to"
    keys = tmp_path / "keys.txt"
    args = parser.parse_args(["serve", "--api-key-file", str(keys), "--new-key", "ops"])
    assert cli_serve.run(args) == 0 and load_keys(keys)
    args = parser.parse_args(
        ["serve", "--host", "0.0.0.0", "--api-key-file", str(keys), "--data-dir", str(tmp_path)]
    )
    assert cli_serve.run(args) == 0 and calls["host"] == "0.0.0.0"
    assert calls["hosts"] == ("*",) and "any Host header is accepted" in caplog.text
    args = parser.parse_args(
        ["serve", "--host", "0.0.0.0", "--api-key-file", str(keys), "--data-dir", str(tmp_path)]
        + ["--allowed-host", "dfd.example.org", "--scan-timeout", "30", "--max-request-mb", "64"]
    )
    assert cli_serve.run(args) == 0 and calls["hosts"] == ("127.0.0.1", "localhost", "::1", "dfd.example.org")


def _hosts(app) -> tuple[str, ...]:
    return app.state.service.settings.allowed_hosts
