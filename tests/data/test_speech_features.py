"""Speech variants (the same for both classes), scan-like windows and the feature cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dfdetect.data import speech as S
from dfdetect.data.speech_features import FeatureCache, extract_features

VOICE = Path(__file__).resolve().parents[3] / "shared" / "media" / "videoretalking_audio_1.wav"


def _voice() -> np.ndarray:
    from dfdetect.io.audio import load_audio

    if not VOICE.is_file():
        pytest.skip(f"{VOICE} is not here (../shared/media beside the repository)")
    return load_audio(VOICE, 16000, max_duration=3.0)[0]


@pytest.mark.parametrize("name", S.VARIANTS + ("mp3_64k", "telephone_8k"))
def test_variants_keep_length_and_speech(name: str) -> None:
    audio = _voice()
    out = S.variant(audio, name, seed=3)
    assert out.shape == audio.shape and out.dtype == np.float32 and np.abs(out).max() <= 1.0
    if name == "clean":
        assert out is audio
    else:
        corr = np.corrcoef(audio, out)[0, 1]
        assert corr > 0.3, (name, corr)  # still the same speech
    assert np.array_equal(out, S.variant(audio, name, seed=3))  # deterministic in the seed


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        S.variant(np.zeros(100, np.float32), "vinyl")


def test_feature_windows_match_a_scan() -> None:
    audio = np.arange(25 * 16000, dtype=np.float32)
    windows = S.feature_windows(audio, 10.0)
    assert [w[0] / 16000 for w in windows] == [0.0, 10.0, 15.0]  # side by side, the last flush with the end
    assert all(w.size == 160000 for w in windows)
    assert len(S.feature_windows(audio[:16000], 10.0)) == 1


def test_cache_keys_by_content_and_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _voice()
    a, b = tmp_path / "a.wav", tmp_path / "copy.wav"
    shutil.copy(VOICE, a)
    shutil.copy(VOICE, b)
    calls = []

    def fake_compute(self, path, variant):  # noqa: ANN001, ANN202
        calls.append((Path(path).name, variant))
        return np.full((2, 768), len(calls), np.float32)

    monkeypatch.setattr(FeatureCache, "compute", fake_compute)
    cache = FeatureCache(tmp_path / "cache")
    assert cache.key(a, "clean") == cache.key(b, "clean") != cache.key(a, "mp3")
    assert FeatureCache(tmp_path / "cache", seconds=5.0).key(a, "clean") != cache.key(a, "clean")
    feats = extract_features(cache, [(str(a), "clean"), (str(b), "clean"), (str(a), "mp3")], progress=False)
    assert calls == [("a.wav", "clean"), ("a.wav", "mp3")]  # the copy's features came from the cache
    assert feats[(str(b), "clean")].shape == (2, 768) and feats[(str(b), "clean")][0, 0] == 1
    assert cache.get(a, "opus", compute=False) is None
    assert not list((tmp_path / "cache").rglob("*.tmp*"))  # atomic writes leave nothing behind


def test_a_bad_file_is_left_out(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert extract_features(FeatureCache(tmp_path / "c"), [(str(bad), "clean")], progress=False) == {}
