"""Fixtures of the batch tests: one local Ray (2 CPUs) for the whole package, a tiny demo checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="the batch tests need the scale extra: pip install -e '.[scale]'")

from tests.infer.conftest import make_checkpoint  # noqa: E402


@pytest.fixture(scope="package")
def ray_local() -> Iterator[Any]:
    """A local Ray with 2 CPUs, started once for every batch test (start-up costs seconds)."""
    from dfdetect.batch.cluster import ray_session

    with ray_session("local", num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, randomly initialised, with small crops and 4 s reads (about a second a scan)."""
    return make_checkpoint(tmp_path_factory.mktemp("batch-model") / "tiny.pt")
