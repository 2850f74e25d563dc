"""io.audio: mono 16 kHz float32, stream statuses, sync with video timestamps, silero-vad segments."""

from __future__ import annotations

import numpy as np
import pytest

from dfdetect.io.audio import audio_status, load_audio, speech_segments
from dfdetect.io.video import UnreadableMediaError
from dfdetect.types import AudioStatus
from tests.conftest import media
from tests.malformed import sine, write_audio, write_video


def test_no_audio_stream():
    audio, status = load_audio(media("real/liveportrait_d0.mp4"))
    assert status is AudioStatus.NO_STREAM
    assert audio.shape == (0,) and audio.dtype == np.float32


def test_silent_track():
    audio, status = load_audio(media("real/liveportrait_d3.mp4"), max_duration=3)
    assert status is AudioStatus.SILENT
    assert audio.shape == (48000,)
    assert speech_segments(audio) == []


def test_speech_clip_resampled_to_16k_mono():
    audio, status = load_audio(media("real/videoretalking_face_1.mp4"))  # 44.1 kHz stereo AAC
    assert status is AudioStatus.OK and audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / 16000 == pytest.approx(6.1, abs=0.1)
    assert np.abs(audio).max() <= 1.0
    segments = speech_segments(audio)
    assert segments and all(0 <= a < b <= 6.2 for a, b in segments)
    assert sum(b - a for a, b in segments) > 2.0


def test_audio_only_file_and_limits():
    path = media("videoretalking_audio_1.wav")
    audio, status = load_audio(path, max_duration=2.0)
    assert status is AudioStatus.OK and audio.shape == (32000,)
    full, _ = load_audio(path)
    part, _ = load_audio(path, start=1.5, max_duration=1.0)
    assert part.shape == (16000,)
    assert np.corrcoef(part, full[24000:40000])[0, 1] > 0.99  # same samples, same clock
    assert speech_segments(full)


def test_sample_rate_and_sync_of_generated_tone(tmp_path):
    tone = sine(2.0, rate=16000, freq=440.0)
    path = write_video(tmp_path / "av.mp4", n_frames=20, fps=10, audio=tone)
    audio, status = load_audio(path, sample_rate=8000)
    assert status is AudioStatus.OK
    assert len(audio) == pytest.approx(16000, abs=1100)  # AAC pads up to one frame
    spectrum = np.abs(np.fft.rfft(audio[2000:10000]))
    assert np.fft.rfftfreq(8000, 1 / 8000)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_audio_only_mp4_and_unreadable(tmp_path):
    path = write_audio(tmp_path / "a.m4a", sine(1.0))
    audio, status = load_audio(path)
    assert status is AudioStatus.OK and len(audio) >= 16000
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not media" * 100)
    with pytest.raises(UnreadableMediaError):
        load_audio(bad)


def test_status_and_vad_edge_cases():
    assert audio_status(np.zeros(0, np.float32)) is AudioStatus.SILENT
    assert audio_status(np.full(1600, 1e-6, np.float32)) is AudioStatus.SILENT
    assert audio_status(sine(0.1)) is AudioStatus.OK
    assert speech_segments(np.zeros(0, np.float32)) == []
    with pytest.raises(ValueError, match="8000 or 16000"):
        speech_segments(sine(1.0), sample_rate=44100)


def test_vad_fast_path_finds_the_same_segments_and_keeps_torch_threads():
    import torch

    from dfdetect.io import audio as io_audio

    if not io_audio._has_onnxruntime():
        pytest.skip("onnxruntime (the scale extra) is not installed: only the TorchScript VAD runs")
    audio, _ = load_audio(media("real/videoretalking_face_2.mp4"))
    threads = torch.get_num_threads()
    fast = speech_segments(audio)  # batched ONNX silero-vad
    jit = io_audio._speech_timestamps_jit(audio, 16000)  # the per-frame TorchScript loop
    assert fast and fast == [(s["start"] / 16000, s["end"] / 16000) for s in jit]
    assert torch.get_num_threads() == threads  # importing silero-vad would set 1 thread for the process


def test_vad_without_torch_matches_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from dfdetect.io import audio as io_audio

    if io_audio._sequence_vad() is None:
        pytest.skip("this silero-vad has no batched ONNX model (or onnxruntime is missing)")
    audio, _ = load_audio(media("real/videoretalking_face_2.mp4"))
    ours = speech_segments(audio)
    monkeypatch.setattr(io_audio, "_sequence_vad", lambda: None)  # silero-vad's package, torch and all
    assert ours and ours == speech_segments(audio)
    code = (
        "import sys; from dfdetect.io.audio import load_audio, speech_segments; "
        "assert speech_segments(load_audio(sys.argv[1])[0]); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(media("real/videoretalking_face_2.mp4"))], check=True)
