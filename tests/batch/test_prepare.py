"""dfdetect prepare --ray-address: the same manifest, cache entries and report as the single-machine path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfdetect.batch.prepare import prepare_on_ray
from dfdetect.cli import main
from dfdetect.config import PrepareConfig
from dfdetect.data import cache
from dfdetect.data.prepare import prepare_source
from tests.conftest import media
from tests.data.dataset_trees import make_celebdf_tree

CONFIG = PrepareConfig(max_duration=2.0, fps=5.0, size=64, detect_every=3)


def _report(out: Path) -> dict[str, str]:
    lines = (out / "prepare_report.jsonl").read_text().splitlines()
    return {r["path"]: r["status"] for r in map(json.loads, lines)}


def _entries(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """Cache entry name -> its arrays (the metadata decoded)."""
    found = {}
    for path in sorted((out / "cache").rglob("*.npz")):
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["meta"] = json.loads(arrays["meta"].tobytes())
        found[str(path.relative_to(out))] = arrays
    return found


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A Celeb-DF v2 tree: real videos are a real talking-head clip, the fakes are not videos at all."""
    clip = media("real/pcavs_Pose_Source_00067.mp4").read_bytes()
    root = make_celebdf_tree(tmp_path_factory.mktemp("celebdf"), video_bytes=clip)
    for fake in (root / "Celeb-synthesis").glob("*.mp4"):
        fake.write_text("not a video\n")
    return root


def test_prepare_on_ray_matches_the_single_machine_path(ray_local, tree, tmp_path):
    local, spread = tmp_path / "local", tmp_path / "ray"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in every worker (of the process pool and of Ray): bit-identical results
    try:
        one = prepare_source("celebdf", tree, local, CONFIG, workers=1, limit=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    settings = ["--limit", "2", "--max-duration", "2", "--fps", "5", "--size", "64", "--detect-every", "3"]
    argv = ["prepare", "celebdf", str(tree), "--out", str(spread), "--ray-address", "local", "--workers", "2"]
    assert main([*argv, *settings, "--quiet"]) == 0
    assert (local / "manifest.csv").read_text() == (spread / "manifest.csv").read_text()
    assert _report(local) == _report(spread)
    assert sorted(_report(spread).values()) == ["ok", "unreadable"]  # a real video and a fake that is not one
    assert (one.done, len(one.failed)) == (1, 1)
    assert json.loads((spread / "prepare_config.json").read_text())["config"] == CONFIG.model_dump()
    a, b = _entries(local), _entries(spread)
    assert sorted(a) == sorted(b) and len(a) == 1
    for name, arrays in a.items():
        assert arrays["meta"] == b[name]["meta"]
        for key, value in arrays.items():
            if key != "meta":
                np.testing.assert_array_equal(value, b[name][key], err_msg=f"{name}: {key}")
    assert not list(spread.rglob("*.tmp*"))  # atomic writes left no temporary file

    # resume: entries up to date are skipped (no worker is started for them)
    ok = [p for p, status in _report(spread).items() if status == "ok"]
    again = prepare_on_ray(ok, spread, CONFIG, address="local", progress=False)
    assert (again.skipped, again.done, len(again.failed)) == (1, 0, 0)
    assert cache.read_entry(spread / "cache", ok[0]).faces
