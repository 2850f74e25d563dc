"""LAV-DF adapter, and its fake periods carried through manifest -> cache -> dataset segment labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.data import cache
from dfdetect.data.dataset import VideoDataset
from dfdetect.data.manifest import ManifestError, read_manifest, write_manifest
from dfdetect.data.prepare import prepare_source
from dfdetect.data.sources import DatasetLayoutError, SourceOptionError, scan_source
from tests.conftest import media
from tests.data.clips import DEFAULT_SOURCE
from tests.data.localization_trees import make_lavdf_tree

PRE = PreprocessConfig(fps=5.0, size=64, clip_frames=8, segment_seconds=0.4, mouth_size=32)  # 4 x 0.4 s


def _by_name(rows):
    return {Path(r.path).parent.name + "/" + Path(r.path).name: r for r in rows}


def test_lavdf_rows_labels_segments_splits_groups(tmp_path, caplog):
    root = make_lavdf_tree(tmp_path)
    with caplog.at_level("WARNING"):
        rows = _by_name(scan_source("lavdf", root))
    assert "1 listed videos are missing" in caplog.text and "test/000006.mp4" not in rows
    assert len(rows) == 7
    fake = rows["train/000001.mp4"]
    assert (fake.label, fake.video_label, fake.audio_label, fake.method) == (1, 1, 0, "visual_modified")
    assert fake.segments == ((1.0, 1.6),) and fake.dataset == "lavdf"
    both = rows["dev/000003.mp4"]
    assert both.method == "both_modified" and both.split == "val"  # dev -> val
    assert both.segments == ((0.4, 0.8), (2.0, 2.4))
    assert rows["test/000005.mp4"].method == "audio_modified"
    real = rows["train/000000.mp4"]
    assert (real.label, real.method, real.segments) == (0, "real", ())
    assert (real.video_label, real.audio_label) == (0, 0)
    # a fake shares its original's group; a fake in another split than its original gets its own group
    assert fake.group == real.group == "train/000000"
    assert rows["test/000007.mp4"].group == "test/train/000000"
    assert {r.split for r in rows.values()} == {"train", "val", "test"}


def test_lavdf_options_and_errors(tmp_path):
    root = make_lavdf_tree(tmp_path)
    assert {r.split for r in scan_source("lavdf", root, splits="dev")} == {"val"}
    with pytest.raises(SourceOptionError, match="unknown split"):
        scan_source("lavdf", root, splits="val")  # LAV-DF calls it dev
    with pytest.raises(DatasetLayoutError, match="metadata.json not found .* try ROOT="):
        scan_source("lavdf", tmp_path)  # one level too high: the message names the right ROOT
    (root / "metadata.json").rename(root / "metadata.min.json")
    assert len(scan_source("lavdf", root)) == 7  # the minimal metadata file is found too
    (root / "metadata.min.json").write_text('{"file": 1}')
    with pytest.raises(DatasetLayoutError, match="expected the LAV-DF metadata, a JSON list"):
        scan_source("lavdf", root)
    (root / "metadata.min.json").write_text('[{"file": "train/000001.mp4", "fake_periods": [[1]]}]')
    with pytest.raises(DatasetLayoutError, match="entry 0 .* expected fake periods"):
        scan_source("lavdf", root)


def test_segments_column_round_trip_and_errors(tmp_path):
    rows = scan_source("lavdf", make_lavdf_tree(tmp_path))
    write_manifest(rows, tmp_path / "m.csv")
    assert read_manifest(tmp_path / "m.csv") == rows
    text = (tmp_path / "m.csv").read_text()
    assert '"[[1.0, 1.6]]"' in text and ",segments," in text.splitlines()[0]
    bad = text.replace("[[1.0, 1.6]]", "[[1.6, 1.0]]")
    (tmp_path / "bad.csv").write_text(bad)
    with pytest.raises(ManifestError, match="bad segments .*0 <= start <= end"):
        read_manifest(tmp_path / "bad.csv")


def _expected(t0: float, n_real: int, spans) -> list[float]:
    """Segment labels computed independently: 0.4 s segments of frames every 0.2 s from t0."""
    out = []
    for k in range(4):
        first, end = 2 * k, min(2 * k + 2, n_real)
        if first >= end:
            out.append(-1.0)
            continue
        a, b = t0 + 0.2 * first, t0 + 0.2 * end
        out.append(float(any(min(b, s1) - max(a, s0) > 1e-6 for s0, s1 in spans)))
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The train split of a LAV-DF tree whose videos are a real talking-head clip, prepared for real."""
    tmp = tmp_path_factory.mktemp("lavdf")
    root = make_lavdf_tree(tmp, media(DEFAULT_SOURCE))
    config = PrepareConfig(max_duration=2.4, fps=5.0, size=64, detect_every=5)
    prepare_source("lavdf", root, tmp / "out", config, workers=1, progress=False, splits="train")
    return tmp / "out"


def test_prepare_carries_segments_to_manifest_cache_and_samples(prepared):
    rows = read_manifest(prepared / "manifest.csv")
    fake = next(r for r in rows if r.label == 1)
    assert fake.segments == ((1.0, 1.6),) and len(rows) == 2
    meta = cache.read_meta(cache.entry_path(prepared / "cache", fake.path))
    assert meta["labels"] == {"segments": [[1.0, 1.6]]}
    ds = VideoDataset(rows, prepared / "cache", PRE, windows_per_video=3)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        spans = fake.segments if s["meta"]["path"] == fake.path else ()
        want = _expected(s["meta"]["t0"], s["meta"]["n_real"], spans)
        assert s["segment_labels"].tolist() == want, s["meta"]
        assert s["label"].item() == float(1.0 in want)  # a window that misses the fake period is real
        seen.add(tuple(want))
    assert any(1.0 in w and 0.0 in w for w in seen)  # some window is partly fake: labels say where
    assert any(1.0 not in w for w in seen)


def test_dataset_falls_back_to_the_segments_in_the_cache(prepared):
    rows = read_manifest(prepared / "manifest.csv")
    bare = [dataclasses.replace(r, segments=None) for r in rows]  # e.g. a manifest edited by hand
    a = VideoDataset(rows, prepared / "cache", PRE, windows_per_video=3)
    b = VideoDataset(bare, prepared / "cache", PRE, windows_per_video=3)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i]["segment_labels"].numpy(), b[i]["segment_labels"].numpy())
