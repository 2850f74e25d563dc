"""eval --uncertainty: is the spread informative? Metrics on hand-made records, report section, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dfdetect.eval.report import Doc
from dfdetect.eval.uncertainty import accuracy_after_abstaining, informativeness, report_section
from tests.conftest import media


def _record(label: int, p: float, std: float, crosses: bool = False) -> dict:
    u = {"method": "dropout", "passes": 4, "std": std, "low": p - 2 * std, "high": p + 2 * std}
    return {"p_fake": p, "extras": {"label": label}, "uncertainty": {**u, "crosses_band": crosses}}


def _records() -> list[dict]:
    """10 videos: 8 right decisions with small spreads, 2 wrong ones with the largest spreads."""
    right = [_record(i % 2, 0.9 if i % 2 else 0.1, 0.01 * (i + 1)) for i in range(8)]
    wrong = [_record(0, 0.6, 0.20, crosses=True), _record(1, 0.45, 0.15)]
    unscored = {"p_fake": None, "extras": {"label": 1}, "uncertainty": None}
    plain = {"p_fake": 0.3, "extras": {"label": 1}, "uncertainty": None}  # scored without passes: ignored
    return right + wrong + [unscored, plain]


def test_informative_spread_on_hand_made_records() -> None:
    m = informativeness(_records())
    assert m["n"] == 10 and m["n_wrong"] == 2 and m["n_crosses_band"] == 1
    assert m["auc_std"] == pytest.approx(1.0) and m["auc_width"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["abstain"] == {"0.1": pytest.approx(8 / 9), "0.2": pytest.approx(1.0)}
    assert m["curve"][0] == [0.0, pytest.approx(0.8)] and m["curve"][-1][0] == 0.5
    assert m["mean_std_wrong"] > m["mean_std_right"]
    # the wrong decisions are also the ones closest to 0.5 here, so the baseline does as well
    assert m["auc_closeness"] == pytest.approx(1.0)


def test_uninformative_and_degenerate_cases() -> None:
    # the wrong decisions have the *smallest* spread: AUC 0, abstaining only removes right ones
    recs = [_record(0, 0.1, 0.1 + 0.01 * i) for i in range(8)] + [_record(0, 0.8, 0.0), _record(1, 0.2, 0.0)]
    m = informativeness(recs)
    assert m["auc_std"] == pytest.approx(0.0) and m["abstain"]["0.2"] == pytest.approx(0.75)
    all_right = informativeness([_record(0, 0.1, 0.1), _record(1, 0.9, 0.2)])
    assert all_right["auc_std"] is None and all_right["accuracy"] == 1.0  # nothing to separate
    assert informativeness([{"p_fake": 0.2, "extras": {"label": 0}}]) == {"n": 0}
    correct = np.array([False, True, True])
    assert accuracy_after_abstaining(correct, np.zeros(3), 0.34) == 1.0, "ties: in record order"
    assert np.isnan(accuracy_after_abstaining(correct, np.zeros(3), 1.0))


def test_report_section_renders_with_the_abstention_plot(tmp_path: Path) -> None:
    doc = Doc("t", tmp_path)
    m = report_section(doc, _records(), tmp_path / "figures")
    assert (tmp_path / "figures" / "abstention.png").stat().st_size > 1000
    md = doc.markdown()
    assert "## Uncertainty" in md and "AUC of std (wrong vs right) | 1.0000" in md
    assert "accuracy after abstaining on the most uncertain 10%" in md and "4 dropout passes" in md
    assert "<img" in doc.html() and m["n"] == 10
    empty = Doc("t", tmp_path)
    assert report_section(empty, [], tmp_path) == {"n": 0} and "Not run" in empty.markdown()


def test_eval_cli_uncertainty_end_to_end(tmp_path: Path) -> None:
    """Two real clips prepared and scored by a tiny model with 3 dropout passes each, through the CLI."""
    from dfdetect.cli import main
    from dfdetect.config import PrepareConfig
    from dfdetect.data.manifest import ManifestRow, write_manifest
    from dfdetect.data.prepare import prepare
    from tests.infer.conftest import make_checkpoint

    clips = [("real/liveportrait_d0.mp4", 0), ("real/pcavs_Audio_Source_00015.mp4", 1)]  # 1: a stand-in
    rows = [
        ManifestRow(path=str(media(c)), label=y, dataset="folder", method="x", split="test", group=c)
        for c, y in clips
    ]
    config = PrepareConfig(max_duration=2.0, fps=5.0, size=64, detect_size=320, min_face_size=20)
    prepare(rows, tmp_path / "data", config, workers=1, progress=False)
    write_manifest(rows, tmp_path / "data" / "manifest.csv")
    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(ckpt), "--manifest", str(tmp_path / "data" / "manifest.csv")]
    code = main([*args, "--out", str(out), "--uncertainty", "3", "--bootstrap", "10", "--no-progress"])
    assert code == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(r["uncertainty"]["passes"] == 3 and r["uncertainty"]["std"] > 0 for r in records)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["uncertainty"]["n"] == 2 and len(metrics["uncertainty"]["curve"]) == 11
    assert "## Uncertainty" in (out / "report.md").read_text()
    assert (out / "figures" / "abstention.png").is_file()
