"""How an experiment uses a prepared source's splits: renames, group hold-out, a share of the fakes, and
the per-source manifests a run writes (what trained, what validated, what is held out)."""

from __future__ import annotations

from collections import Counter

from dfdetect.config import DataConfig, SourceConfig
from dfdetect.data.manifest import read_manifest, write_manifest
from dfdetect.train.run import source_rows, write_split_manifests
from tests.data.clips import row


def _source(tmp_path, **kw) -> SourceConfig:
    rows = [row(f"/d/real{i}.jpg", 0, "train") for i in range(200)]
    rows += [row(f"/d/fake{i}.jpg", 1, "train") for i in range(200)]
    rows += [row(f"/d/test{i}.jpg", i % 2, "val") for i in range(10)]
    write_manifest(rows, tmp_path / "images" / "manifest.csv")
    return SourceConfig(manifest=str(tmp_path / "images" / "manifest.csv"), cache=str(tmp_path), **kw)


def test_renames_hold_out_and_fake_share_split_by_group(tmp_path) -> None:
    src = _source(tmp_path, rename_splits={"val": "test"}, holdout=0.1, fake_share=0.25)
    train, val, test = (source_rows(src, s) for s in ("train", "val", "test"))
    assert len(test) == 10 and {r.path for r in test} == {f"/d/test{i}.jpg" for i in range(10)}
    assert 20 <= len(val) <= 60 and not {r.group for r in val} & {r.group for r in train}
    fakes, reals = sum(r.label for r in train), sum(1 - r.label for r in train)
    assert 0.15 * 200 < fakes < 0.35 * 200 and reals > 150  # a quarter of the train fakes stay
    assert source_rows(src, "train") == train  # the same on every run


def test_a_run_writes_each_sources_splits_with_the_left_out_fakes_marked(tmp_path) -> None:
    src = _source(tmp_path, rename_splits={"val": "test"}, holdout=0.1, fake_share=0.25)
    (path,) = write_split_manifests(DataConfig(sources=[src]), tmp_path / "run")
    assert path == tmp_path / "run" / "data" / "images.csv"
    written = Counter(r.split for r in read_manifest(path))
    assert written == Counter(
        {s: len(source_rows(src, s)) for s in ("train", "val", "test")}
        | {"unused": 410 - sum(len(source_rows(src, s)) for s in ("train", "val", "test"))}
    )
