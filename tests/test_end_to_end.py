"""prepare -> train -> `dfdetect eval` with held-back pseudo-fakes, calibration and perturbations, CI-sized.

The demo's users have real videos only: the evaluation adds one SBI, one desynced and one audio-swapped
copy of each held-back real video, so the report has both classes, per-kind AUCs and a calibration fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dfdetect import cli
from dfdetect.checkpoint import read_state
from dfdetect.data.manifest import read_manifest, select
from dfdetect.eval.evaluate import read_jsonl
from dfdetect.eval.report import SECTIONS
from dfdetect.train.run import train_from_config

DEMO = "configs/experiments/demo.yaml"
KINDS = ("sbi", "desync", "swap")


def _overrides(data: Path) -> list[str]:
    """The demo recipe, CI-sized (as in tests/train/test_demo.py)."""
    values = {
        "data.sources": f"[{{prepared: '{data}'}}]",
        "data.val_split": "val",
        "data.num_workers": 0,
        "data.windows_per_video": 8,
        "train.epochs": 2,
        "train.progress": "false",
        "train.patience": "null",
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.mark.slow
def test_prepare_train_eval_with_pseudofakes_writes_the_full_report(demo_data, tmp_path):
    threads = torch.get_num_threads()
    try:
        run = train_from_config(DEMO, _overrides(demo_data), run_dir=tmp_path / "run", resume=False)
    finally:
        torch.set_num_threads(threads)  # the demo config sets 1 thread
    checkpoint = run / "checkpoints" / "best.pt"
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(checkpoint), "--manifest", str(demo_data / "manifest.csv")]
    argv += ["--split", "val", "--out", str(out), "--pseudofakes", "--calibrate"]
    argv += ["--perturb-only", "jpeg", "h264", "--run-dir", str(run), "--bootstrap", "50", "--no-progress"]
    assert cli.main(argv) == 0

    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for section in SECTIONS:
        assert f"## {section}" in md and section in html, section
    assert "### By method" in md

    reals = [r.path for r in select(read_manifest(demo_data / "manifest.csv"), "val")]
    assert len(reals) == 3 and all(Path(p).is_absolute() for p in reals)
    records = read_jsonl(out / "predictions.jsonl")
    expected = reals + [f"{p}#{k}" for p in reals for k in KINDS]  # every val clip has a face and audio
    assert sorted(r["path"] for r in records) == sorted(expected)
    assert all(r["p_fake"] is not None for r in records)
    for r in records:
        path, _, kind = r["path"].partition("#")
        ex = r["extras"]
        assert (ex["label"], ex["method"]) == ((1, kind) if kind else (0, "real")), r["path"]
        assert ex["group"] == Path(path).stem

    metrics = json.loads((out / "metrics.json").read_text())
    video = metrics["levels"]["video"]
    assert 0.0 <= video["auc"] <= 1.0 and video["n"] == 12, video
    by_method = {row[0]: row for row in metrics["breakdowns"]["method"]}
    for kind in KINDS:  # [value, n, n_real, n_fake, AUC, acc, mean p]: 3 fakes against the 3 reals
        assert by_method[kind][1] == 3 and 0.0 <= by_method[kind][4] <= 1.0, by_method[kind]
        assert f"| {kind} |" in md
    assert metrics["protocol"]["pseudofakes"]["kinds"] == list(KINDS)
    assert metrics["protocol"]["pseudofakes"]["counts"] == dict.fromkeys(KINDS, 3)

    perturb = json.loads((out / "perturb.json").read_text())
    assert {p["perturbation"] for p in perturb} == {"jpeg", "h264"} and all(p["n"] == 12 for p in perturb)
    assert (out / "figures" / "training.png").is_file(), "training curves from the run's metrics.jsonl"
    assert "Not available" not in md.split("## Training curves")[1].split("## Figures")[0]

    calibration = json.loads((out / "calibration.json").read_text())
    state = read_state(checkpoint)
    assert state["calibration"]["temperature"] == pytest.approx(calibration["temperature"])
    assert calibration["n"] == 12  # fitted on the val reals and their pseudo-fakes
    assert json.loads((out / "protocol.json").read_text())["temperature"] == calibration["temperature"]
