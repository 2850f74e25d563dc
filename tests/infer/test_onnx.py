"""ONNX export and scanning on onnxruntime: the shipped EfficientNet model (v2) and the demo model (audio,
lip sync).

The EfficientNet model's export is the shipped ``v2.onnx`` (checked to come from the shipped ``v2.pt``);
the demo model is exported once by ``dfdetect export ... --onnx``. Parity: onnxruntime and torch outputs on
windows of real clips agree within 1e-4 at several batch sizes and window lengths, and full scans give the
same verdicts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfdetect.checkpoint import Checkpoint, CheckpointError
from dfdetect.infer.lookup import WEIGHTS_DIR
from dfdetect.infer.onnx import OnnxModel, read_metadata
from dfdetect.infer.pipeline import load_detector
from dfdetect.infer.score import model_inputs
from tests.conftest import media
from tests.infer.conftest import make_checkpoint

ATOL = 1e-4
TALKING = "real/pcavs_Audio_Source_00015.mp4"  # a talking head with speech
FAKE = "fake/ffpp_Deepfakes_519_515.mp4"
IMAGE = "images/obama.jpg"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """``{"v2": (pt, onnx), "demo": (pt, onnx)}``: the packaged EfficientNet model's shipped export
    (checked to be the export of the shipped .pt by
    test_shipped_onnx_files_are_exports_of_the_shipped_checkpoints), and the demo model the CLI exports."""
    root = tmp_path_factory.mktemp("onnx")
    pts = {"demo": make_checkpoint(root / "demo.pt")}
    jobs = {}
    for name, pt in pts.items():
        cmd = [sys.executable, "-m", "dfdetect", "export", str(pt), "--onnx", str(root / f"{name}.onnx")]
        env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
        jobs[name] = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
    for job in jobs.values():
        out = job.communicate(timeout=600)[0]
        assert job.returncode == 0, out
        assert "max |diff|" in out, out
    shipped = {"v2": (WEIGHTS_DIR / "v2.pt", WEIGHTS_DIR / "v2.onnx")}
    return shipped | {name: (pt, root / f"{name}.onnx") for name, pt in pts.items()}


@pytest.mark.parametrize("name", ["default", "v2", "aasist-l-ft"])
def test_shipped_onnx_files_are_exports_of_the_shipped_checkpoints(name: str) -> None:
    import hashlib

    meta = read_metadata(WEIGHTS_DIR / f"{name}.onnx")
    pt = hashlib.sha256((WEIGHTS_DIR / f"{name}.pt").read_bytes()).hexdigest()
    assert meta["exported"]["source_sha256"] == pt, (
        f"{name}.onnx is stale: run `dfdetect export src/dfdetect/weights/{name}.pt --onnx "
        f"src/dfdetect/weights/{name}.onnx` (docs/onnx.md)"
    )
    assert max(meta["check"]["max_abs_diff"].values()) < ATOL and set(meta["outputs"]) >= {"logit"}


def test_onnx_sessions_do_not_spin_when_idle() -> None:
    """A scan runs the head's session right after the tower's and the voice judge beside both: idle threads
    that busy-wait take the cores the next run needs (measured: 0.09 s of a 0.28 s short-clip score)."""
    from dfdetect.models.tower import get_encoder

    key = "session.intra_op.allow_spinning"
    head = OnnxModel(WEIGHTS_DIR / "default.onnx").session.get_session_options()
    tower = get_encoder("clip-vit-b16-int8").session.get_session_options()
    assert head.get_session_config_entry(key) == tower.get_session_config_entry(key) == "0"


@pytest.fixture(scope="module")
def torch_detectors(exported) -> dict:
    """The torch detectors of both models (no speech companion; 3 s read from each file)."""
    return {
        n: load_detector(pt, device="cpu", speech=None, max_duration=3.0) for n, (pt, _) in exported.items()
    }


@pytest.fixture(scope="module")
def clips(torch_detectors) -> dict:
    """``(model, media) -> Clip`` of real media prepared once, as a scan with that model prepares it."""
    from dfdetect.data.extract import extract_clip

    out = {}
    for name, rel in [("v2", TALKING), ("v2", FAKE), ("demo", TALKING), ("demo", IMAGE)]:
        det = torch_detectors[name]
        out[name, rel] = extract_clip(media(rel), det.prepare_config, det.face_detector, {}, kinds=det.kinds)
    return out


def _compare(torch_model, onnx_model, batch: dict) -> dict[str, float]:
    """Largest |difference| per output of the two models on one batch."""
    with torch.inference_mode():
        ref = torch_model(
            batch["frames"], audio=batch["audio"], audio_mask=batch["audio_mask"], mouths=batch["mouths"]
        )
    got = onnx_model(
        batch["frames"], audio=batch["audio"], audio_mask=batch["audio_mask"], mouths=batch["mouths"]
    )
    assert set(got) <= set(ref) and "logit" in got and "segment_logits" in got
    for k, v in got.items():
        assert tuple(v.shape) == tuple(ref[k].shape), k
    return {k: float((v - ref[k]).abs().max()) for k, v in got.items()}


def _longer(batch: dict, t: int) -> dict:
    """``batch`` with windows of ``t`` frames (its frames repeated in time) and matching audio."""
    reps = -(-t // batch["frames"].shape[1])
    out = {
        k: v.repeat_interleave(reps, dim=1)[:, :t] if k in ("frames", "mouths") else v
        for k, v in batch.items()
    }
    samples = round(batch["audio"].shape[1] * t / batch["frames"].shape[1])
    out["audio"] = batch["audio"].repeat(1, reps + 1)[:, :samples]
    return out


@pytest.mark.parametrize("name", ["v2", "demo"])
def test_onnx_matches_torch_on_real_windows_at_any_batch_and_length(
    exported, torch_detectors, clips, name
) -> None:
    from dfdetect.infer.score import _streams

    torch_det, onnx_model = torch_detectors[name], OnnxModel(exported[name][1])
    clip, pre = clips[name, TALKING], torch_detectors[name].preprocess
    windows = _streams(clip, pre)[0].windows
    assert len(windows) >= 2
    for batch_size in (1, len(windows)):  # dynamic batch axis
        batch = model_inputs(windows[:batch_size], pre, "cpu", None, not clip.has_usable_audio)
        diffs = _compare(torch_det.model, onnx_model, batch)
        assert max(diffs.values()) < ATOL, diffs
    batch = model_inputs(windows[:2], pre, "cpu", None, not clip.has_usable_audio)
    for t in (1, pre.clip_frames + 5, 2 * pre.clip_frames + 7):  # dynamic time axis (and segment count)
        diffs = _compare(torch_det.model, onnx_model, _longer(batch, t))
        assert max(diffs.values()) < ATOL, (t, diffs)


def test_v2_model_onnx_describes_itself(exported) -> None:
    pt, onnx_path = exported["v2"]
    ckpt, meta = Checkpoint.load(pt), read_metadata(onnx_path)
    described = load_detector(onnx_path, device="cpu", speech=None).checkpoint
    assert meta["name"] == ckpt.name == "visual"
    assert described.preprocess == ckpt.preprocess and described.prepare == ckpt.prepare
    assert described.temperature == pytest.approx(ckpt.temperature)
    assert described.companions == ckpt.companions == {"speech": {"model": "aasist-l-ft"}}
    assert described.model_config == ckpt.model_config and described.versions == ckpt.versions
    assert meta["exported"]["opset"] >= 17 and meta["exported"]["dtype"] == "float32"
    assert meta["inputs"] == ["frames"] and {"video", "frequency"} <= set(meta["modalities"])
    assert max(meta["check"]["max_abs_diff"].values()) < ATOL
    demo = read_metadata(exported["demo"][1])
    assert demo["inputs"] == ["frames", "audio", "audio_mask", "mouths"]
    assert {"audio_logit", "sync_logit", "frame_sync_logits"} <= set(demo["outputs"])


@pytest.mark.parametrize(("name", "rel"), [("v2", FAKE), ("demo", TALKING), ("demo", IMAGE)])
def test_scans_on_onnxruntime_give_the_same_verdicts(exported, torch_detectors, clips, name, rel) -> None:
    torch_det = torch_detectors[name]
    by_torch = torch_det.score(clips[name, rel]).prediction(torch_det.thresholds, name)  # same clip and rules
    by_onnx = load_detector(exported[name][1], device="cpu", speech=None, max_duration=3.0).scan(media(rel))
    assert by_onnx.model == name and by_torch.status == by_onnx.status
    assert by_torch.verdict == by_onnx.verdict and by_onnx.verdict is not None
    assert by_onnx.p_fake == pytest.approx(by_torch.p_fake, abs=ATOL)
    assert [t.track_id for t in by_onnx.tracks] == [t.track_id for t in by_torch.tracks]
    for a, b in zip(by_onnx.timeline, by_torch.timeline, strict=True):
        assert a[:2] == b[:2] and a[2] == pytest.approx(b[2], abs=ATOL)
    for k, v in by_torch.modality.items():
        assert by_onnx.modality[k] == pytest.approx(v, abs=ATOL)


def test_speech_companion_named_in_the_metadata_scores_the_voice(exported) -> None:
    _, onnx_path = exported["v2"]
    detector = load_detector(onnx_path, device="cpu", max_duration=2.0)
    assert detector.speech is not None and detector.speech.name == "aasist-l-ft"
    pred = detector.scan(media(TALKING))
    assert str(pred.status) == "ok" and "audio" in pred.modality


def test_explain_and_uncertainty_with_an_onnx_model(
    exported, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from dfdetect.infer.uncertainty import plan_passes

    alone = shutil.copy(exported["demo"][1], tmp_path / "demo.onnx")  # no .pt beside it: no gradients
    detector = load_detector(alone, device="cpu", speech=None, max_duration=3.0)
    pred = detector.scan(media(IMAGE), explain=True, uncertainty=2)
    explain = pred.extras["explain"]
    assert explain["method"] == "attention" and ".pt checkpoint" in explain["note"]
    assert explain["frames"] and all(f["overlay"] is None for f in explain["frames"])
    assert "fake_probability" in explain["curves"]
    assert ".pt checkpoint" in caplog.text  # said once on stderr, never a traceback
    assert pred.uncertainty is not None  # test-time augmentation: no dropout in the graph
    with pytest.raises(ValueError, match="no dropout"):
        plan_passes(detector.model, 2, "dropout")
    with pytest.raises(CheckpointError, match="no training mode"):
        detector.model.train()
    beside = load_detector(exported["demo"][1], device="cpu", speech=None, max_duration=3.0)  # demo.pt there
    heat = beside.scan(media(IMAGE), explain=True).extras["explain"]
    assert heat["method"] != "attention" and any(f["overlay"] is not None for f in heat["frames"])


def test_cli_scan_with_an_onnx_model_and_a_bad_onnx_file(exported, tmp_path: Path, capsys) -> None:
    from dfdetect.cli import main

    clip = str(media(IMAGE))
    code = main(["scan", clip, "--model", str(exported["demo"][1]), "--no-speech", "--json", "--no-progress"])
    assert code in (0, 1) and '"status": "ok"' in capsys.readouterr().out
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    assert main(["scan", clip, "--model", str(bad), "--no-progress"]) == 2
    assert "cannot load ONNX model" in capsys.readouterr().err
    assert main(["export", str(exported["demo"][0])]) == 2  # neither OUT nor --onnx
    assert "--onnx" in capsys.readouterr().out


def test_adaptive_mean_is_adaptive_avg_pool1d() -> None:
    from dfdetect.models.fusion import adaptive_mean

    for length, n in [(10, 3), (161, 8), (7, 11), (81, 1), (320, 13)]:
        x = torch.randn(2, 5, length)
        expected = torch.nn.functional.adaptive_avg_pool1d(x, n)
        np.testing.assert_allclose(adaptive_mean(x, n).numpy(), expected.numpy(), atol=1e-6)
