"""Dataset adapters on tiny trees in the official layouts (zero-byte videos: adapters never decode)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dfdetect.data.manifest import SPLITS, read_manifest, write_manifest
from dfdetect.data.sources import (
    SOURCES,
    DatasetLayoutError,
    SourceOptionError,
    available_sources,
    scan_source,
)
from dfdetect.data.splits import check_no_leak
from tests.data.dataset_trees import (
    CELEBDF_FAKE,
    CELEBDF_REAL,
    CELEBDF_YOUTUBE,
    DFDC_PARTS,
    DFDC_TEST,
    FAVC_IDS,
    FFPP_DFD_FAKES,
    FFPP_METHODS,
    FFPP_SPLITS,
    make_celebdf_tree,
    make_dfdc_tree,
    make_fakeavceleb_tree,
    make_ffpp_tree,
    make_folder_tree,
    touch,
)


def by_name(rows):
    return {Path(r.path).stem: r for r in rows}


def test_all_sources_registered():
    names = ["avdeepfake1m", "catalog", "celebdf", "dfdc", "fakeavceleb", "ffpp", "folder", "lavdf"]
    assert available_sources() == names
    assert "ffpp" in SOURCES


# ---------------------------------------------------------------- FaceForensics++


def test_ffpp_counts_labels_methods_and_official_splits(tmp_path):
    root = make_ffpp_tree(tmp_path / "ffpp")
    rows = scan_source("ffpp", root)
    assert [r.path for r in rows] == sorted(r.path for r in rows)
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in rows)
    methods = Counter(r.method for r in rows)
    # 14 youtube reals + 4 actor reals; 7 pairs x 2 fakes per method; 3 DFD fakes
    assert methods == {"real": 18, **{m: 14 for m in FFPP_METHODS}, "DeepFakeDetection": len(FFPP_DFD_FAKES)}
    assert {r.compression for r in rows} == {"c23"} and {r.dataset for r in rows} == {"ffpp"}
    assert all(r.label == (r.method != "real") for r in rows)
    yt = {n: r for n, r in by_name(rows).items() if "__" not in n}
    for split, pairs in FFPP_SPLITS.items():
        for a, b in pairs:
            group = f"{a}_{b}"
            for name in (a, b, f"{a}_{b}", f"{b}_{a}"):
                assert yt[name].split == split and yt[name].group == group, name
    # the pair outside the official lists is assigned whole, to train or val only (test is official)
    assert yt["012"].group == yt["013_012"].group == "012_013"
    assert yt["012"].split == yt["013"].split == yt["012_013"].split in ("train", "val")
    check_no_leak(rows)


def test_ffpp_deepfakedetection_actors_have_their_own_groups(tmp_path):
    rows = scan_source("ffpp", make_ffpp_tree(tmp_path))
    named = by_name(rows)
    assert named["01__exit_phone_room"].method == "real" and named["01__exit_phone_room"].label == 0
    assert named["01__kitchen_pan"].group == named["01_02__exit_phone_room__YVGY8LOK"].group == "actor01"
    assert named["03_01__kitchen_pan__A"].group == "actor03"
    assert not {r.group for r in rows if "actor" in r.group} & {r.group for r in rows if "__" not in r.path}


def test_ffpp_compressions_raw_is_c0_and_methods_filter(tmp_path):
    root = make_ffpp_tree(tmp_path, compressions=("raw", "c40"))
    rows = scan_source("ffpp", root, compressions="raw,c40", methods=["deepfakes"])
    assert Counter(r.compression for r in rows) == {"c0": 14 + 14, "c40": 14 + 14}
    assert {r.method for r in rows} == {"real", "Deepfakes"}  # no DFD fakes, no actor reals
    assert all(Path(r.path).parts[-3] in ("raw", "c40") for r in rows)
    with pytest.raises(DatasetLayoutError, match="no videos found .* c23"):
        scan_source("ffpp", root)  # default c23 is not there
    with pytest.raises(SourceOptionError, match="c0 \\(raw\\), c23 or c40"):
        scan_source("ffpp", root, compressions="c99")
    with pytest.raises(SourceOptionError, match="method 'DeepFaceLab' not found"):
        scan_source("ffpp", root, methods="DeepFaceLab")


def test_ffpp_without_official_splits_and_with_splits_dir(tmp_path):
    root = make_ffpp_tree(tmp_path / "ffpp", splits=False, actors=False)
    rows = scan_source("ffpp", root, seed=3)
    named = by_name(rows)
    assert named["000"].group == named["001_000"].group == "000_001"  # pairs still found from fakes
    assert {r.split for r in rows} <= set(SPLITS)
    check_no_leak(rows)
    splits_dir = tmp_path / "official"
    splits_dir.mkdir()
    for split, pairs in FFPP_SPLITS.items():
        (splits_dir / f"{split}.json").write_text(json.dumps(pairs))
    rows = by_name(scan_source("ffpp", root, splits_dir=splits_dir))
    assert rows["010"].split == rows["011_010"].split == "test"
    (splits_dir / "val.json").write_text('{"not": "pairs"}')
    with pytest.raises(DatasetLayoutError, match="val.json: expected a JSON list of \\[target, source\\]"):
        scan_source("ffpp", root, splits_dir=splits_dir)
    (splits_dir / "val.json").unlink()
    with pytest.raises(DatasetLayoutError, match="val.json"):
        scan_source("ffpp", root, splits_dir=splits_dir)


def test_ffpp_wrong_root_says_what_and_where(tmp_path):
    root = make_ffpp_tree(tmp_path / "datasets" / "FaceForensics++", actors=False)
    with pytest.raises(DatasetLayoutError) as e:
        scan_source("ffpp", tmp_path / "datasets")
    msg = str(e.value)
    assert f"original_sequences not found under {tmp_path / 'datasets'}" in msg
    assert "point ROOT at the FaceForensics++ folder that holds original_sequences/" in msg
    assert f"try ROOT={root}" in msg
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        scan_source("ffpp", tmp_path / "nope")


# ---------------------------------------------------------------- Celeb-DF v2


def test_celebdf_counts_official_test_list_and_identity_groups(tmp_path):
    root = make_celebdf_tree(tmp_path)
    rows = scan_source("celebdf", root)
    named = by_name(rows)
    assert len(rows) == len(CELEBDF_REAL) + len(CELEBDF_FAKE) + len(CELEBDF_YOUTUBE)
    assert Counter(r.label for r in rows) == {0: 24, 1: 6}
    assert {r.method for r in rows} == {"real", "celeb-synthesis"}
    # the list marks reals with 1 and fakes with 0: dfdetect labels are the other way round
    test = {n for n, r in named.items() if r.split == "test"}
    assert test == {"00000", "00001", "id0_0000", "id0_id1_0000"}
    assert named["00000"].label == 0 and named["id0_id1_0000"].label == 1
    # a fake idX_idY joins identities idX and idY: one group, one split
    assert named["id2_0000"].group == named["id3_0001"].group == named["id2_id3_0000"].group == "id2"
    assert named["id1_0002"].group == named["id1_id0_0001"].group == named["id0_0001"].group == "id0"
    assert named["id0_0000"].group == "test/id0" and named["00000"].group.startswith("test/")
    assert {r.split for r in rows if r.split != "test"} <= {"train", "val"}
    check_no_leak(rows)


def test_celebdf_identity_split_without_official_list(tmp_path):
    root = make_celebdf_tree(tmp_path, test_list=False)
    rows = scan_source("celebdf", root, val=0.2, test=0.3, seed=1)
    assert not any(r.group.startswith("test/") for r in rows)
    splits = {g: {r.split for r in rows if r.group == g} for g in {r.group for r in rows}}
    assert all(len(s) == 1 for s in splits.values())
    assert {r.split for r in rows} == {"train", "val", "test"}
    ignored = scan_source("celebdf", make_celebdf_tree(tmp_path / "b"), official_test="false")
    assert not any(r.group.startswith("test/") for r in ignored)


def test_celebdf_bad_list_and_wrong_root(tmp_path):
    root = make_celebdf_tree(tmp_path / "Celeb-DF-v2")
    (root / "List_of_testing_videos.txt").write_text("YouTube-real/00000.mp4\n")
    with pytest.raises(DatasetLayoutError, match=r"List_of_testing_videos.txt:1: expected '<1 for real"):
        scan_source("celebdf", root)
    with pytest.raises(DatasetLayoutError, match="Celeb-synthesis not found under .*Celeb-real/") as e:
        scan_source("celebdf", tmp_path)
    assert f"try ROOT={root}" in str(e.value)
    with pytest.raises(DatasetLayoutError, match="test list .*missing.txt not found"):
        scan_source("celebdf", root, test_list=tmp_path / "missing.txt")


# ---------------------------------------------------------------- DFDC


def test_dfdc_metadata_groups_and_public_test_set(tmp_path):
    rows = scan_source("dfdc", make_dfdc_tree(tmp_path))
    named = by_name(rows)
    assert len(rows) == DFDC_PARTS * 6 + len(DFDC_TEST)
    assert named["p1fake01"].label == 1 and named["p1fake01"].group == named["p1real0"].group == "p1real0"
    assert named["p1real0"].label == 0 and named["p1real0"].method == "real"
    assert {n for n, r in named.items() if r.split == "test"} == {Path(n).stem for n in DFDC_TEST}
    assert [named[Path(n).stem].label for n in DFDC_TEST] == list(DFDC_TEST.values())
    assert {r.split for r in rows if not r.group.startswith("test/")} <= {"train", "val"}
    check_no_leak(rows)


def test_dfdc_split_by_part_and_single_part_root(tmp_path):
    root = make_dfdc_tree(tmp_path, test_set=False)
    rows = scan_source("dfdc", root, val_parts="1", test_parts=[2])
    parts = {r.split: {Path(x.path).parent.name for x in rows if x.split == r.split} for r in rows}
    assert parts == {
        "train": {"dfdc_train_part_0"},
        "val": {"dfdc_train_part_1"},
        "test": {"dfdc_train_part_2"},
    }
    one = scan_source("dfdc", root / "dfdc_train_part_2")
    assert len(one) == 6 and {Path(r.path).parent.name for r in one} == {"dfdc_train_part_2"}


def test_dfdc_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="dfdc_train_part_0/metadata.json not found under"):
        scan_source("dfdc", tmp_path)
    root = make_dfdc_tree(tmp_path / "dfdc", test_set=False)
    (root / "dfdc_train_part_0/metadata.json").write_text('{"a.mp4": {"label": "MAYBE"}}')
    with pytest.raises(DatasetLayoutError, match="metadata.json: expected the DFDC metadata format"):
        scan_source("dfdc", root)
    with pytest.raises(SourceOptionError, match="val_parts must be integers"):
        scan_source("dfdc", root, val_parts="one")


# ---------------------------------------------------------------- FakeAVCeleb


def test_fakeavceleb_modality_labels_categories_methods_groups(tmp_path):
    rows = scan_source("fakeavceleb", make_fakeavceleb_tree(tmp_path / "FakeAVCeleb_v1.2"))
    assert len(rows) == 6 * len(FAVC_IDS)
    expect = {
        "RealVideo-RealAudio": (0, 0, 0),
        "RealVideo-FakeAudio": (1, 0, 1),
        "FakeVideo-RealAudio": (1, 1, 0),
        "FakeVideo-FakeAudio": (1, 1, 1),
    }
    for r in rows:
        assert (r.label, r.video_label, r.audio_label) == expect[r.category], r
        assert r.group == Path(r.path).parent.name  # the source identity idXXXXX
    by_cat = {c: {r.method for r in rows if r.category == c} for c in expect}
    assert by_cat == {
        "RealVideo-RealAudio": {"real"},
        "RealVideo-FakeAudio": {"rtvc"},
        "FakeVideo-RealAudio": {"faceswap", "fsgan"},
        "FakeVideo-FakeAudio": {"wav2lip", "fsgan-wav2lip"},
    }
    assert any("Asian (East)" in r.path for r in rows)
    check_no_leak(rows)


def test_fakeavceleb_without_metadata_reads_file_names(tmp_path):
    with_meta = scan_source("fakeavceleb", make_fakeavceleb_tree(tmp_path / "a"))
    without = scan_source("fakeavceleb", make_fakeavceleb_tree(tmp_path / "b", metadata=False))
    key = lambda rows: sorted((Path(r.path).name, r.method, r.group, r.category, r.label) for r in rows)  # noqa: E731
    assert key(with_meta) == key(without)


def test_fakeavceleb_wrong_root(tmp_path):
    root = make_fakeavceleb_tree(tmp_path / "FakeAVCeleb_v1.2")
    with pytest.raises(DatasetLayoutError, match="RealVideo-RealAudio not found under") as e:
        scan_source("fakeavceleb", tmp_path)
    assert f"try ROOT={root}" in str(e.value) and "meta_data.csv" in str(e.value)


# ---------------------------------------------------------------- a user's own folder


def test_folder_real_fake_layout(tmp_path):
    rows = scan_source("folder", make_folder_tree(tmp_path))
    named = by_name(rows)
    assert set(named) == {"a", "b", "c", "d"}  # .MOV/.webm found, ._a.mp4 and notes.txt skipped
    assert (named["a"].label, named["b"].label, named["c"].label, named["d"].label) == (0, 0, 1, 1)
    assert named["c"].method == "sora" and named["d"].method == "unknown" and named["b"].method == "real"
    assert {r.dataset for r in rows} == {"folder"} and all(r.split in SPLITS for r in rows)
    held_out = scan_source("folder", tmp_path, split="test", group_by="folder")
    assert {r.split for r in held_out} == {"test"} and by_name(held_out)["b"].group == "real/trip"


def test_folder_split_folders(tmp_path):
    rows = scan_source("folder", make_folder_tree(tmp_path, "splits"))
    assert sorted((Path(r.path).parts[-3], r.split, r.label) for r in rows) == [
        ("test", "test", 0),
        ("test", "test", 1),
        ("train", "train", 0),
        ("train", "train", 1),
    ]


def test_folder_labels_csv_in_folder_or_as_root(tmp_path):
    root = make_folder_tree(tmp_path, "csv")
    for given in (root, root / "labels.csv"):
        named = by_name(scan_source("folder", given))
        assert (named["v1"].label, named["v2"].label, named["v3"].label) == (0, 1, 0)
        assert named["v2"].method == "wav2lip" and named["v1"].method == "real"
        assert named["v1"].group == named["v2"].group == "p1" and named["v1"].split == named["v2"].split
        assert named["v3"].split == "test" and named["v3"].path == str(root / "sub" / "v3.mkv")
    (root / "labels.csv").write_text("path,label\nv1.mp4,maybe\n")
    with pytest.raises(DatasetLayoutError, match="labels.csv:2: label must be 0/real, 1/fake"):
        scan_source("folder", root)
    (root / "labels.csv").write_text("file,kind\nv1.mp4,real\n")
    with pytest.raises(DatasetLayoutError, match="expected a header with 'path' and 'label'"):
        scan_source("folder", root)


def test_folder_unlabelled_and_empty(tmp_path):
    rows = scan_source("folder", make_folder_tree(tmp_path / "u", "unlabelled"))
    assert sorted(Path(r.path).name for r in rows) == ["x.mp4", "y.AVI"]
    assert {(r.label, r.split, r.method) for r in rows} == {(-1, "test", "unknown")}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no videos found under .*real/ and fake/"):
        scan_source("folder", tmp_path / "empty")


def test_scan_source_option_errors_and_manifest_round_trip(tmp_path):
    with pytest.raises(SourceOptionError, match="unknown dataset source 'ff'; known sources: avdeep"):
        scan_source("ff", tmp_path)
    with pytest.raises(SourceOptionError, match="unknown option\\(s\\) compression for source 'ffpp'"):
        scan_source("ffpp", tmp_path, compression="c23")
    rows = scan_source("fakeavceleb", make_fakeavceleb_tree(tmp_path / "favc"))
    write_manifest(rows, tmp_path / "manifest.csv")
    assert read_manifest(tmp_path / "manifest.csv") == rows


def test_celebdf_list_label_convention_is_checked(tmp_path, caplog):
    root = make_celebdf_tree(tmp_path)
    (root / "List_of_testing_videos.txt").write_text("0 YouTube-real/00000.mp4\n1 Celeb-real/id9_0000.mp4\n")
    rows = by_name(scan_source("celebdf", root))
    assert rows["00000"].label == 0 and rows["00000"].split == "test"  # labels come from the folders
    assert "1 labels contradict their folder" in caplog.text and "1 listed videos are missing" in caplog.text


def test_folder_groups_by_a_csv_column_and_a_splits_file_fixes_whole_groups(tmp_path):
    """Talking-head style labels: inputs and outputs of one repository share identities, so they form
    one group, and a splits file holds out whole generators."""
    for name in ("a/real.mp4", "a/fake.mp4", "b/real.mp4", "b/fake.mp4", "c/fake.mp4"):
        touch(tmp_path / name)
    (tmp_path / "labels.csv").write_text(
        "path,label,generator,source_repo\na/real.mp4,real,,org/a\na/fake.mp4,fake,talker,org/a\n"
        "b/real.mp4,real,,org/b\nb/fake.mp4,fake,dreamer,org/b\nc/fake.mp4,fake,other,org/c\n"
    )
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"test": ["org/b"], "val": ["source_repo:org/c"]}))
    rows = scan_source("folder", tmp_path, group_by="source_repo", splits=str(splits))
    got = {str(Path(r.path).relative_to(tmp_path)): (r.group, r.split, r.method) for r in rows}
    assert got["a/fake.mp4"][0] == got["a/real.mp4"][0] == "source_repo:org/a"
    assert got["b/real.mp4"][1] == got["b/fake.mp4"][1] == "test" and got["c/fake.mp4"][1] == "val"
    assert got["b/fake.mp4"][2] == "dreamer"  # the generator column names the method
    check_no_leak(rows)
    with pytest.raises(SourceOptionError, match="not a column"):
        scan_source("folder", tmp_path, group_by="speaker_id")
    splits.write_text(json.dumps({"test": ["org/zzz"]}))
    with pytest.raises(SourceOptionError, match="no row has group"):
        scan_source("folder", tmp_path, group_by="source_repo", splits=str(splits))
