"""Every route of the service, with the tiny real model scanning real clips."""

from __future__ import annotations

import re
import time

from tests.serve.conftest import CLIP, NO_AUDIO_CLIP, clip_bytes, upload, wait_done


def test_scan_lifecycle_on_a_real_clip(make_client) -> None:
    client = make_client()
    res = upload(client, ("talking head.mp4", clip_bytes(CLIP)))
    assert res.status_code == 202, res.text
    (job,) = res.json()["jobs"]
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"]) and job["state"] in ("queued", "running")
    assert job["filename"] == "talking head.mp4" and job["media_kind"] == "video"

    done = wait_done(client, job["id"])
    assert done["state"] == "done" and done["attempts"] == 1 and done["progress"] == 1.0
    pred = done["prediction"]
    assert pred["status"] in ("ok", "no_audio") and 0.0 <= pred["p_fake"] <= 1.0
    assert pred["verdict"] in ("real", "fake", "uncertain") and done["verdict"] == pred["verdict"]
    assert pred["path"] == "talking head.mp4", "the server's file path must never be shown"
    assert pred["tracks"] and pred["timeline"], "a real talking head gives face tracks and a timeline"
    assert pred["extras"]["thumbnails"], "thumbnails feed the web page"

    report = client.get(f"/v1/scans/{job['id']}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "talking head.mp4" in report.text and "<script" not in report.text
    assert "default-src 'none'" in report.headers["content-security-policy"]

    listed = client.get("/v1/scans").json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]] and "prediction" not in listed["jobs"][0]
    assert listed["jobs"][0]["p_fake"] == pred["p_fake"]
    assert client.get("/v1/scans", params={"state": "queued"}).json()["jobs"] == []

    assert client.delete(f"/v1/scans/{job['id']}").json() == {"deleted": job["id"], "state": "done"}
    gone = client.get(f"/v1/scans/{job['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert client.delete(f"/v1/scans/{job['id']}").status_code == 404


def test_many_files_in_one_request_and_explanations(make_client) -> None:
    client = make_client()
    res = upload(client, ("a.mp4", clip_bytes(CLIP)), ("b.mp4", clip_bytes(NO_AUDIO_CLIP)), explain="true")
    assert res.status_code == 202
    jobs = res.json()["jobs"]
    assert [j["filename"] for j in jobs] == ["a.mp4", "b.mp4"] and all(j["explain"] for j in jobs)
    a, b = (wait_done(client, j["id"]) for j in jobs)
    assert b["prediction"]["status"] == "no_audio", "liveportrait_d0 has no audio stream"
    frames = a["prediction"]["extras"]["explain"]["frames"]
    assert frames and frames[0]["crop"].startswith("data:image/jpeg;base64,")
    page = client.get("/v1/scans", params={"limit": 1})
    assert len(page.json()["jobs"]) == 1 and page.json()["next"] is not None
    rest = client.get("/v1/scans", params={"limit": 1, "before": page.json()["next"]}).json()
    assert rest["jobs"][0]["id"] == jobs[0]["id"]


def test_models_health_metrics_page_and_docs(make_client, tiny_ckpt) -> None:
    client = make_client()
    models = client.get("/v1/models").json()
    assert models["loaded"]["name"] == tiny_ckpt.stem and models["loaded"]["thresholds"] == [0.35, 0.65]
    assert isinstance(models["available"], list)
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["auth"] is False and health["workers"] == 1

    done = wait_done(client, upload(client, ("x.mp4", clip_bytes(NO_AUDIO_CLIP))).json()["jobs"][0]["id"])
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert "dfdetect_queue_length 0" in text
    assert f'dfdetect_scans_total{{status="{done["prediction"]["status"]}"}} 1' in text
    assert 'dfdetect_scan_seconds_bucket{le="+Inf"} 1' in text and "dfdetect_job_seconds_count 1" in text
    assert 'dfdetect_http_requests_total{method="POST",code="202"} 1' in text

    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/v1/scans/{job_id}/report"]
    assert client.get("/docs").status_code == 200


def test_report_of_an_unfinished_or_failed_job_is_a_clear_409(make_client) -> None:
    from tests.serve.conftest import GatedDetector

    gated = GatedDetector()
    client = make_client(load=lambda: gated)
    job = upload(client, ("a.mp4", clip_bytes())).json()["jobs"][0]
    assert gated.started.wait(10)
    running = client.get(f"/v1/scans/{job['id']}").json()
    assert running["state"] == "running" and 0.0 <= running["progress"] < 1.0 and "elapsed" in running
    res = client.get(f"/v1/scans/{job['id']}/report")
    assert res.status_code == 409 and res.json()["error"]["code"] == "not_ready"
    gated.gate.set()
    assert wait_done(client, job["id"])["state"] == "done"


def test_retention_deletes_finished_jobs_and_their_files(make_client) -> None:
    from tests.serve.conftest import GatedDetector

    gated = GatedDetector()
    gated.gate.set()
    client = make_client(load=lambda: gated, retention_s=1.5)
    service = client.app.state.service
    job = upload(client, ("a.mp4", clip_bytes())).json()["jobs"][0]
    assert wait_done(client, job["id"])["state"] == "done"
    time.sleep(1.6)
    assert service.purge_expired() in (0, 1)  # the janitor thread (every second here) may be first
    assert client.get(f"/v1/scans/{job['id']}").status_code == 404
    assert list(service.uploads.iterdir()) == []


def test_cors_is_off_unless_an_origin_is_allowed(make_client) -> None:
    from tests.serve.conftest import GatedDetector

    origin = {"Origin": "https://tools.example.org"}
    closed = make_client(load=GatedDetector).get("/v1/models", headers=origin)
    assert closed.status_code == 200 and "access-control-allow-origin" not in closed.headers
    opened = make_client(load=GatedDetector, cors_origins=("https://tools.example.org",))
    res = opened.get("/v1/models", headers=origin)
    assert res.headers["access-control-allow-origin"] == "https://tools.example.org"
