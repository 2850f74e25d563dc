"""Tiny fake dataset trees in the official layouts, with their official metadata files.

Videos are zero-byte files (source adapters never decode). Reusable by other tests:
``from tests.data.dataset_trees import make_ffpp_tree``
from elsewhere under tests/. Pass ``video_bytes`` (e.g. a real clip's bytes) to get decodable files.
"""

from __future__ import annotations

import json
from pathlib import Path

# FaceForensics++: 6 official pairs (3 train, 2 val, 1 test) + 1 pair outside the official lists
FFPP_SPLITS = {
    "train": [["000", "001"], ["002", "003"], ["004", "005"]],
    "val": [["006", "007"], ["008", "009"]],
    "test": [["010", "011"]],
}
FFPP_UNLISTED = [["012", "013"]]
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FFPP_ACTORS = {"01": ["exit_phone_room", "kitchen_pan"], "02": ["exit_phone_room"], "03": ["kitchen_pan"]}
FFPP_DFD_FAKES = [
    "01_02__exit_phone_room__YVGY8LOK",
    "02_01__exit_phone_room__3IUBEKCT",
    "03_01__kitchen_pan__A",
]

# Celeb-DF v2: identities id0..id5 linked in pairs by the fakes; 1 = real, 0 = fake in the test list
CELEBDF_REAL = [f"id{i}_{k:04d}" for i in range(6) for k in range(3)]
CELEBDF_FAKE = [
    "id0_id1_0000",
    "id1_id0_0001",
    "id2_id3_0000",
    "id3_id2_0002",
    "id4_id5_0000",
    "id5_id4_0001",
]
CELEBDF_YOUTUBE = [f"{i:05d}" for i in range(6)]
CELEBDF_TEST_LIST = [
    "1 YouTube-real/00000.mp4",
    "1 YouTube-real/00001.mp4",
    "1 Celeb-real/id0_0000.mp4",
    "0 Celeb-synthesis/id0_id1_0000.mp4",
]

# DFDC: 3 parts, each with 2 originals (REAL) and 2 fakes of each; a public test set of 4
DFDC_PARTS = 3
DFDC_TEST = {"t1.mp4": 0, "t2.mp4": 1, "t3.mp4": 1, "t4.mp4": 0}

# FakeAVCeleb: (source id, race folder, gender) -> videos per category
FAVC_IDS = [
    ("id00076", "African", "men"),
    ("id00166", "Asian (East)", "women"),
    ("id01000", "Caucasian (American)", "men"),
    ("id01170", "Caucasian (European)", "women"),
]
FAVC_HEADER = "source,target1,target2,method,category,type,race,gender,path,"


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_ffpp_tree(
    root: Path,
    compressions: tuple[str, ...] = ("c23",),
    methods: tuple[str, ...] = FFPP_METHODS,
    splits: bool = True,
    actors: bool = True,
    video_bytes: bytes = b"",
) -> Path:
    """FaceForensics++ tree: youtube reals, fakes TTT_SSS and SSS_TTT per pair and method, DFD."""
    pairs = [p for ps in FFPP_SPLITS.values() for p in ps] + FFPP_UNLISTED
    for comp in compressions:
        for a, b in pairs:
            for vid in (a, b):
                touch(root / f"original_sequences/youtube/{comp}/videos/{vid}.mp4", video_bytes)
            for method in methods:
                for name in (f"{a}_{b}", f"{b}_{a}"):
                    touch(root / f"manipulated_sequences/{method}/{comp}/videos/{name}.mp4", video_bytes)
        if actors:
            for actor, scenes in FFPP_ACTORS.items():
                for scene in scenes:
                    touch(root / f"original_sequences/actors/{comp}/videos/{actor}__{scene}.mp4", video_bytes)
            for name in FFPP_DFD_FAKES:
                touch(root / f"manipulated_sequences/DeepFakeDetection/{comp}/videos/{name}.mp4", video_bytes)
    if splits:
        (root / "splits").mkdir(parents=True, exist_ok=True)
        for split, split_pairs in FFPP_SPLITS.items():
            (root / "splits" / f"{split}.json").write_text(json.dumps(split_pairs))
    return root


def make_celebdf_tree(root: Path, test_list: bool = True, video_bytes: bytes = b"") -> Path:
    """Celeb-DF v2 tree with List_of_testing_videos.txt."""
    for stem in CELEBDF_REAL:
        touch(root / f"Celeb-real/{stem}.mp4", video_bytes)
    for stem in CELEBDF_FAKE:
        touch(root / f"Celeb-synthesis/{stem}.mp4", video_bytes)
    for stem in CELEBDF_YOUTUBE:
        touch(root / f"YouTube-real/{stem}.mp4", video_bytes)
    if test_list:
        (root / "List_of_testing_videos.txt").write_text("\n".join(CELEBDF_TEST_LIST) + "\n")
    return root


def make_dfdc_tree(root: Path, test_set: bool = True, video_bytes: bytes = b"") -> Path:
    """DFDC tree: dfdc_train_part_N/{metadata.json,*.mp4} and test/{labels.csv,videos/}."""
    for part in range(DFDC_PARTS):
        folder = root / f"dfdc_train_part_{part}"
        meta = {}
        for o in range(2):
            original = f"p{part}real{o}.mp4"
            meta[original] = {"label": "REAL", "split": "train", "original": None}
            for f in range(2):
                meta[f"p{part}fake{o}{f}.mp4"] = {"label": "FAKE", "split": "train", "original": original}
        for name in meta:
            touch(folder / name, video_bytes)
        (folder / "metadata.json").write_text(json.dumps(meta))
    if test_set:
        lines = ["filename,label"] + [f"{name},{label}" for name, label in DFDC_TEST.items()]
        for name in DFDC_TEST:
            touch(root / "test/videos" / name, video_bytes)
        (root / "test/labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _favc_videos(source: str, donor: str) -> list[tuple[str, str, str, str]]:
    """(category letter, type folder, method, file name) of one identity's videos."""
    return [
        ("A", "RealVideo-RealAudio", "real", "00109.mp4"),
        ("B", "RealVideo-FakeAudio", "rtvc", "00109_fake.mp4"),
        ("C", "FakeVideo-RealAudio", "faceswap", f"00109_{donor}_faceswap.mp4"),
        ("C", "FakeVideo-RealAudio", "fsgan", f"00109_{donor}_fsgan.mp4"),
        ("D", "FakeVideo-FakeAudio", "wav2lip", f"00109_10_{donor}_wavtolip.mp4"),
        ("D", "FakeVideo-FakeAudio", "fsgan-wav2lip", f"00109_{donor}_fsgan-wav2lip.mp4"),
    ]


def make_fakeavceleb_tree(root: Path, metadata: bool = True, video_bytes: bytes = b"") -> Path:
    """FakeAVCeleb_v1.2 tree with meta_data.csv in its official (one value more than named) format."""
    lines = [FAVC_HEADER]
    for i, (source, race, gender) in enumerate(FAVC_IDS):
        donor = FAVC_IDS[(i + 1) % len(FAVC_IDS)][0]
        for letter, kind, method, name in _favc_videos(source, donor):
            folder = f"{kind}/{race}/{gender}/{source}"
            touch(root / folder / name, video_bytes)
            t1, t2 = ("-", "-") if method in ("real", "rtvc") else (donor, "-")
            lines.append(
                f"{source},{t1},{t2},{method},{letter},{kind},{race},{gender},{name},FakeAVCeleb/{folder}"
            )
    if metadata:
        (root / "meta_data.csv").write_text("\n".join(lines) + "\n")
    return root


def make_folder_tree(root: Path, layout: str = "real_fake", video_bytes: bytes = b"") -> Path:
    """A user's folder: "real_fake", "splits" ({train,test}/{real,fake}), "csv" or "unlabelled"."""
    if layout == "real_fake":
        touch(root / "real/a.mp4", video_bytes)
        touch(root / "real/trip/b.MOV", video_bytes)
        touch(root / "fake/sora/c.mp4", video_bytes)
        touch(root / "fake/d.webm", video_bytes)
        touch(root / "fake/notes.txt")
        touch(root / "real/._a.mp4")  # macOS resource fork: not a video
    elif layout == "splits":
        for split in ("train", "test"):
            touch(root / f"{split}/real/r.mp4", video_bytes)
            touch(root / f"{split}/fake/f.mp4", video_bytes)
    elif layout == "csv":
        for name in ("v1.mp4", "v2.mp4", "sub/v3.mkv"):
            touch(root / name, video_bytes)
        (root / "labels.csv").write_text(
            "path,label,method,group,split\nv1.mp4,real,,p1,\nv2.mp4,1,wav2lip,p1,\nsub/v3.mkv,0,,,test\n"
        )
    elif layout == "unlabelled":
        touch(root / "x.mp4", video_bytes)
        touch(root / "deep/er/y.AVI", video_bytes)
        touch(root / "readme.md")
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return root
