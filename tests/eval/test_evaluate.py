"""End to end: prepare real clips -> evaluate -> predictions.jsonl, full report, perturbation table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfdetect.config import PrepareConfig, PreprocessConfig
from dfdetect.data.manifest import ManifestRow, read_manifest, write_manifest
from dfdetect.eval.evaluate import evaluate, read_jsonl
from dfdetect.eval.report import SECTIONS, build_report
from dfdetect.infer.pipeline import Detector
from tests.eval.conftest import StubModel, media

# label 1 for a real clip is a stand-in fake (only one real fake ships with the test media)
VIDEOS = [
    ("real/pcavs_Audio_Source_00015.mp4", 0, "voxceleb", "real"),
    ("real/ffpp_orig_519.mp4", 0, "ffpp", "real"),
    ("fake/ffpp_Deepfakes_519_515.mp4", 1, "ffpp", "Deepfakes"),
    ("real/videoretalking_face_1.mp4", 1, "voxceleb", "standin"),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from dfdetect.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    rows = [
        ManifestRow(
            path=str(media(rel)), label=y, dataset=ds, method=m, split="test", group=rel, compression="c23"
        )
        for rel, y, ds, m in VIDEOS
    ]
    missing = str(out / "missing.mp4")  # a video that cannot be read: reported, never scored
    rows.append(ManifestRow(path=missing, label=0, dataset="folder", method="real", split="test", group="x"))
    config = PrepareConfig(max_duration=2.0, fps=5.0, size=64, detect_size=320, min_face_size=20)
    prepare(rows, out, config, workers=1, progress=False)
    write_manifest(rows, out / "manifest.csv")
    write_manifest([r for r in rows if r.dataset == "ffpp"], out / "ffpp.csv")
    return out


def _stub_scorer() -> Detector:
    pre = PreprocessConfig(fps=5.0, size=64, clip_frames=5, segment_seconds=0.5, mouth_size=32)
    return Detector.from_model(StubModel(pre.num_segments), pre, name="stub")


@pytest.mark.slow
def test_evaluate_writes_predictions_and_full_report(prepared, tmp_path):
    out = tmp_path / "eval"
    report = evaluate(
        _stub_scorer(),
        [prepared / "manifest.csv", prepared / "ffpp.csv"],
        cache_dir=[prepared / "cache", prepared / "cache"],
        out_dir=out,
        ablation=True,
        perturb={"jpeg": [50], "h264": [35], "audio_noise": [10], "desync": [0.5]},
        progress=False,
        n_boot=50,
    )
    rows = read_manifest(prepared / "manifest.csv")
    records = read_jsonl(out / "predictions.jsonl")
    assert [r["path"] for r in records] == [r.path for r in rows]  # keyed by the full path, manifest order
    by_path = {r["path"]: r for r in records}
    assert (
        by_path[rows[-1].path]["status"] not in ("ok", "no_audio")
        and by_path[rows[-1].path]["p_fake"] is None
    )
    ffpp = by_path[str(media("real/ffpp_orig_519.mp4"))]
    assert ffpp["status"] == "no_audio" and ffpp["p_fake"] is not None  # FF++ has no audio
    for r in records:
        assert {"label", "method", "dataset", "compression", "category"} <= set(r["extras"])
    md = report.read_text()
    for section in SECTIONS:
        assert f"## {section}" in md, section
    for sub in ("By dataset", "By method", "By compression", "By FakeAVCeleb category"):
        assert f"### {sub}" in md
    requested = md.split("## Cross-dataset")[1].split("## Adversarial robustness")[0]  # up to perturbations
    assert "Not run" not in requested
    assert "Not run: use `--attack" in md  # sections not asked for say how to get them
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # ROC, PR, reliability, histogram, perturbations...
    perturb = json.loads((out / "perturb.json").read_text())
    assert [(p["perturbation"], p["severity"]) for p in perturb] == [
        ("jpeg", 50),
        ("h264", 35),
        ("audio_noise", 10),
        ("desync", 0.5),
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"video", "segment", "frame"} <= set(metrics["levels"])
    card = metrics["protocol"]
    assert card["aggregation"] == "mean" and len(card["manifests"][0]["hash"]) == 16
    assert card["detector"] == "mtcnn" and card["crop_size"] == 64
    assert len(list((out / "ablation").glob("predictions-*.jsonl"))) == 2
    # the report is rebuilt from the files alone
    (out / "report.md").unlink()
    assert "## Worst-predicted videos" in build_report(out, n_boot=20).read_text()


@pytest.mark.slow
def test_evaluate_checkpoint_of_a_tiny_model_with_calibration(prepared, tmp_path):
    """A checkpoint of an untrained tiny model (helper D's factory): evaluate + --calibrate + CLI."""
    factory = pytest.importorskip("dfdetect.models.factory", reason="models.factory not written yet")
    import torch

    from dfdetect.checkpoint import read_state, save_state
    from dfdetect.cli import main

    pre = PreprocessConfig(fps=5.0, size=64, clip_frames=5, segment_seconds=0.5, mouth_size=32)
    cfg = {
        "name": "av",
        "backbone": "test_efficientnet",
        "fps": pre.fps,
        "segment_seconds": pre.segment_seconds,
    }
    torch.manual_seed(0)
    model = factory.create_model(**{**cfg, "pretrained": False})
    ckpt = tmp_path / "tiny.pt"
    save_state(ckpt, {"model_state": model.state_dict(), "model_config": cfg, "preprocess": pre.model_dump()})
    rows = read_manifest(prepared / "manifest.csv")
    write_manifest([r.with_split("val") for r in rows] + [], tmp_path / "val" / "manifest.csv")
    out = tmp_path / "eval"
    rc = main(
        ["eval", "--checkpoint", str(ckpt), "--manifest", str(tmp_path / "val" / "manifest.csv"),
         "--cache", str(prepared / "cache"), "--split", "val", "--out", str(out), "--calibrate",
         "--bootstrap", "20", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    t = read_state(ckpt)["calibration"]["temperature"]
    assert t > 0 and json.loads((out / "calibration.json").read_text())["temperature"] == pytest.approx(t)
    records = read_jsonl(out / "predictions.jsonl")
    scored = [r for r in records if r["p_fake"] is not None]
    assert len(scored) == 4 and all(r["extras"]["temperature"] == pytest.approx(t) for r in scored)
