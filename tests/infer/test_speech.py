"""Speech branch of a video scan: the fusion rule, how a checkpoint names its speech model, and scans of
real videos with a real voice and with a cloned voice muxed over a real face (shipped AASIST-L).

AASIST-L costs seconds per 4 s window on the test CPU: the scans read 4 s (one speech window each).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dfdetect.checkpoint import Checkpoint, CheckpointError, attach_speech
from dfdetect.infer.aggregate import fuse_speech
from dfdetect.infer.lookup import WEIGHTS_DIR
from dfdetect.infer.pipeline import load_detector
from dfdetect.types import Status
from tests.conftest import media
from tests.infer.conftest import make_checkpoint

SPEECH = Path(__file__).resolve().parents[3] / "shared" / "data" / "speech"
CLONE = SPEECH / "fake" / "tortoise-tts" / "examples__various__melodie_kao__train_dotrice.mp3"
P0 = 0.9  # fusion parameter of the test companion (the shipped ceiling is measured, see the model card)


# ---------------------------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p_visual", [0.0, 0.2, 0.7])
def test_real_voice_never_moves_the_score(p_visual: float) -> None:
    for p_audio in (0.0, 0.5, 0.8, 0.9):  # at or below the ceiling
        fused = fuse_speech(p_visual, p_audio, 0.9)
        assert fused["p_fake"] == pytest.approx(p_visual) and fused["audio_excess"] == 0.0
        assert fused["decided_by"] == "visual"


def test_fake_voice_raises_and_can_decide() -> None:
    fused = fuse_speech(0.1, 0.98, 0.9)  # a cloned voice over a real face
    assert fused["audio_excess"] == pytest.approx(0.8)
    assert fused["p_fake"] == pytest.approx(1 - 0.9 * 0.2) and fused["decided_by"] == "audio"
    assert fuse_speech(0.1, 1.0, 0.9)["p_fake"] == pytest.approx(1.0), "a sure fake voice is enough"
    lower, higher = fuse_speech(0.3, 0.95, 0.9), fuse_speech(0.3, 0.99, 0.9)
    assert 0.3 < lower["p_fake"] < higher["p_fake"], "monotone in the audio score, never below visual"
    assert fuse_speech(0.8, 0.95, 0.9)["decided_by"] == "visual"


def test_no_speech_is_video_only() -> None:
    fused = fuse_speech(0.42, None, 0.9)
    assert fused["p_fake"] == pytest.approx(0.42) and fused["audio"] is None
    with pytest.raises(ValueError, match="p0"):
        fuse_speech(0.5, 0.5, 1.0)


# ---------------------------------------------------------------------------------------------
# How a checkpoint names its speech model
# ---------------------------------------------------------------------------------------------


def test_checkpoint_declares_its_speech_companion(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert Checkpoint.load(tiny_checkpoint).companions == {}
    path = attach_speech(tiny_checkpoint, "aasist-l", p0=P0, dst=tmp_path / "with_speech.pt")
    ckpt = Checkpoint.load(path)
    assert ckpt.companions == {"speech": {"model": "aasist-l", "p0": P0}}
    assert Checkpoint.from_state(ckpt.to_state()).companions == ckpt.companions, "round trip"
    assert ckpt.with_speech(None).companions == {}
    with pytest.raises(CheckpointError, match="p0"):
        ckpt.with_speech("aasist-l", p0=1.5)
    with pytest.raises(CheckpointError, match="companions"):
        Checkpoint.from_state({**ckpt.to_state(), "companions": {"speech": {"p0": 0.5}}})
    speech = Checkpoint.load(WEIGHTS_DIR / "aasist-l.pt")
    assert speech.input_codec == ("opus", 48000), "the speech model's one codec is read"
    assert Checkpoint.from_state(speech.to_state()).input_codec == ("opus", 48000), "and written back"


def test_speech_argument_overrides_the_companion(tiny_checkpoint: Path, tmp_path: Path) -> None:
    named = attach_speech(tiny_checkpoint, "aasist-l", p0=P0, dst=tmp_path / "named.pt")
    auto = load_detector(named, device="cpu")
    assert auto.speech is not None and (auto.speech.name, auto.speech.p0) == ("aasist-l", P0)
    assert load_detector(named, device="cpu", speech=None).speech is None
    assert load_detector(tiny_checkpoint, device="cpu").speech is None, "no companion, no speech branch"
    bare = Checkpoint.load(WEIGHTS_DIR / "aasist-l.pt")
    bare = dataclasses.replace(bare, calibration={"temperature": 1.0}).save(tmp_path / "bare-speech.pt")
    with pytest.raises(CheckpointError, match="real-voice ceiling"):
        load_detector(tiny_checkpoint, device="cpu", speech=bare)
    measured = Checkpoint.load(bare).with_real_voice_ceiling(0.8).save(tmp_path / "measured.pt")
    explicit = load_detector(named, device="cpu", speech=measured)
    assert (explicit.speech.name, explicit.speech.p0) == ("measured", 0.8), "its own ceiling, not the other's"
    with pytest.raises(CheckpointError, match="audio-only"):
        load_detector(named, device="cpu", speech=tiny_checkpoint)


# ---------------------------------------------------------------------------------------------
# Scans of real media
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_checkpoint(tmp_path_factory.mktemp("speech") / "tiny-av.pt")
    return attach_speech(path, "aasist-l", p0=P0)


def _mux(video: Path, voice: Path, out: Path, seconds: float = 4.0) -> Path:
    """``video``'s picture (packets copied) with the first ``seconds`` of ``voice`` as its AAC soundtrack."""
    import av

    from dfdetect.io.audio import load_audio

    wave, _ = load_audio(voice, 16000, max_duration=seconds)
    with av.open(str(video)) as inp, av.open(str(out), "w") as dst:
        v_in = inp.streams.video[0]
        v_out = dst.add_stream_from_template(v_in)
        a_out = dst.add_stream("aac", rate=16000)
        a_out.layout = "mono"
        for packet in inp.demux(v_in):
            if packet.dts is not None:
                packet.stream = v_out
                dst.mux(packet)
        frame = av.AudioFrame.from_ndarray(wave[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in [*a_out.encode(frame), *a_out.encode(None)]:
            dst.mux(packet)
    return out


def test_video_with_a_real_voice_gets_both_modality_scores(with_speech: Path, prepared_clip) -> None:
    detector = load_detector(with_speech, device="cpu")
    scores = detector.score(prepared_clip)  # a real VoxCeleb2 talking head, its own voice (4 s)
    pred = scores.prediction(detector.thresholds, detector.name)
    assert pred.status == Status.OK and scores.heard is not None, pred.message
    fusion = pred.fusion
    assert fusion["speech_model"] == "aasist-l" and fusion["p0"] == P0
    assert {"visual", "audio"} <= set(pred.modality)
    assert pred.modality["audio"] == pytest.approx(fusion["audio"], abs=1e-5)
    assert fusion["visual"] == pytest.approx(detector.score(prepared_clip, speech=False).p_fake, abs=1e-6)
    assert pred.p_fake == pytest.approx(
        fuse_speech(fusion["visual"], fusion["audio"], P0)["p_fake"], abs=1e-6
    )
    assert pred.p_fake >= fusion["visual"] - 1e-6, "speech can only add evidence"
    assert pred.speech and all(0 <= p <= 1 for _, _, p in pred.speech), "the judged speech segments"
    windows = pred.extras["audio_windows"]
    assert windows and all(b - a == pytest.approx(64600 / 16000) for a, b, _ in windows)
    assert "aasist-l" in pred.message


def test_cloned_voice_over_a_real_face(with_speech: Path, tmp_path: Path) -> None:
    from dfdetect.infer.aggregate import sigmoid
    from dfdetect.infer.report import render_report

    video = media("real/pcavs_Audio_Source_00086.mp4")  # 224 px: quick face detection
    fake = _mux(video, CLONE, tmp_path / "real_face_cloned_voice.mp4")
    pred = load_detector(with_speech, device="cpu").scan(fake, explain=True)  # explain: same scores
    assert pred.status == Status.OK, pred.message
    fusion = pred.fusion
    visual = float(sigmoid(pred.extras["logit"] / pred.extras["temperature"]))
    assert fusion["visual"] == pytest.approx(visual, abs=1e-6), "the visual score is the video model's own"
    assert pred.modality["audio"] > P0 and fusion["audio_excess"] > 0, "the cloned voice is heard as fake"
    assert fusion["decided_by"] == "audio" and pred.p_fake > fusion["visual"]
    assert pred.p_fake == pytest.approx(fuse_speech(visual, fusion["audio"], P0)["p_fake"], abs=1e-5)
    assert pred.timings["speech"] > 0 and pred.extras["explain"]["frames"]
    html = render_report([pred])
    assert "Speech" in html and "alt='waveform'" in html and pred.extras["waveform"]["t"]


def test_no_speech_leaves_the_video_score(with_speech: Path, prepared_clip) -> None:
    t = np.arange(prepared_clip.audio.size) / prepared_clip.sample_rate
    hum = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # audio, but no speech (VAD: none)
    clip = dataclasses.replace(prepared_clip, audio=hum, speech=[])
    detector = load_detector(with_speech, device="cpu")
    pred = detector.score(clip).prediction()
    assert pred.fusion["speech_status"] == "no_speech" and pred.fusion["audio"] is None
    assert pred.fusion["decided_by"] == "visual" and pred.status == Status.OK and not pred.speech
    assert pred.p_fake == pytest.approx(detector.score(clip, speech=False).p_fake)
    assert "no speech" in pred.message


def test_a_scan_hears_the_voice_beside_the_face_model(with_speech: Path, prepared_clip) -> None:
    """The voice is judged in a second thread while the face model runs; the result is the serial one."""
    import threading

    from dfdetect.infer.speech import hear_beside

    detector = load_detector(with_speech, device="cpu")
    hear, threads = detector.speech.hear, []

    def spy(clip):
        threads.append(threading.current_thread().name)
        return hear(clip)

    detector.speech.hear = spy
    timings: dict[str, float] = {}
    visual = lambda: detector.score(prepared_clip, speech=False)  # noqa: E731
    scores = hear_beside(detector.speech, prepared_clip, visual, timings)
    assert threads == [name for name in threads if name.startswith("dfdetect-speech")] and len(threads) == 1
    assert timings["model"] > 0 and timings["speech"] > 0
    serial = detector.score(prepared_clip).prediction()
    assert scores.heard is not None and scores.prediction().p_fake == pytest.approx(serial.p_fake, abs=1e-6)
    assert scores.prediction().fusion["audio"] == pytest.approx(serial.fusion["audio"], abs=1e-6)
