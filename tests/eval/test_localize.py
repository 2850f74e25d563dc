"""Temporal localization scores (hand-computed cases) and the report's section, end to end on real frames."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dfdetect.config import PreprocessConfig
from dfdetect.data import cache
from dfdetect.data.manifest import ManifestRow, write_manifest
from dfdetect.eval.evaluate import evaluate, read_jsonl
from dfdetect.eval.localize import (
    average_precision,
    average_recall,
    iou_1d,
    localization_scores,
    proposals,
    second_labels,
)
from dfdetect.infer.pipeline import Detector
from tests.eval.conftest import StubModel, make_clip


def _p(*rows):
    return np.array(rows, np.float64).reshape(-1, 3)


def _t(*spans):
    return np.array(spans, np.float64).reshape(-1, 2)


def test_iou_1d():
    np.testing.assert_allclose(iou_1d(_t([0, 2], [0, 1]), _t([1, 3], [2, 3])), [[1 / 3, 0], [0, 0]])


def test_proposals_group_runs_at_every_threshold():
    curve = [(0, 1, 0.1), (1, 2, 0.8), (2, 3, 0.9), (3, 4, 0.2)]
    props = proposals(curve, thresholds=(0.15, 0.5, 0.85))
    np.testing.assert_allclose(props, [[0.9, 2, 3], [0.85, 1, 3], [(0.8 + 0.9 + 0.2) / 3, 1, 4]])
    assert proposals(curve, thresholds=(0.95,)).shape == (0, 3)
    gap = proposals([(0, 1, 0.9), (2, 3, 0.7)], thresholds=(0.5,))  # no score for 1..2 s: two runs
    np.testing.assert_allclose(gap, [[0.9, 0, 1], [0.7, 2, 3]])
    assert len(proposals([(i, i + 1, (i % 10) / 10) for i in range(200)], most=100)) == 100


def test_average_precision_hand_computed():
    videos = [
        (_p([0.9, 1, 3], [0.6, 0, 4]), _t([1, 3])),  # TP; IoU 0.5 is not > 0.5: FP
        (_p([0.8, 0, 1]), _t()),  # a real video: every proposal is a false positive
        (_p([0.7, 0, 2]), _t([0, 2], [5, 6])),  # TP; the second span is missed
    ]
    # ranked TP FP TP FP, 3 spans: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3
    # interpolated: 1 on (0, 1/3], 2/3 on (1/3, 2/3] -> AP = 1/3 + 2/9
    assert average_precision(videos, 0.5) == pytest.approx(5 / 9)
    assert average_precision(videos, 0.95) == pytest.approx(5 / 9)  # both TPs are exact
    assert average_precision([(_p([0.9, 1, 3]), _t([1, 3]))], 0.5) == pytest.approx(1.0)
    assert average_precision([(_p([0.9, 0, 1]), _t())], 0.5) is None  # no spans to find


def test_average_recall_hand_computed():
    videos = [
        (_p([0.9, 1, 3], [0.6, 0, 4]), _t([1, 3])),
        (_p([0.7, 0, 2], [0.5, 4.5, 6]), _t([0, 2], [5, 6])),  # IoU([4.5, 6], [5, 6]) = 2/3
    ]
    ar = average_recall(videos, ns=(1, 2))
    assert ar[1] == pytest.approx(2 / 3)  # top-1: 2 of 3 spans at every IoU threshold
    assert ar[2] == pytest.approx((10 * 2 + 4) / 30)  # the 3rd span counts at IoU 0.5, 0.55, 0.6, 0.65


def test_second_labels_and_scores_of_records():
    assert second_labels([(0, 1, 0.1), (1, 2, 0.9), (2, 3, 0.2)], _t([1.5, 1.7])) == (
        [0, 1, 0],
        [0.1, 0.9, 0.2],
    )
    fake = {"timeline": [[0, 1, 0.2], [1, 2, 0.9], [2, 3, 0.3]], "extras": {"segments": [[1.0, 2.0]]}}
    real = {"timeline": [[0, 1, 0.1], [1, 2, 0.4]], "extras": {"segments": []}}
    unknown = {"timeline": [[0, 1, 0.99]], "extras": {"segments": None}}  # whole-video labels: left out
    unscored = {"timeline": [], "extras": {"segments": [[0.0, 0.5]]}}  # counted, nothing proposed
    s = localization_scores([fake, real, unknown, unscored])
    assert (s["n_videos"], s["n_segments"]) == (3, 2)
    assert s["ap"]["0.5"] == pytest.approx(0.5) and s["ar"]["100"] == pytest.approx(0.5)
    assert s["step_auc"] == pytest.approx(1.0)  # the fake second has the highest p


def test_eval_report_scores_localization(tmp_path):
    """Frames made bright exactly in each fake's manipulated span: the stub model (logit = brightness)
    must localise them perfectly, and the report says so with its table and timeline plot."""
    pre = PreprocessConfig(fps=5.0, size=64, clip_frames=5, segment_seconds=0.5, mouth_size=32)
    spans = {"/v/real.mp4": [], "/v/fake1.mp4": [[1.0, 2.0]], "/v/fake2.mp4": [[0.0, 1.0]]}
    base = make_clip(seconds=3.0)
    rows = []
    for path, segs in spans.items():
        face = base.faces[0]
        crops = np.array(face.crops)
        for a, b in segs:
            crops[(face.track.timestamps >= a) & (face.track.timestamps < b)] = 255
        clip = dataclasses.replace(base, path=path, faces=[dataclasses.replace(face, crops=crops)])
        cache.write_entry(tmp_path / "cache", clip)
        segments = tuple(tuple(s) for s in segs)
        rows.append(ManifestRow(path, int(bool(segs)), "lavdf", "m", "test", path, segments=segments))
    write_manifest(rows, tmp_path / "manifest.csv")
    detector = Detector.from_model(StubModel(pre.num_segments), pre, name="stub")
    report = evaluate(detector, tmp_path / "manifest.csv", tmp_path / "cache", out_dir=tmp_path / "eval",
                      progress=False, n_boot=20)  # fmt: skip
    records = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert {r["path"]: r["extras"]["segments"] for r in records} == spans
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    timeline = metrics["localization"][0]
    assert timeline["level"] == "timeline" and timeline["n_segments"] == 2
    assert timeline["ap"] == {"0.5": 1.0, "0.75": 1.0, "0.95": 1.0}
    assert timeline["ar"]["10"] == 1.0 and timeline["step_auc"] == 1.0
    md = report.read_text()
    section = md.split("## Temporal localization")[1].split("\n## ")[0]
    assert "| timeline | 3 | 2 | 1.0000 | 1.0000 | 1.0000 |" in section
    assert "figures/localization.png" in section and (tmp_path / "eval/figures/localization.png").is_file()


def test_report_without_segment_labels_says_so(tmp_path):
    from dfdetect.eval.localize import report_section
    from dfdetect.eval.report import Doc

    doc = Doc("t", tmp_path)
    assert report_section(doc, [{"timeline": [], "extras": {"segments": None}}], tmp_path) == []
    assert "Not available: the manifest has no segment labels" in doc.markdown()


def test_sbi_partial_pseudofakes_know_their_span(tmp_path):
    """`--pseudofakes sbi_partial` on real videos alone: each fake blends one span and its row says which;
    the real videos count as videos without spans, so the report scores localization."""
    from dfdetect.eval.pseudofakes import PseudoFakeSet, partial_span

    base = make_clip(seconds=4.0)
    rows = []
    for name in ("a", "b"):
        clip = dataclasses.replace(base, path=f"/v/{name}.mp4")
        cache.write_entry(tmp_path / "cache", clip)
        rows.append(ManifestRow(clip.path, 0, "folder", "real", "test", clip.path))
    fakes = PseudoFakeSet(rows, tmp_path / "cache", ["sbi_partial"])
    assert [r.path for r in fakes.rows] == ["/v/a.mp4#sbi_partial", "/v/b.mp4#sbi_partial"]
    spans = {r.path: r.segments for r in fakes.rows}
    a0, a1 = spans["/v/a.mp4#sbi_partial"][0]
    assert spans["/v/a.mp4#sbi_partial"] == (partial_span(base, "/v/a.mp4"),) != spans["/v/b.mp4#sbi_partial"]
    assert 1.0 <= a1 - a0 <= 0.5 * 4.0 + 1e-6 and 0 <= a0 and a1 <= 4.0
    fake = fakes.load(fakes.rows[0])
    t = base.faces[0].track.timestamps
    changed = [
        not np.array_equal(x, y) for x, y in zip(fake.faces[0].crops, base.faces[0].crops, strict=True)
    ]
    assert changed == [bool(a0 <= s < a1) for s in t]  # exactly the crops inside the span
    write_manifest(rows, tmp_path / "manifest.csv")
    pre = PreprocessConfig(fps=5.0, size=64, clip_frames=5, segment_seconds=0.5, mouth_size=32)
    detector = Detector.from_model(StubModel(pre.num_segments), pre, name="stub")
    evaluate(detector, tmp_path / "manifest.csv", tmp_path / "cache", out_dir=tmp_path / "eval",
             progress=False, n_boot=20, pseudofakes=["sbi_partial"])  # fmt: skip
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())["localization"][0]
    assert (result["n_videos"], result["n_segments"]) == (4, 2)
    assert 0.0 <= result["ap"]["0.5"] <= 1.0 and result["step_auc"] is not None
