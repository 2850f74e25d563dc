"""Tiny LAV-DF and AV-Deepfake1M trees in their official layouts, with their official metadata JSON.

Videos are zero-byte files unless ``video`` (a real clip) is given: then each is a symlink to it, so
``prepare`` can decode them. Reusable: ``from tests.data.localization_trees import make_lavdf_tree``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# LAV-DF: file -> (split, original, fake_periods, modify_video, modify_audio); 000006 is listed but absent,
# 000007 is a test fake made from a train video (its group is split by split)
LAVDF = {
    "train/000000.mp4": ("train", None, [], False, False),
    "train/000001.mp4": ("train", "train/000000.mp4", [[1.0, 1.6]], True, False),
    "dev/000002.mp4": ("dev", None, [], False, False),
    "dev/000003.mp4": ("dev", "dev/000002.mp4", [[0.4, 0.8], [2.0, 2.4]], True, True),
    "test/000004.mp4": ("test", None, [], False, False),
    "test/000005.mp4": ("test", "test/000004.mp4", [[0.2, 0.5]], False, True),
    "test/000006.mp4": ("test", None, [], False, False),
    "test/000007.mp4": ("test", "train/000000.mp4", [[0.0, 0.3]], True, False),
}
LAVDF_ABSENT = ("test/000006.mp4",)

# AV-Deepfake1M: subset -> [(file, original, modify_type, fake_segments)]
_S1, _S2 = "lrs3/spk1/00001", "lrs3/spk2/00001"
AVDF1M = {
    "train": [
        (f"{_S1}/real.mp4", None, "real", []),
        (f"{_S1}/fake_video_fake_audio.mp4", f"{_S1}/real.mp4", "both_modified", [[0.5, 1.0]]),
        (f"{_S1}/real_video_fake_audio.mp4", f"{_S1}/real.mp4", "audio_modified", [[2.0, 2.3]]),
    ],
    "val": [
        (f"{_S2}/real.mp4", None, "real", []),
        (f"{_S2}/fake_video_real_audio.mp4", f"{_S2}/real.mp4", "visual-modified", [[1, 2]]),  # hyphenated
    ],
}
AVDF1M_TEST = ("lrs3/spk3/00001/a.mp4", "lrs3/spk3/00002/b.mp4")


def _place(path: Path, video: Path | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if video is None:
        path.write_bytes(b"")
    else:
        os.symlink(video, path)


def _entry(file: str, split: str, original: str | None, periods: list, video: bool, audio: bool) -> dict:
    return {
        "file": file,
        "n_fakes": len(periods),
        "fake_periods": periods,
        "duration": 3.0,
        "original": original,
        "modify_video": video,
        "modify_audio": audio,
        "split": split,
        "video_frames": 75,
        "audio_channels": 1,
        "audio_frames": 48000,
    }


def make_lavdf_tree(root: Path, video: Path | None = None, files: tuple[str, ...] | None = None) -> Path:
    """``root/LAV-DF`` with ``metadata.json`` listing :data:`LAVDF` and its videos (``files``: only those)."""
    base = root / "LAV-DF"
    base.mkdir(parents=True)
    entries = [_entry(f, *spec) for f, spec in LAVDF.items() if files is None or f in files]
    (base / "metadata.json").write_text(json.dumps(entries))
    for e in entries:
        if e["file"] not in LAVDF_ABSENT:
            _place(base / e["file"], video)
    return base


def make_avdeepfake1m_tree(root: Path, video: Path | None = None, test_list: bool = True) -> Path:
    """``root/AV-Deepfake1M`` with ``{train,val}_metadata.json``, their videos and the unlabelled test set."""
    base = root / "AV-Deepfake1M"
    for subset, items in AVDF1M.items():
        entries = []
        for file, original, kind, segments in items:
            entries.append(
                {
                    "file": file,
                    "original": original,
                    "split": subset,
                    "modify_type": kind,
                    "fake_segments": segments,
                    "visual_fake_segments": segments if "visual" in kind or "both" in kind else [],
                    "audio_fake_segments": segments if "audio" in kind or "both" in kind else [],
                    "audio_model": "yourtts" if "audio" in kind or "both" in kind else "",
                    "video_frames": 75,
                    "audio_frames": 48000,
                }
            )
            _place(base / subset / file, video)
        base.mkdir(parents=True, exist_ok=True)
        (base / f"{subset}_metadata.json").write_text(json.dumps(entries))
    for file in AVDF1M_TEST:
        _place(base / "test" / file, video)
    if test_list:
        (base / "test_files.txt").write_text("\n".join(AVDF1M_TEST) + "\n")
    return base
