"""dfdetect cache pack|unpack: a run's train/val cache entries packed small for a GPU machine."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from dfdetect.cli import main
from dfdetect.data import cache
from dfdetect.data.manifest import read_manifest, write_manifest


def test_pack_keeps_train_and_val_entries_and_every_array_but_the_crops_exactly(
    demo_data: Path, tmp_path: Path
) -> None:
    here = tmp_path / "here"
    shutil.copytree(demo_data, here / "demo")
    rows = read_manifest(here / "demo" / "manifest.csv")
    held_out = rows[-1]
    split_rows = [r if r is not held_out else replace(r, split="test") for r in rows]  # a test row
    write_manifest(split_rows, tmp_path / "run" / "data" / "demo.csv")

    archive = tmp_path / "caches.tar.gz"
    common = ["--prepared", str(here), "--out", str(archive), "--max-frames", "3"]
    assert main(["cache", "pack", "--run", str(tmp_path / "run"), *common]) == 0  # sources: the run's own
    there = tmp_path / "there"
    assert main(["cache", "unpack", str(archive), "--prepared", str(there)]) == 0
    assert not list(there.rglob("*.tmp"))

    assert (there / "demo" / "manifest.csv").read_bytes() == (here / "demo" / "manifest.csv").read_bytes()
    assert not cache.has_entry(there / "demo" / "cache", held_out.path), "held-out entries never travel"
    for row in rows[:-1]:
        original = cache.entry_path(here / "demo" / "cache", row.path)
        moved = cache.entry_path(there / "demo" / "cache", row.path)
        with np.load(original) as a, np.load(moved) as b:
            assert set(a.files) == set(b.files)
            n = {name.split("_")[0]: min(3, len(a[name])) for name in a.files if name.endswith("_timestamps")}
            for name in a.files:
                x, y = a[name], b[name]
                track = name.split("_")[0]
                if track in n and len(x) == len(a[f"{track}_timestamps"]):
                    x = x[: n[track]]  # every per-frame array of a track is cut alike
                if name.endswith("_crops"):
                    assert x.shape == y.shape and np.abs(x.astype(int) - y).mean() < 4  # JPEG 90
                else:
                    np.testing.assert_array_equal(x, y, err_msg=name)
        clip = cache.read_entry(there / "demo" / "cache", row.path)  # readable as an ordinary entry
        assert all(len(face.track.timestamps) <= 3 for face in clip.faces)


def test_pack_of_a_folder_that_is_no_run_and_a_hostile_archive_are_refused(tmp_path: Path, capsys) -> None:
    import io
    import tarfile

    assert main(["cache", "pack", "--run", str(tmp_path), "--out", str(tmp_path / "a.tar.gz")]) == 2
    assert "no split manifests" in capsys.readouterr().err
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    assert main(["cache", "unpack", str(evil), "--prepared", str(tmp_path / "p")]) == 2
    assert "not a packed cache" in capsys.readouterr().err and not (tmp_path / "outside.txt").exists()
