"""Adversarial training (``train.adversarial``): PGD versions of part of each batch, on real clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from dfdetect.checkpoint import read_state
from dfdetect.config import AdversarialConfig, LossConfig, PreprocessConfig, load_config
from dfdetect.data.dataset import collate
from dfdetect.data.windows import clip_windows, segment_labels, window_tensors
from dfdetect.models.adversarial import to_pixels
from dfdetect.models.factory import create_model
from dfdetect.train.logging import read_metrics
from dfdetect.train.run import train_from_config
from dfdetect.train.task import DeepfakeTask
from tests.eval.conftest import make_clip

DEMO = "configs/experiments/demo.yaml"
EPS = 4 / 255
PRE = PreprocessConfig(fps=5.0, size=64, clip_frames=4, segment_seconds=0.4, mouth_size=32)


def _batch() -> dict:
    """4 windows of 2 real talking-head clips with their audio; labels 1, 0, 1, 0."""
    windows = []
    for rel in ("real/pcavs_Audio_Source_00015.mp4", "real/pcavs_Pose_Source_00067.mp4"):
        windows += clip_windows(make_clip(rel, seconds=1.6, size=64), PRE)[:2]
    samples = []
    for i, w in enumerate(windows[:1] + windows[2:3] + windows[1:2] + windows[3:4]):
        label = float(i % 2 == 0)
        t = window_tensors(w, PRE)
        seg = torch.from_numpy(segment_labels(int(label), w.n_real, PRE))
        y = torch.tensor(label)
        samples.append(
            {**t, "label": y, "segment_labels": seg, "video_label": y, "audio_label": y, "meta": {}}
        )
    return collate(samples)


def test_pgd_replaces_the_ratio_of_the_batch_within_eps_and_restores_the_modes():
    with pytest.raises(ValidationError):
        AdversarialConfig(ratio=1.5)
    torch.manual_seed(0)
    cfg = yaml.safe_load(Path("configs/models/demo_tiny.yaml").read_text(encoding="utf-8"))
    model = create_model(**{**cfg, "segment_seconds": PRE.segment_seconds, "mouth_size": PRE.mouth_size})
    model.train()
    seen: list[dict] = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(dict(kw)), with_kwargs=True)
    task = DeepfakeTask(LossConfig(sync=0.2), AdversarialConfig(ratio=0.5, eps=EPS, steps=2), PRE)
    batch = _batch()
    clean = {k: batch[k].clone() for k in ("frames", "mouths")}
    loss, logs = task.training_step(model, batch, torch.device("cpu"))
    loss.backward()
    assert torch.isfinite(loss) and logs["adv_share"] == 0.5 and 0 <= logs["adv_acc"] <= 1
    assert len(seen) == 3 and model.training and all(m.training for m in model.modules())  # 2 PGD steps + 1
    trained = seen[-1]
    for key in ("frames", "mouths"):  # the lip-sync head reads the mouths: both are attacked
        pixels = trained[key] * torch.tensor(PRE.std)[:, None, None] + torch.tensor(PRE.mean)[:, None, None]
        delta = pixels - to_pixels(clean[key], PRE.mean, PRE.std)  # [B, T, 3, H, W] in pixels of [0, 1]
        assert delta[:2].abs().amax() <= EPS + 1e-5 and delta[:2].abs().amax() > EPS / 2
        assert torch.equal(trained[key][2:], clean[key][2:])  # the other half stays clean
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    torch.testing.assert_close(trained["audio"], batch["audio"])  # the attack is on the face crops only


@pytest.mark.slow
def test_train_config_runs_adversarial_training_and_records_it(demo_data, tmp_path):
    overrides = {
        "data.sources": f"[{{prepared: '{demo_data}'}}]",
        "data.val_split": "val",
        "data.num_workers": 0,
        "data.batch_size": 4,
        "data.val_windows_per_video": 1,
        "train.epochs": 1,
        "train.steps_per_epoch": 2,
        "train.val_steps": 1,
        "train.log_every": 1,
        "train.progress": "false",
        "train.patience": "null",
        "train.adversarial": "{ratio: 0.5, eps: 0.00784, steps: 2}",
    }
    args = [f"{k}={v}" for k, v in overrides.items()]
    assert load_config(DEMO, args).train.adversarial == AdversarialConfig(ratio=0.5, eps=0.00784, steps=2)
    threads = torch.get_num_threads()
    try:
        run = train_from_config(DEMO, args, run_dir=tmp_path, resume=False)
    finally:
        torch.set_num_threads(threads)  # the demo config sets 1 thread
    train = [r for r in read_metrics(run) if r["split"] == "train"]
    assert len(train) == 2 and all(r["adv_share"] == 0.5 and "adv_acc" in r for r in train), train
    state = read_state(run / "checkpoints" / "last.pt")
    recorded = state["train_config"]["train"]["adversarial"]
    assert recorded == {"ratio": 0.5, "eps": 0.00784, "steps": 2, "step_size": None}
    assert "adversarial:" in (run / "config.yaml").read_text()
