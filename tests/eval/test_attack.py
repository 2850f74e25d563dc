"""Adversarial robustness on real clips: FGSM / PGD against a detector whose behaviour the test controls.

Two real face videos and their held-back self-blended pseudo-fakes, one 2-frame window each. The attacked
model is a linear probe on pooled pixels, fitted here to separate those four windows: for a linear model a
sign-gradient step provably moves every sample toward the other class, so each assertion holds for any
correct attack (the budget holds, the loss rises, the report shows the drop), whatever the shipped weights
happen to do. The transfer test still scores with the packaged EfficientNet model, v2 (it asserts no
particular score).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfdetect.cli import build_parser
from dfdetect.cli.eval import attack_spec
from dfdetect.config import PreprocessConfig
from dfdetect.data.cache import write_entry
from dfdetect.data.manifest import ManifestRow, write_manifest
from dfdetect.eval.attack import AttackSpec, parse_eps, run_attacks
from dfdetect.eval.evaluate import evaluate, predict_rows, read_jsonl, with_pseudofakes
from dfdetect.infer.lookup import WEIGHTS_DIR
from dfdetect.infer.pipeline import Detector
from dfdetect.infer.score import model_inputs
from dfdetect.models.adversarial import attack_loss, fgsm, model_batch, pgd, to_pixels
from tests.eval.conftest import make_clip

VIDEOS = ("real/pcavs_Pose_Source_00067.mp4", "real/pcavs_Pose_Source_00473.mp4")
EPS = 2 / 255


class PixelProbe(torch.nn.Module):
    """``logit = w . pool(frames) + b``: 4x4 average-pooled RGB, averaged over the window's frames."""

    modalities = ("video",)

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 4 * 4, 1)

    def forward(self, frames: torch.Tensor, **_: object) -> dict[str, torch.Tensor]:
        b, t = frames.shape[:2]
        pooled = torch.nn.functional.adaptive_avg_pool2d(frames.flatten(0, 1), 4)  # [B*T, 3, 4, 4]
        logit = self.linear(pooled.view(b, t, -1).mean(1)).squeeze(1)  # [B]
        return {"logit": logit, "segment_logits": logit[:, None]}


PRE = PreprocessConfig(fps=5.0, size=160, clip_frames=2, mouth_size=32)


@pytest.fixture(scope="module")
def default() -> Detector:
    """The packaged EfficientNet detector (v2), without its speech companion (the transfer test's target)."""
    return Detector.from_checkpoint(WEIGHTS_DIR / "v2.pt", device="cpu", speech=None)


@pytest.fixture(scope="module")
def detector(videos) -> Detector:
    """A :class:`PixelProbe` fitted to call the two reals real and their self-blends fake, by a margin."""
    torch.manual_seed(0)
    probe = PixelProbe()
    x, y = _batch(Detector.from_model(probe, PRE), videos, n=len(VIDEOS))
    inputs = model_batch(x, PRE.mean, PRE.std)
    optimiser = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(probe(**inputs)["logit"], y).backward()
        optimiser.step()
    probe.eval()
    return Detector.from_model(probe, PRE, name="probe")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[Path, list[ManifestRow]]:
    """A cache of 2 real face videos (2 frames at 5 fps, 160 px: one model window each) and a manifest."""
    cache = tmp_path_factory.mktemp("attack") / "cache"
    rows = []
    for rel in VIDEOS:
        clip = make_clip(rel, seconds=0.3, fps=5.0, size=160, audio=False)
        write_entry(cache, clip)
        rows.append(
            ManifestRow(path=clip.path, label=0, dataset="demo", method="real", split="test", group=rel)
        )
    write_manifest(rows, cache.parent / "manifest.csv")
    return cache, rows


def test_eps_and_attack_flags_parse():
    assert parse_eps("1/255, 2/255,0.01") == pytest.approx((1 / 255, 2 / 255, 0.01))
    for bad in ("two", "1/0", "2"):
        with pytest.raises(ValueError, match="eps"):
            parse_eps(bad)
    args = build_parser().parse_args(
        ["eval", "--checkpoint", "a.pt", "--manifest", "m.csv", "--out", "o", "--attack", "pgd",
         "--eps", "1/255,4/255", "--steps", "3", "--step-size", "0.5/255", "--attack-source", "b.pt"]
    )  # fmt: skip
    assert attack_spec(args) == {
        "kind": "pgd", "eps": pytest.approx((1 / 255, 4 / 255)), "steps": 3,
        "step_size": pytest.approx(0.5 / 255), "source": "b.pt",
    }  # fmt: skip
    plain = build_parser().parse_args(["eval", "--checkpoint", "a.pt", "--manifest", "m.csv", "--out", "o"])
    assert attack_spec(plain) is None and plain.eps == pytest.approx((1 / 255, 2 / 255, 4 / 255))
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["eval", "--checkpoint", "a", "--manifest", "m", "--out", "o", "--eps", "x"]
        )
    with pytest.raises(ValueError, match="source checkpoint not found"):
        AttackSpec.of({"kind": "fgsm", "eps": "1/255", "source": "/nowhere.pt"})


def _batch(detector: Detector, videos, n: int = 1) -> tuple[dict, torch.Tensor]:
    """Pixel-space windows of ``n`` real videos then their self-blended fakes, with labels (0.., 1..)."""
    from dfdetect.data.windows import clip_windows

    cache, rows = videos
    rows, loader, _ = with_pseudofakes(rows[:n], cache, ["sbi"])
    pre = detector.preprocess
    windows = [clip_windows(loader(r), pre)[0] for r in rows]  # one window per clip: 2 frames at 5 fps
    x = model_inputs(windows, pre, "cpu", None, True)
    x = {
        **x,
        "frames": to_pixels(x["frames"], pre.mean, pre.std),
        "mouths": to_pixels(x["mouths"], pre.mean, pre.std),
    }
    return x, torch.tensor([float(r.label) for r in rows])


def test_fgsm_and_pgd_stay_in_budget_and_push_both_classes_across(detector, videos):
    x, y = _batch(detector, videos)
    model, pre = detector.model, detector.preprocess
    kw = {"mean": pre.mean, "std": pre.std}
    same = pgd(model, x, y, eps=0.0, steps=3, **kw)
    assert all(same[k] is x[k] for k in x)  # eps 0: the identity

    def forward(batch):
        with torch.no_grad():
            return model(**model_batch(batch, pre.mean, pre.std))

    clean = forward(x)
    assert clean["logit"][0] < 0 < clean["logit"][1]  # the real looks real, its blended fake looks fake
    for adv in (fgsm(model, x, y, eps=EPS, **kw), pgd(model, x, y, eps=EPS, steps=2, **kw)):
        delta = adv["frames"] - x["frames"]
        assert delta.abs().max() <= EPS + 1e-6 and delta.abs().max() > EPS / 2
        assert adv["frames"].min() >= 0 and adv["frames"].max() <= 1
        torch.testing.assert_close(adv["mouths"], x["mouths"])  # the model ignores mouths: untouched
        out = forward(adv)
        assert attack_loss(out, y) > attack_loss(clean, y)
        assert out["logit"][0] > clean["logit"][0] and out["logit"][1] < clean["logit"][1]  # both directions


def _flip_eps(detector: Detector, videos) -> float:
    """Twice the largest L-inf distance (in 1/255 steps) from a window to the probe's decision boundary.

    The probe is linear in the pixels, so sample i lies ``|logit_i| / ||d logit_i / d pixels||_1`` from the
    boundary: any correct L-inf attack with twice that budget flips every window.
    """
    x, _ = _batch(detector, videos, n=len(VIDEOS))
    frames = x["frames"].clone().requires_grad_(True)
    logit = detector.model(**model_batch({**x, "frames": frames}, PRE.mean, PRE.std))["logit"]
    (grad,) = torch.autograd.grad(logit.sum(), frames)  # [B, T, 3, H, W]: per-sample, as the probe is linear
    distance = logit.detach().abs() / grad.flatten(1).abs().sum(1)  # [B]
    return float(np.ceil(2 * 255 * float(distance.max()))) / 255


def test_white_box_pgd_lowers_the_auc_and_the_report_shows_it(detector, videos, tmp_path):
    cache, _ = videos
    out, eps = tmp_path / "eval", _flip_eps(detector, videos)
    levels = round(eps * 255)
    report = evaluate(
        detector, cache.parent / "manifest.csv", cache_dir=cache, out_dir=out, pseudofakes=["sbi"],
        attack={"kind": "pgd", "eps": [0.0, eps], "steps": 2}, progress=False, n_boot=20,
    )  # fmt: skip
    table = json.loads((out / "attack.json").read_text())
    clean, (zero, attacked) = table["clean"], table["results"]
    assert clean["n"] == 4 and clean["auc"] == 1.0 and clean["n_correct"] == 4
    assert zero["auc"] == clean["auc"] and zero["n_flipped"] == 0  # eps 0 scores exactly as clean
    before = {r["path"]: r["p_fake"] for r in read_jsonl(out / "predictions.jsonl")}
    assert {
        r["path"]: r["p_fake"] for r in read_jsonl(out / "attack" / "predictions-pgd-eps0.jsonl")
    } == before
    assert attacked["auc"] <= clean["auc"] - 0.5, attacked  # measurably lower
    assert attacked["success_rate"] >= 0.5 and attacked["mean_abs_change"] > 0.1
    md, html = report.read_text(), report.with_suffix(".html").read_text()
    section = md.split("## Adversarial robustness")[1].split("\n## ")[0]
    assert f"| {levels}/255 | 4 |" in section and "white box" in section
    assert "attack_auc.png" in section and f"attack_examples_pgd-eps{levels}.png" in section
    assert html.count('alt="adversarial examples at eps') == 1 and 'alt="AUC and attack success' in html
    assert json.loads((out / "metrics.json").read_text())["attack"]["results"][1]["auc"] == attacked["auc"]


def test_transfer_attack_is_crafted_on_another_checkpoint(default, videos, tmp_path):
    """A source with another crop size and normalisation: its perturbation is scored by the default model."""
    from dfdetect.checkpoint import save_state
    from dfdetect.models.factory import create_model

    cfg = {"name": "visual", "backbone": "test_efficientnet", "fps": 5.0, "segment_seconds": 1.0}
    torch.manual_seed(0)
    source = tmp_path / "source.pt"
    pre = PreprocessConfig(fps=5.0, size=64, clip_frames=2, mouth_size=32)
    model = create_model(**{**cfg, "pretrained": False})
    save_state(
        source, {"model_state": model.state_dict(), "model_config": cfg, "preprocess": pre.model_dump()}
    )
    cache, rows = videos
    rows, loader, _ = with_pseudofakes(rows, cache, ["sbi"])
    clean = predict_rows(default, rows, cache, loader=loader, progress=False)
    spec = AttackSpec(kind="fgsm", eps=(4 / 255,), source=str(source))
    table = run_attacks(
        default, rows, cache, spec, tmp_path / "out", clean, predict_rows, loader, progress=False
    )
    assert table["source"] == str(source) and len(table["source_hash"]) == 16
    result = table["results"][0]
    assert result["n"] == 4 and 0 < result["mean_abs_change"]
    adv = {
        r["path"]: r["p_fake"]
        for r in read_jsonl(tmp_path / "out" / "attack" / "predictions-fgsm-eps4.jsonl")
    }
    assert adv != {r["path"]: r["p_fake"] for r in clean}
    assert (tmp_path / "out" / result["examples"]).is_file()


def test_examples_stay_within_eps_of_the_clean_crops(detector, videos):
    from dfdetect.eval.attack import AttackedModel

    cache, rows = videos
    rows, loader, _ = with_pseudofakes(rows, cache, ["sbi"])
    model = AttackedModel(detector.model, detector.preprocess, AttackSpec(kind="fgsm", eps=(EPS,)), EPS)
    for row in rows[-1:]:  # the self-blended fake
        model.begin(row.path, row.label)
        Detector.from_model(model, detector.preprocess).score(loader(row))
    assert [e["label"] for e in model.examples.values()] == [1]
    for e in model.examples.values():
        assert (
            np.abs(e["adv"] - e["clean"]).max() <= EPS + 1e-6 and 0 <= e["adv"].min() <= e["adv"].max() <= 1
        )
