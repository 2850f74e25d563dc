"""Distillation (``dfdetect distill``): a small student learns the packaged detector's scores.

The data is a tiny prepared tree of real face clips (VoxCeleb2 crops of ../shared/media written as cache
entries); the teacher is the trained packaged EfficientNet checkpoint ``v2``; the student is the repository's
student config (EfficientNet-Lite0 without the frequency branch) at 96 px. Training windows are the
reals and their self-blended pseudo-fakes; validation scores the same clips with fixed pseudo-fakes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfdetect.checkpoint import Checkpoint
from dfdetect.config import PreprocessConfig
from dfdetect.data.manifest import write_manifest
from dfdetect.infer.lookup import resolve_model
from dfdetect.train.distill import (
    adapt_frames,
    distill,
    distill_config,
    init_from_teacher,
)
from dfdetect.train.logging import read_metrics
from tests.conftest import ROOT, media
from tests.data.clips import make_clip, row, write_cache

CLIPS = ["pcavs_Audio_Source_00015", "pcavs_Audio_Source_00086", "pcavs_Audio_Source_00104",
         "pcavs_Input_00098", "pcavs_Pose_Source_00067", "pcavs_Pose_Source_00473"]  # fmt: skip
STUDENT = ROOT / "configs" / "models" / "student.yaml"


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real face clips (12 frames at 5 fps, 128 px crops) as a prepared dir; all in ``train``."""
    root = tmp_path_factory.mktemp("distill-data")
    clips = [
        make_clip(f"/videos/{name}.mp4", n_frames=12, size=128, rel=f"real/{name}.mp4") for name in CLIPS
    ]
    write_cache(root / "cache", clips)
    write_manifest([row(c.path, 0, "train") for c in clips], root / "manifest.csv")
    return root


def _config(data: Path, **extra: object):
    overrides = {
        "data.batch_size": 8, "data.val_batch_size": 24, "data.num_workers": 0, "data.windows_per_video": 4,
        "data.val_windows_per_video": 4, "data.val_split": "train", "data.val_pseudofake": True,
        "data.augment": "null", "data.pseudofake.p_fake": 0.5, "train.epochs": 1, "train.steps_per_epoch": 16,
        "train.log_every": 2, "train.progress": False, "train.patience": "null", "train.save_every": 100,
        "train.threads": 2, "train.device": "cpu", "optim.lr": 3e-4, "optim.warmup_steps": 0,
        "distill.size": 96, **extra,
    }  # fmt: skip
    return distill_config(str(resolve_model("v2", onnx=False)[0]), str(STUDENT), [str(data)],
                          overrides=[f"{k}={v}" for k, v in overrides.items()])  # fmt: skip


@pytest.mark.slow
def test_student_learns_the_teacher_and_scans(tiny_prepared: Path, tmp_path: Path) -> None:
    """The soft targets keep the student on the teacher: after the same steps on the same windows, the
    distilled student is closer to the teacher than the same student trained on the hard labels alone."""
    more = {"data.windows_per_video": 16, "optim.lr": 1e-4}
    cfg, dcfg = _config(tiny_prepared, **more)
    out = distill(cfg, dcfg, run_dir=tmp_path, resume=False)
    hard_cfg, hard_dcfg = _config(tiny_prepared, **more, **{"distill.soft": 0.0, "distill.segment": 0.0})
    distill(hard_cfg, hard_dcfg, run_dir=tmp_path / "hard-labels-only", resume=False)
    (soft,) = [r for r in read_metrics(tmp_path) if r["split"] == "val"]  # the same windows, trained
    (hard,) = [r for r in read_metrics(tmp_path / "hard-labels-only") if r["split"] == "val"]
    assert 6 <= soft["n_fake"] <= 18, "the validation windows mix reals and pseudo-fakes"
    assert soft["gap"] < hard["gap"] - 0.02, (soft["gap"], hard["gap"])
    assert soft["agree"] > hard["agree"], (soft["agree"], hard["agree"])
    assert soft["auc"] > 0.7 and soft["auc_teacher"] > 0.7, soft  # reals vs their self-blends
    train = [r for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert train and {"loss_soft", "loss_soft_segment", "loss_video", "agree"} <= set(train[0])
    ckpt = Checkpoint.load(out)  # an ordinary, self-describing checkpoint
    assert ckpt.preprocess.size == 96 and ckpt.prepare.size == 160 and not ckpt.training_state
    assert ckpt.model_config["use_frequency"] is False and ckpt.temperature == pytest.approx(1.0)
    assert ckpt.train_config["distill"]["teacher"] == dcfg.teacher

    import dfdetect

    prediction = dfdetect.load_detector(str(out), device="cpu").scan(str(media("images/obama.jpg")))
    assert prediction.status == "ok" and 0.0 <= prediction.p_fake <= 1.0


def test_adapt_frames_resizes_and_renormalises() -> None:
    src = PreprocessConfig(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    dst = PreprocessConfig(size=32)  # ImageNet mean/std
    pixels = torch.rand(2, 1, 3, 1, 1).expand(2, 3, 3, 64, 64)  # [B, T, 3, H, W] flat colours in [0, 1]
    frames = (pixels - 0.5) / 0.5
    out = adapt_frames(frames, src, dst)
    assert out.shape == (2, 3, 3, 32, 32)
    mean, std = torch.tensor(dst.mean).view(3, 1, 1), torch.tensor(dst.std).view(3, 1, 1)
    torch.testing.assert_close(out, ((pixels[..., :32, :32] - mean) / std))
    assert adapt_frames(frames, src, src) is frames


def test_init_from_teacher_copies_and_slices() -> None:
    teacher = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Linear(4, 2))
    student = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    counts = init_from_teacher(student, teacher)
    assert counts == {"copied": 1, "sliced": 1, "kept": 2}  # layer 1 is larger in the student: as built
    torch.testing.assert_close(student[0].weight, teacher[0].weight[:, :5])
    torch.testing.assert_close(student[0].bias, teacher[0].bias)


def test_cli_print_config(tiny_prepared: Path, capsys: pytest.CaptureFixture) -> None:
    from dfdetect.cli import main

    code = main(["distill", "--teacher", "v2", "--student", str(STUDENT), "--data", str(tiny_prepared),
                 "--size", "96", "--epochs", "2", "distill.tau=2", "--print-config"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "tau: 2.0" in text and "size: 96" in text and "epochs: 2" in text
    assert main(["distill", "--student", str(STUDENT), "--data", str(tiny_prepared)]) == 2  # no teacher
