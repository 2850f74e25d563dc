"""Fixtures of the serve tests: a tiny real checkpoint, an app on a temporary data dir, helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serve tests need the serve extra: pip install -e '.[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from dfdetect.serve.app import ServeSettings, create_app  # noqa: E402
from dfdetect.types import Prediction, Status  # noqa: E402
from tests.conftest import media  # noqa: E402
from tests.infer.conftest import make_checkpoint  # noqa: E402

CLIP = "real/pcavs_Pose_Source_00067.mp4"  # 224 px face crop with speech: a quick real scan
NO_AUDIO_CLIP = "real/liveportrait_d0.mp4"
BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, randomly initialised, with small crops and 4 s reads (about a second a scan)."""
    return make_checkpoint(tmp_path_factory.mktemp("serve-model") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_detector(tiny_ckpt: Path):
    import dfdetect

    return dfdetect.load_detector(str(tiny_ckpt), device="cpu")


def clip_bytes(rel: str = CLIP) -> bytes:
    return media(rel).read_bytes()


def upload(client: TestClient, *files: tuple[str, bytes], headers: dict | None = None, **fields: str):
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return client.post("/v1/scans", files=parts, data=fields or None, headers=headers or {})


def wait_done(client: TestClient, job_id: str, timeout: float = 60.0, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/scans/{job_id}", headers=headers or {}).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {job}")


@pytest.fixture
def make_client(tmp_path: Path, tiny_detector) -> Iterator[Any]:
    """``make_client(load=None, **settings)`` -> a started TestClient (closed at teardown).

    Without ``load`` every worker shares the session's tiny real detector (loaded once).
    """
    clients: list[TestClient] = []

    def make(load: Any = None, **kwargs: Any) -> TestClient:
        kwargs.setdefault("explain", False)
        settings = ServeSettings(data_dir=tmp_path / f"data{len(clients)}", device="cpu", **kwargs)
        app = create_app(settings, load or (lambda: tiny_detector))
        client = TestClient(app, base_url=BASE_URL)  # a name the server answers to (Host check)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


class GatedDetector:
    """A stand-in detector whose scans wait for ``gate`` (to hold jobs in ``running`` on purpose)."""

    name, device, thresholds = "gated", "cpu", (0.35, 0.65)

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def scan(self, path: str, explain: bool = False, thumbnails: bool = False) -> Prediction:
        self.started.set()
        self.gate.wait(30)
        return Prediction(path=path, status=Status.OK, p_fake=0.5)
