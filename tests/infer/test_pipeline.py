"""Detector.scan on real clips and a malformed corpus; model lookup; input expansion."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from dfdetect.infer.lookup import ModelNotFoundError, available_models, resolve_model
from dfdetect.infer.pipeline import Detector, load_detector
from dfdetect.io.files import expand_inputs
from dfdetect.types import Prediction, Status, Verdict
from tests.conftest import media
from tests.infer.conftest import PREPARE


def _check_scored(pred: Prediction, duration_read: float) -> None:
    assert pred.p_fake is not None and 0.0 <= pred.p_fake <= 1.0
    assert pred.verdict in set(Verdict)
    assert pred.tracks and all(0.0 <= t.p_fake <= 1.0 for t in pred.tracks)
    assert pred.timeline, "a scored video has a timeline"
    assert pred.timeline[0][0] == pytest.approx(0.0, abs=1.0)
    assert pred.timeline[-1][1] >= duration_read - 1.0, "the timeline covers what was read"
    assert all(0.0 <= p <= 1.0 for _, _, p in pred.timeline)
    assert {"prepare", "model", "total"} <= set(pred.timings)
    json.dumps(pred.to_dict())  # JSON-ready


def test_scan_real_talking_head(detector: Detector) -> None:
    path = media("real/pcavs_Audio_Source_00015.mp4")
    pred = detector.scan(path)
    assert pred.status == Status.OK, pred.message
    _check_scored(pred, PREPARE.max_duration)
    assert pred.path == str(path)
    assert pred.model == "tiny"
    assert Prediction.from_dict(json.loads(json.dumps(pred.to_dict()))).p_fake == pred.p_fake


def test_scan_no_audio_stream(detector: Detector) -> None:
    pred = detector.scan(media("real/liveportrait_d0.mp4"))  # 3 s, no audio stream
    assert pred.status == Status.NO_AUDIO, pred.message
    assert pred.message
    _check_scored(pred, 3.0)


@pytest.mark.slow
def test_scan_several_faces(detector: Detector) -> None:
    pred = detector.scan(media("real/face_recognition_short_hamilton_clip.mp4"))
    assert pred.status in (Status.OK, Status.NO_AUDIO), pred.message
    assert len(pred.tracks) >= 2, "the stage scene has several faces"
    assert len({t.track_id for t in pred.tracks}) == len(pred.tracks)


def test_malformed_batch_never_stops(detector: Detector, tmp_path: Path) -> None:
    from tests.malformed import SCAN_EXPECTED as EXPECTED
    from tests.malformed import make_malformed_corpus

    corpus = make_malformed_corpus(tmp_path / "bad")
    paths = [*corpus.values(), media("real/liveportrait_d0.mp4"), tmp_path / "missing.mp4"]
    preds = list(detector.scan_many(paths, progress=False))
    by_path = {p.path: p for p in preds}
    assert len(preds) == len(paths)
    for name, path in corpus.items():
        pred = by_path[str(path)]
        assert pred.status == EXPECTED[name], f"{name}: {pred.status} {pred.message}"
        assert pred.message, f"{name} has no message"
        assert (pred.p_fake is None) == (pred.status not in (Status.OK, Status.NO_AUDIO))
    assert by_path[str(media("real/liveportrait_d0.mp4"))].p_fake is not None, "good files still scored"
    assert by_path[str(tmp_path / "missing.mp4")].status == Status.UNREADABLE


def test_unexpected_error_becomes_status(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args, **_kwargs):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(detector, "score", boom)
    pred = detector.scan(media("real/liveportrait_d0.mp4"))
    assert pred.status == Status.ERROR
    assert "model exploded" in pred.message
    assert "total" in pred.timings


def test_load_by_path_name_and_unknown(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "mymodel.pt").write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setenv("DFDETECT_MODELS", str(models))
    assert "mymodel" in available_models()
    assert resolve_model("mymodel") == (models / "mymodel.pt", "mymodel")
    assert resolve_model(tiny_checkpoint)[0] == tiny_checkpoint
    det = load_detector("mymodel", device="cpu")
    assert det.name == "mymodel" and det.temperature == pytest.approx(1.5)
    assert det.prepare_config == PREPARE  # faces "auto": the detector its training crops came from
    assert load_detector("mymodel", device="cpu", faces=None).prepare_config == PREPARE
    other = "yunet" if PREPARE.detector != "yunet" else "mtcnn"
    assert load_detector("mymodel", device="cpu", faces=other).prepare_config.detector == other
    with pytest.raises(ModelNotFoundError, match="mymodel") as err:
        load_detector("no-such-model")
    assert "available models" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_detector(tmp_path / "absent.pt")


def test_public_api(tiny_checkpoint: Path) -> None:
    import dfdetect

    assert isinstance(dfdetect.__version__, str)
    assert isinstance(dfdetect.available_models(), list)
    det = dfdetect.load_detector(str(tiny_checkpoint), device="cpu", thresholds=(0.2, 0.8))
    assert det.thresholds == (0.2, 0.8)


def test_checkpoint_prepare_defaults() -> None:
    from dfdetect.checkpoint import Checkpoint

    pre = {"fps": 4.0, "size": 96, "margin": 1.4, "clip_frames": 8}
    base = {"model_state": {}, "model_config": {"name": "visual"}, "preprocess": pre}
    cfg = Checkpoint.from_state(base).prepare_config(max_duration=7.0)
    assert (cfg.fps, cfg.size, cfg.margin, cfg.max_duration) == (4.0, 96, 1.4, 7.0)
    recorded = Checkpoint.from_state({**base, "prepare": {"fps": 10.0, "detect_every": 2}}).prepare
    assert recorded.fps == 10.0 and recorded.detect_every == 2


def test_expand_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.MOV", "a/notes.txt", "z.mkv"):
        (tmp_path / name).write_bytes(b"0")
    found, missing = expand_inputs([tmp_path / "a", str(tmp_path / "*.mkv"), tmp_path / "nope.mp4"])
    assert [Path(p).name for p in found] == ["x.mp4", "y.MOV", "z.mkv"]
    assert missing == [str(tmp_path / "nope.mp4")]
    again, _ = expand_inputs([tmp_path / "a", tmp_path / "a" / "x.mp4"])
    assert len(again) == 2, "duplicates are dropped"


@pytest.mark.slow
def test_edge_corpus_batch(detector: Detector, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """At least 20 malformed and edge inputs in one batch: each gets its status and kind, none a traceback."""
    import logging

    from tests.malformed import EDGE_EXPECTED, SCAN_EXPECTED, make_edge_corpus, make_malformed_corpus

    bad = make_malformed_corpus(tmp_path / "bad")
    edge = make_edge_corpus(tmp_path / "edge")
    expected = {**{k: (s, None) for k, s in SCAN_EXPECTED.items()}, **EDGE_EXPECTED}
    corpus = {**bad, **edge}
    assert len(corpus) >= 20
    with caplog.at_level(logging.DEBUG):
        preds = {p.path: p for p in detector.scan_many(corpus.values(), progress=False)}
    folder = preds.pop(str(edge["folder.mp4"]))  # a folder is expanded: nothing inside it matched
    assert folder.status == Status.UNREADABLE and folder.message
    assert len(preds) == len(corpus) - 1, "the batch finished"
    for name, path in corpus.items():
        if name == "folder.mp4":
            continue
        pred, (status, kind) = preds[str(path)], expected[name]
        assert pred.status == status, f"{name}: {pred.status} {pred.message}"
        assert kind is None or pred.kind == kind, f"{name}: kind {pred.kind}"
        assert pred.message and (pred.p_fake is None) == (status not in (Status.OK, Status.NO_AUDIO))
    assert "too small" in preds[str(edge["tiny_17x31"])].message
    assert preds[str(edge["speech_wav"])].speech, "the speech segments of an audio file are judged"
    assert not [r for r in caplog.records if r.exc_info], "no traceback for an expected condition"
    assert detector.scan(edge["folder.mp4"]).status == Status.UNREADABLE


def test_scan_still_image_and_audio(detector: Detector) -> None:
    image = detector.scan(media("images/obama.jpg"))
    assert (image.status, image.kind) == (Status.OK, "image"), image.message
    assert image.tracks and image.p_fake is not None and image.timeline == []
    voice = detector.scan(media("videoretalking_audio_1.wav"))
    assert (voice.status, voice.kind) == (Status.OK, "audio"), voice.message
    assert voice.timeline and voice.speech and voice.tracks == []
    json.dumps(voice.to_dict())


def test_explain_gives_the_same_scores(detector: Detector) -> None:
    path = media("real/liveportrait_d0.mp4")
    plain, explained = detector.scan(path), detector.scan(path, explain=True)
    assert explained.p_fake == plain.p_fake and explained.timeline == plain.timeline
    assert explained.extras["explain"]["frames"] and explained.extras["thumbnails"]


def test_scan_is_extract_then_judge_anywhere(detector: Detector, tmp_path: Path) -> None:
    """The two stages of a scan (a Ray batch runs them in two processes) give the scan's prediction."""
    path = media("real/pcavs_Audio_Source_00015.mp4")
    extraction = pickle.loads(pickle.dumps(detector.extract(path)))  # what travels between workers
    assert extraction.failure is None and extraction.clip.faces and extraction.seconds > 0
    staged, plain = detector.judge(extraction), detector.scan(path)
    assert staged.to_dict() | {"timings": None} == plain.to_dict() | {"timings": None}
    assert staged.timings["total"] >= staged.timings["prepare"] + staged.timings["model"]
    broken = detector.extract(tmp_path / "missing.mp4")
    assert broken.clip is None and detector.judge(broken) is broken.failure
    assert broken.failure.status == Status.UNREADABLE


def test_mouth_crops_only_for_a_sync_head(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mouth crops feed only a lip-sync head: a model without one scores a real clip without cutting them."""
    from dfdetect.data import windows
    from dfdetect.infer.lookup import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "v2.pt").is_file():
        pytest.skip("the packaged v2 model is not installed")
    visual = load_detector("v2", device="cpu", speech=None, max_duration=2.0)
    assert "sync" not in visual.modalities and "sync" in detector.modalities
    cut = []
    real = windows.window_mouths
    monkeypatch.setattr(windows, "window_mouths", lambda *a: cut.append(1) or real(*a))
    path = media("real/pcavs_Audio_Source_00015.mp4")
    assert visual.scan(path).status == Status.OK and cut == []
    assert detector.scan(path).status == Status.OK and cut  # the demo model has a sync head


def test_inference_model_keeps_the_outputs(prepared_clip) -> None:
    """Batch norms folded into the convolutions, channels-last weights: the same logits on real faces."""
    import copy

    import torch

    from dfdetect.checkpoint import Checkpoint
    from dfdetect.infer.lookup import WEIGHTS_DIR
    from dfdetect.infer.pipeline import for_inference

    if not (WEIGHTS_DIR / "v2.pt").is_file():
        pytest.skip("the packaged v2 model is not installed")
    model = Checkpoint.load(WEIGHTS_DIR / "v2.pt").build_model("cpu").eval()
    fast = for_inference(copy.deepcopy(model))
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    norms = [m for m in fast.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms == [] and len([m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    faces = prepared_clip.faces[0].crops[:4]  # uint8 [T, H, W, 3]: real MTCNN crops
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    frames = torch.nn.functional.interpolate(x, size=160, mode="bilinear").view(2, 2, 3, 160, 160)
    with torch.inference_mode():
        want, got = model(frames)["logit"], fast(frames)["logit"]
    assert torch.allclose(got, want, atol=1e-4)
    assert for_inference("not a torch model") == "not a torch model"
