"""CTranslate2 folders built from wheel files (``models/ct2_files.py``), on the real Whisper-tiny model of its
wheel: a model split in parts joins back byte for byte, an encoder cut after K layers loads in CTranslate2
and equals running those layers, and a truncated part is refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from dfdetect.models import whisper_speech as W
from dfdetect.models.ct2_files import CT2FormatError, build_model_dir, keep_encoder_layers


@pytest.fixture(scope="module")
def tiny() -> Path:
    pytest.importorskip("ctranslate2", reason="the Whisper judge's runtime (pip install 'dfdetect[audio]')")
    try:
        return W.encoder_dir()
    except W.WhisperError as e:
        pytest.skip(f"the Whisper encoder wheel cannot be had here (no hub cache, no registry): {e}")


def _states(folder: Path, audio: np.ndarray) -> np.ndarray:
    import ctranslate2

    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8")
    x = ctranslate2.StorageView.from_array(np.ascontiguousarray(W.log_mel(W.normalise_window(audio))[None]))
    return np.asarray(model.encode(x, to_cpu=True), dtype=np.float32)[0]


def test_keeping_every_layer_copies_the_model(tiny: Path) -> None:
    data = (tiny / "model.bin").read_bytes()
    out = io.BytesIO()
    assert keep_encoder_layers(io.BytesIO(data), out, None) == 4  # tiny.en has 4 encoder layers
    assert out.getvalue() == data


def test_parts_join_and_the_encoder_is_cut_after_k_layers(tiny: Path, tmp_path: Path) -> None:
    data = (tiny / "model.bin").read_bytes()
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    parts[0].write_bytes(data[: len(data) // 3])
    parts[1].write_bytes(data[len(data) // 3 :])
    files = [tiny / "config.json", tiny / "vocabulary.txt"]
    whole = build_model_dir(parts, files, tmp_path / "whole")
    assert (whole / "model.bin").read_bytes() == data and (whole / "vocabulary.txt").is_file()
    one = build_model_dir(parts, files, tmp_path / "one", encoder_layers=1)
    assert not list(tmp_path.glob(".one-*")), "no temporary folder left behind"
    audio = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    full, first = _states(whole, audio), _states(one, audio)
    assert first.shape == full.shape == (150, 384)
    assert not np.allclose(first, full, atol=1e-2), "the first layer's states are not the last one's"
    np.testing.assert_allclose(_states(tiny, audio), full, atol=1e-6)


def test_a_truncated_part_is_refused(tiny: Path, tmp_path: Path) -> None:
    data = (tiny / "model.bin").read_bytes()
    with pytest.raises(CT2FormatError, match="ends early"):
        keep_encoder_layers(io.BytesIO(data[: len(data) // 2]), io.BytesIO(), 1)


def test_a_bad_part_in_the_hub_is_a_whisper_error_that_says_what_to_do(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (tiny / "model.bin").read_bytes()
    part = tmp_path / "wheel" / "model.bin.part1"
    part.parent.mkdir()
    part.write_bytes(data[: len(data) // 2])  # a part cut short: the other half never arrived
    files = {"model.bin.part1": part, "config.json": tiny / "config.json"}
    monkeypatch.setenv("DFDETECT_HUB", str(tmp_path / "hub"))
    monkeypatch.setattr(W, "ENCODER_BUILDS", {W.WHISPER_BASE_L1: (["model.bin.part1"], ["config.json"], 1)})
    monkeypatch.setattr(W, "wheel_file", lambda ref, download=True: files[ref])
    with pytest.raises(W.WhisperError, match=f"ends early.*delete {part.parent}"):
        W.encoder_dir(W.WHISPER_BASE_L1)
    assert not (tmp_path / "hub" / "encoders" / W.WHISPER_BASE_L1).exists(), "no half-built encoder"
