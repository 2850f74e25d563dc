"""The default detector's recipe (``dfdetect.train.probe_fit``, ``dfdetect fit-probe``): the selection on val
and by leave-family-out cross-validation on synthetic features, then a real run of the command on faces of
../shared (the real CLIP tower, fetched once into the hub cache) and its errors.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from dfdetect.checkpoint import Checkpoint
from dfdetect.cli import main
from dfdetect.data.manifest import ManifestRow, write_manifest
from dfdetect.infer.pipeline import Detector
from dfdetect.metrics import auc, fit_platt
from dfdetect.train.probe import clip_logits
from dfdetect.train.probe_fit import HEADS, abstain_rule, candidate_name, fit_probe
from tests.conftest import MEDIA, media

FACES = MEDIA.parent / "data" / "face_images" / "train"


def _synthetic(n: int = 60, seed: int = 0) -> tuple[list[ManifestRow], list]:
    """Clips of train/val/test whose clean features separate the labels and whose ``aug`` features are the
    other label's (a variant that misleads); test features are poison (the fit must never read them)."""
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for i in range(n):
        split = ("train", "train", "val")[i % 3]
        label = i % 2
        shift = np.full(512, 0.1, np.float32)  # the tower's embedding width; means 2.3 sigma apart
        clean = rng.normal(size=(3, 512)).astype(np.float32) + (shift if label else 0)
        aug = rng.normal(size=(3, 512)).astype(np.float32) + (0 if label else shift)
        rows.append(ManifestRow(f"c{i}.mp4", label, "syn", "x", split, f"g{i}"))
        feats.append({"feat_clean": clean, "feat_aug": aug, "face_px": np.full(3, 90.0 + i),
                      "blur": np.linspace(10, 100, 3) + i})  # fmt: skip
    rows += [ManifestRow(f"t{i}.mp4", i % 2, "syn", "x", "test", f"t{i}") for i in range(4)]
    return rows, feats + ["never read"] * 4


def test_the_candidate_with_the_best_val_auc_is_chosen_and_calibrated() -> None:
    rows, feats = _synthetic()
    fit = fit_probe(rows, feats, heads=HEADS, variant_sets=(("aug",), ("clean",)), selection="val")
    assert (
        fit.selection == "val"
        and not fit.cv_auc
        and set(fit.val_auc) == {candidate_name(h, v) for h in HEADS for v in (("aug",), ("clean",))}
    )
    val = [(r, f) for r, f in zip(rows, feats, strict=True) if r.split == "val"]
    for name, cand in fit.candidates.items():  # each val AUC is the candidate's own, on the val clips
        y = [r.label for r, _ in val]
        assert cand["val_auc"] == pytest.approx(auc(y, clip_logits(cand["model"], [f for _, f in val])))
        assert cand["val_auc"] < 0.5 if name.endswith("/aug") else cand["val_auc"] > 0.8
    assert fit.chosen == max(fit.val_auc, key=fit.val_auc.get) and fit.variants == ("clean",)
    assert fit.model is fit.candidates[fit.chosen]["model"]
    assert fit.best_of(("aug",)) == max((k for k in fit.val_auc if k.endswith("/aug")), key=fit.val_auc.get)
    assert 0.05 < fit.temperature < 20.0  # fitted, not at a bound
    y_val, z_val = [r.label for r, _ in val], clip_logits(fit.model, [f for _, f in val])
    t_again, shift_again = fit_platt(
        z_val, y_val
    )  # the shift is in the model: Platt again undoes only the anchor
    anchor = fit.anchor  # Platt again undoes the anchor: z = (s - a) / k calibrated is Platt's s / k + a / k
    assert shift_again == pytest.approx(anchor["shift"] / anchor["scale"] * fit.temperature, abs=1e-3)
    assert t_again == pytest.approx(fit.temperature / anchor["scale"], rel=1e-3)
    reals = 1 / (1 + np.exp(-z_val[np.array(y_val) == 0] / fit.temperature))
    assert (
        np.mean(reals >= 0.65) <= 0.05 and fit.anchor["quantile"] == 0.95
    )  # <= 5 % of val reals called fake
    rule = abstain_rule(rows, feats)  # from the train clips: their faces are >= 90 px, so the cap of 64 holds
    assert rule["min_face_px"] == 64.0 and 10.0 < rule["min_sharpness"] < 40.0
    assert fit.rule == rule and fit.results()["chosen"] == fit.chosen
    torch.rand(3)  # whatever ran before, the same features give the same heads
    again = fit_probe(rows, feats, heads=HEADS, variant_sets=(("aug",), ("clean",)), selection="val")
    assert again.val_auc == fit.val_auc and (again.temperature, again.shift) == (fit.temperature, fit.shift)


def _families(seed: int = 0) -> tuple[list[ManifestRow], list, list[str]]:
    """Train clips of a corpus (6 fake families, 6 real sources, 60 of each label) and a small set (8 of
    each label), whose clean features separate the labels and whose ``aug`` features are the other label's;
    val clips whose clean features are reversed: val alone prefers the head trained on ``aug``."""
    rng = np.random.default_rng(seed)
    shift = np.full(512, 0.1, np.float32)
    rows, feats, sets = [], [], []
    for i in range(136):
        name, split, label = ("corpus", "train", i % 2) if i < 120 else ("small", "train", i % 2)
        if i >= 128:
            name, split = "corpus", "val"
        family = f"gen{i % 12 // 2}" if label and name == "corpus" else ""  # the small set names none
        source = f"repo{i % 12 // 2}" if not label and name == "corpus" else ""
        sep = -1 if split == "val" else 1  # val: the relation reversed
        clean = rng.normal(size=(3, 512)).astype(np.float32) + (shift * sep if label else 0)
        aug = rng.normal(size=(3, 512)).astype(np.float32) + (0 if label else shift)
        rows.append(ManifestRow(f"{name}{i}.mp4", label, name, family, split, f"g{i}", family=family,
                                source=source))  # fmt: skip
        feats.append(
            {"feat_clean": clean, "feat_aug": aug, "face_px": np.full(3, 90.0), "blur": np.full(3, 50.0)}
        )
        sets.append(name)
    return rows, feats, sets


def test_cross_validation_holds_out_whole_families_and_overrules_a_misleading_val() -> None:
    from dfdetect.train.probe_cv import cv_plan, fold_group, fold_groups

    rows, feats, sets = _families()
    train = [(r, n) for r, n in zip(rows, sets, strict=True) if r.split == "train"]
    plan = cv_plan([r for r, _ in train], [n for _, n in train], folds=3, repeats=2)
    assert set(plan.scored) == {"corpus"}  # the small set has too few clips of each label to be scored
    keys = {fold_group(r, n) for r, n in train}
    assert {"corpus/fake:gen0", "corpus/real:repo0", "small/group:g120"} <= keys
    groups = fold_groups([r for r, _ in train], [n for _, n in train])
    for folds in plan.repeats:  # every clip held out once per repeat; a group never on both sides
        assert sorted(np.concatenate(folds)) == list(range(len(train)))
        for held in folds:
            assert not set(groups[held]) & set(np.delete(groups, held))
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(*plan.repeats, strict=True))  # shuffled
    heads = {"logreg-C0.05": HEADS["logreg-C0.05"]}
    by_val = fit_probe(
        rows, feats, heads=heads, variant_sets=(("aug",), ("clean",)), sets=sets, selection="val"
    )
    by_cv = fit_probe(rows, feats, heads=heads, variant_sets=(("aug",), ("clean",)), sets=sets, folds=3)
    assert by_val.variants == ("aug",) and by_cv.variants == ("clean",) and by_cv.selection == "cv"
    cv = by_cv.cv_auc
    assert cv["logreg-C0.05/clean"]["corpus"] > 0.8 > 0.2 > cv["logreg-C0.05/aug"]["corpus"]
    assert by_cv.results()["cv_auc"] == cv and by_cv.score(by_cv.chosen) == min(cv[by_cv.chosen].values())


def test_folds_hold_out_a_repository_with_every_family_and_source_it_shows() -> None:
    """A page showing two families and its own real clips is one group (transitively through a family
    shown on two pages), so no fold trains on part of a page and scores the rest."""
    from dfdetect.train.probe_cv import fold_groups

    def row(label: int, family: str = "", source: str = "", group: str = "") -> ManifestRow:
        return ManifestRow(f"{family}{source}{group}.mp4", label, "c", family, "train", group, family=family,
                           source=source)  # fmt: skip

    rows = [row(1, "a", "page1"), row(1, "b", "page1"), row(1, "b", "page2"), row(0, source="page2"),
            row(0, source="page3"), row(1, "c", "page4"), row(0, group="g1")]  # fmt: skip
    groups = fold_groups(rows, ["corpus"] * len(rows))
    assert len(set(groups[:4])) == 1  # families a and b, pages 1 and 2, page 2's reals
    assert len(set(groups)) == 4 and len(set(groups[4:])) == 3  # page 3's reals, family c, the bare row


def test_too_few_groups_to_cross_validate_falls_back_to_val() -> None:
    rows, feats = _synthetic(30)  # 10 train clips of each label: no set reaches CV_MIN_CLIPS
    fit = fit_probe(rows, feats, heads={"logreg-C0.05": HEADS["logreg-C0.05"]})
    assert fit.selection == "val" and fit.cv_auc == {}
    with pytest.raises(ValueError, match="unknown selection 'test'"):
        fit_probe(rows, feats, selection="test")
    with pytest.raises(ValueError, match="at least 2 folds"):
        fit_probe(rows, feats, folds=1)


def test_a_split_without_both_labels_cannot_be_fitted() -> None:
    from dfdetect.train.probe_fit import ProbeFitError

    rows, feats = _synthetic()
    only_reals = [f if r.label == 0 or r.split != "val" else None for r, f in zip(rows, feats, strict=True)]
    with pytest.raises(ProbeFitError, match="val split has cached features of labels \\[0\\] only"):
        fit_probe(rows, only_reals)


def test_frames_per_clip_are_part_of_the_feature_cache_key() -> None:
    from dfdetect.train.probe_fit import ProbeFitError, feature_settings

    three, eight = feature_settings(), feature_settings(max_windows=8)
    assert (three.max_windows, eight.max_windows) == (3, 8) and three.key("a.mp4") != eight.key("a.mp4")
    with pytest.raises(ProbeFitError, match="at least 1"):
        feature_settings(max_windows=0)


def _manifest(tmp_path) -> tuple:
    """Real faces: train and val of each label from ../shared/data/face_images, a short real video and the
    FF++ fake in train, a faceless image; two test rows (never read)."""
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    rows = [ManifestRow(str(blank), 0, "faces", "real", "train", "blank")]
    files = {kind: sorted((FACES / kind).glob("*.jpg"))[:7] for kind in ("real", "fake")}
    for i, split in enumerate(["train"] * 3 + ["val"] * 3 + ["test"]):
        for label, kind in ((0, "real"), (1, "fake")):
            path = files[kind][i]
            rows.append(ManifestRow(str(path), label, "faces", kind, split, path.stem))
    rows += [
        ManifestRow(str(media("real/pcavs_Pose_Source_00067.mp4")), 0, "media", "real", "train", "pcavs"),
        ManifestRow(str(media("fake/ffpp_Deepfakes_519_515.mp4")), 1, "media", "ffpp", "train", "519"),
    ]
    return write_manifest(rows, tmp_path / "faces.csv"), rows


def test_fit_probe_command_end_to_end(tmp_path, capsys) -> None:
    manifest, rows = _manifest(tmp_path)
    feats, out = tmp_path / "features", tmp_path / "run"
    args = ["fit-probe", str(manifest), "--features", str(feats), "--threads", "2", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "chosen " in printed and "train: 5 real, 4 fake; 1 without a face, 0 not cached" in printed
    assert "false alarms: 5% of 3 val reals" in printed  # what the calibration's anchor did
    cached = {p: p.stat().st_mtime_ns for p in (feats / "faces").glob("*.npz")}
    assert len(cached) == 15  # train and val rows only: the test rows are never read
    ckpt = Checkpoint.load(out / "clip-probe.pt")
    assert ckpt.name == "clip-probe" and ckpt.temperature > 0 and ckpt.prepare_config().detector == "yunet"
    assert set(ckpt.calibration["abstain"]) == {"min_face_px", "min_sharpness"}
    held_out = next(r.path for r in rows if r.split == "test")
    scanned = Detector(ckpt, speech=None, device="cpu").scan(held_out)  # as a user scans a file
    assert scanned.status == "ok" and 0.0 <= scanned.p_fake <= 1.0
    assert ckpt.preprocess.fps == 0.5 and ckpt.preprocess.segment_seconds == 2.0  # one crop per 2 s
    assert all(t1 - t0 == 1.0 for t0, t1, _ in scanned.timeline[:-1])  # the timeline is still per second
    config = ckpt.train_config
    assert config["command"] == "dfdetect " + " ".join(args)
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert config["manifests"] == [{"name": "faces", "path": str(manifest), "sha256": digest, "rows": 17}]
    assert (
        config["features"]["encoder"] == "clip-vit-b16-int8"
        and '"detector":"yunet"' in config["features"]["tag"]
    )
    results = json.loads((out / "fit.json").read_text())
    assert results["chosen"] == ckpt.metrics["chosen"] and len(results["val_auc"]) == 2 * len(HEADS)
    assert results["rows"]["val"] == {"real": 3, "fake": 3, "no_face": 0, "not_cached": 0}
    assert main([*args[:-1], str(tmp_path / "again")]) == 0  # the same features: nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in (feats / "faces").glob("*.npz")} == cached
    again = json.loads((tmp_path / "again" / "fit.json").read_text())
    assert again["extracted"]["faces"]["done"] == 0 and again["extracted"]["faces"]["cached"] == 15
    assert again["val_auc"] == results["val_auc"] and again["temperature"] == results["temperature"]


@pytest.mark.parametrize(
    ("header", "line", "expected"),
    [
        ("path,label", "a.mp4,0", "no train/val/test split"),
        ("path,label,split", "a.mp4,0,holdout", "split 'holdout'"),
        ("path,label,split", "a.mp4,0,train", "the val split needs real (0) and fake (1) rows"),
    ],
)
def test_manifests_the_recipe_cannot_use_are_refused(tmp_path, capsys, header, line, expected) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{header}\n{line}\nb.mp4,1{',train' if 'split' in header else ''}\n")
    assert main(["fit-probe", str(manifest), "--features", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.npz")) and not (tmp_path / "clip-probe.pt").exists()


def test_a_tower_that_cannot_load_stops_the_fit_with_its_reason(tmp_path, monkeypatch) -> None:
    """A missing tower (or the onnx package its graph cut needs) is one error before any clip, not a
    failure per clip; cutting a graph without onnx says what to install."""
    import sys

    import dfdetect.models.probe as probe_module
    from dfdetect.models.tower import EncoderError, cut_graph
    from dfdetect.train.probe_fit import ProbeFitError, RowSet, compute_features, feature_settings

    def unloadable(*args, **kwargs):
        raise EncoderError("cannot load the clip-vit-b16-int8 tower (x.onnx): no such file")

    monkeypatch.setattr(probe_module, "get_encoder", unloadable)
    row = ManifestRow(str(tmp_path / "a.mp4"), 0, "c", "", "train", "g")
    sets = [RowSet("c", tmp_path / "c.csv", "", [row])]
    with pytest.raises(ProbeFitError, match="cannot load the clip-vit-b16-int8 tower"):
        compute_features(sets, tmp_path / "features", feature_settings(), threads=1)
    assert not (tmp_path / "features" / "c").exists()  # no clip was tried
    monkeypatch.setitem(sys.modules, "onnx", None)
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(EncoderError, match="needs the onnx package"):
        cut_graph(tmp_path / "m.onnx", ["hidden"])
