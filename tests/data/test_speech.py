"""Speech data: the folder source on speech CSVs and audio trees, re-encoding, perturbations, dataset."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from dfdetect.data import speech as S
from dfdetect.data.sources import scan_source


def _wav(path: Path, seconds: float = 1.0, freq: float = 220.0, rate: int = 22050) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def test_speech_csv_groups_by_speaker_case_folded(tmp_path: Path) -> None:
    lines = ["path,label,source_repo,source_path,generator,speaker,licence"]
    for i, (label, gen, spk) in enumerate(
        [("real", "real", "LJ"), ("fake", "tts-a", "lj"), ("real", "real", "p225"), ("fake", "tts-b", "p225")]
        + [("real", "real", f"s{i}") for i in range(8)]
        + [("fake", "tts-a", f"s{i}") for i in range(8)]
    ):
        _wav(tmp_path / f"{i}.wav")
        lines.append(f"{i}.wav,{label},repo,x,{gen},{spk},MIT")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    rows = scan_source("folder", tmp_path, val=0.2, test=0.3)
    by_name = {Path(r.path).name: r for r in rows}
    assert by_name["0.wav"].group == by_name["1.wav"].group == "speaker:lj"
    assert by_name["1.wav"].method == "tts-a" and by_name["0.wav"].method == "real"
    splits: dict[str, set[str]] = {}
    for r in rows:
        splits.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in splits.values())  # speaker-disjoint
    assert {r.split for r in rows} == {"train", "val", "test"}


def test_audio_files_in_label_folders(tmp_path: Path) -> None:
    _wav(tmp_path / "real" / "a.wav")
    _wav(tmp_path / "fake" / "ttsx" / "b.flac")  # content need not decode for listing
    (tmp_path / "fake" / "ttsx" / "notes.txt").write_text("x")
    rows = scan_source("folder", tmp_path, val=0.0, test=0.0)
    assert sorted((Path(r.path).name, r.label, r.method) for r in rows) == [
        ("a.wav", 0, "real"),
        ("b.flac", 1, "ttsx"),
    ]


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_reencode_keeps_length_and_signal(codec: str) -> None:
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    y = S.reencode(x, codec=codec, bitrate=48000)
    assert y.shape == x.shape and y.dtype == np.float32
    assert abs(np.std(y) - np.std(x)) < 0.05  # same loudness; the codec is lossy, not silent
    assert np.array_equal(S.reencode(x, codec="none"), x)


def test_perturbations() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    low = np.sin(2 * np.pi * 300 * t).astype(np.float32) * 0.3
    high = np.sin(2 * np.pi * 6000 * t).astype(np.float32) * 0.3
    assert np.std(S.telephone(high)) < 0.02 and abs(np.std(S.telephone(low)) - np.std(low)) < 0.01
    noisy = S.add_noise(low, 10.0, rng)
    snr = 10 * np.log10(np.mean(low**2) / np.mean((noisy - low) ** 2))
    assert abs(snr - 10.0) < 0.5
    for name in S.PERTURBATIONS:
        assert S.perturb(low, name).shape == low.shape
    voice_like = (rng.normal(size=32000) * 0.1).astype(np.float32)  # 2 s: long enough to align AAC
    for name in ("mp3_64k", "aac_48k", "opus_16k"):  # a lossy round trip, aligned with its input
        out = S.perturb(voice_like, name)
        assert 0.6 < np.corrcoef(voice_like, out)[0, 1] < 0.999, name
    with pytest.raises(ValueError):
        S.perturb(low, "reverb")


def test_speech_dataset_samples(tmp_path: Path) -> None:
    from dfdetect.data.dataset import collate
    from dfdetect.data.manifest import ManifestRow

    rows = [
        ManifestRow(str(_wav(tmp_path / "r.wav", 2.0)), 0, "folder", "real", "train", "speaker:a"),
        ManifestRow(str(_wav(tmp_path / "f.wav", 5.0, 330)), 1, "folder", "tts", "train", "speaker:b"),
        ManifestRow(str(tmp_path / "missing.wav"), 1, "folder", "tts", "train", "speaker:c"),
    ]
    cfg = S.SpeechConfig(window=16000)
    ds = S.SpeechDataset(rows, cfg, train=True, seed=0, windows_per_clip=2)
    assert len(ds) == 4  # the missing file is skipped
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["audio"].shape == (4, 16000) and batch["segment_labels"].shape == (4, 1)
    assert batch["label"].tolist() == [0.0, 0.0, 1.0, 1.0] and bool(batch["audio_mask"].all())
    assert np.array_equal(ds[3]["audio"].numpy(), ds[3]["audio"].numpy())  # deterministic per index
