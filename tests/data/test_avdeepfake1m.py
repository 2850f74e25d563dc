"""AV-Deepfake1M adapter: official subsets, modify types, fake segments, groups, the unlabelled test set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfdetect.data.manifest import read_manifest, write_manifest
from dfdetect.data.sources import DatasetLayoutError, SourceOptionError, scan_source
from dfdetect.data.splits import check_no_leak
from tests.data.localization_trees import AVDF1M_TEST, make_avdeepfake1m_tree


def _by_name(rows):
    return {"/".join(Path(r.path).parts[-3:]): r for r in rows}


def test_avdeepfake1m_rows(tmp_path):
    root = make_avdeepfake1m_tree(tmp_path)
    rows = scan_source("avdeepfake1m", root)
    by = _by_name(rows)
    assert len(rows) == 5 and {r.split for r in rows} == {"train", "val"}  # no labelled test set
    both = by["spk1/00001/fake_video_fake_audio.mp4"]
    assert (both.label, both.video_label, both.audio_label, both.method) == (1, 1, 1, "both_modified")
    assert both.segments == ((0.5, 1.0),) and both.dataset == "avdeepfake1m"
    assert Path(both.path) == root / "train/lrs3/spk1/00001/fake_video_fake_audio.mp4"
    audio = by["spk1/00001/real_video_fake_audio.mp4"]
    assert (audio.video_label, audio.audio_label, audio.method) == (0, 1, "audio_modified")
    visual = by["spk2/00001/fake_video_real_audio.mp4"]  # "visual-modified" in the metadata
    assert (visual.method, visual.split, visual.segments) == ("visual_modified", "val", ((1.0, 2.0),))
    real = by["spk1/00001/real.mp4"]
    assert (real.label, real.method, real.segments) == (0, "real", ())
    assert real.group == both.group == audio.group == "lrs3/spk1/00001/real"  # fakes share their original
    check_no_leak(rows)
    write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == sorted(rows, key=lambda r: r.path) == rows


def test_avdeepfake1m_test_subset_and_group_by_folder(tmp_path):
    root = make_avdeepfake1m_tree(tmp_path)
    rows = scan_source("avdeepfake1m", root, subsets="test")
    assert sorted("/".join(Path(r.path).parts[-4:]) for r in rows) == [f"lrs3/{f[5:]}" for f in AVDF1M_TEST]
    assert {(r.label, r.split, r.method, r.segments) for r in rows} == {(-1, "test", "unknown", None)}
    (root / "test_files.txt").unlink()
    assert len(scan_source("avdeepfake1m", root, subsets="test")) == 2  # the test/ folder is listed
    rows = scan_source("avdeepfake1m", root, group_by="folder", subsets="train,val")
    assert {r.group for r in rows} == {"lrs3/spk1/00001", "lrs3/spk2/00001"}


def test_avdeepfake1m_errors(tmp_path):
    root = make_avdeepfake1m_tree(tmp_path)
    with pytest.raises(SourceOptionError, match="group_by must be one of original, folder"):
        scan_source("avdeepfake1m", root, group_by="speaker")
    with pytest.raises(SourceOptionError, match="unknown split"):
        scan_source("avdeepfake1m", root, subsets="dev")
    with pytest.raises(DatasetLayoutError, match="train_metadata.json not found .* try ROOT="):
        scan_source("avdeepfake1m", tmp_path)
    entries = json.loads((root / "val_metadata.json").read_text())
    entries[0]["modify_type"] = "lip_sync"
    (root / "val_metadata.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetLayoutError, match="entry 0 .*modify_type must be one of real, visual_mod"):
        scan_source("avdeepfake1m", root)
