"""The generic loop on stand-ins: learning, checkpoints, staged freezing, exact resume, DDP (gloo)."""

from __future__ import annotations

import socket

import pytest
import torch

from dfdetect.checkpoint import read_state
from dfdetect.models.device import resolve_device
from dfdetect.train.logging import read_metrics
from dfdetect.train.loop import Stage

from .standins import ddp_worker, make_trainer

CONTRACT = ("model_state", "model_config", "preprocess", "calibration", "train_config", "step", "epoch",
            "optimizer", "scheduler", "scaler", "rng", "data_position", "metrics", "versions")  # fmt: skip


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loop_learns_and_writes_checkpoints_and_logs(tmp_path):
    trainer = make_trainer(tmp_path)
    summary = trainer.fit([Stage("joint", 3)])
    assert not summary["interrupted"] and summary["step"] == 3 * 6
    assert summary["best"]["auc"] > 0.9, summary
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert names == {"best.pt", "last.pt", "stage-joint.pt"}
    last = read_state(tmp_path / "checkpoints" / "last.pt")
    assert set(CONTRACT) <= set(last)
    assert last["step"] == 18 and last["epoch"] == 3 and last["data_position"] == 0
    assert set(last["rng"][0]) >= {"python", "numpy", "torch"}
    records = read_metrics(tmp_path)
    val = [r for r in records if r["split"] == "val"]
    assert [r["epoch"] for r in val] == [1, 2, 3]
    assert {"auc", "f1", "precision", "recall"} <= set(val[0])
    train = [r for r in records if r["split"] == "train"]
    assert train and {"loss", "lr", "loss_video", "loss_segment", "loss_modality"} <= set(train[0])
    assert list((tmp_path / "tb").iterdir()), "TensorBoard events expected"


def test_staged_training_freezes_other_groups(tmp_path):
    trainer = make_trainer(tmp_path)
    before = _weights(trainer.model)
    trainer.fit([Stage("video", 1, ["video"], options={"head": "video_logit"})])
    after = _weights(trainer.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("video.", "video_head.")) for k in changed), changed
    stage = read_state(tmp_path / "checkpoints" / "stage-video.pt")
    assert stage["step"] == 6


def test_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    stages = [Stage("video", 1, ["video"], options={"head": "video_logit"}), Stage("joint", 2, ["all"])]
    full = make_trainer(tmp_path / "full")
    full_summary = full.fit(stages)
    # "kill" at step 11 (mid-epoch of the second stage); the last checkpoint is from step 10
    killed = make_trainer(tmp_path / "killed", stop_after_steps=11)
    assert killed.fit(stages)["interrupted"]
    last = read_state(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert (last["step"], last["data_position"]) == (10, 4)
    resumed = make_trainer(tmp_path / "killed")  # resumes automatically from last.pt
    summary = resumed.fit(stages)
    assert summary["step"] == full_summary["step"] == 18
    assert summary["last"] == full_summary["last"]
    assert summary["best"] == full_summary["best"]
    a, b = _weights(full.model), _weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    full_val = [r for r in read_metrics(tmp_path / "full") if r["split"] == "val"]
    resumed_val = [r for r in read_metrics(tmp_path / "killed") if r["split"] == "val"]
    assert full_val == resumed_val


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_gloo_agree_on_weights(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(ddp_worker, args=(2, _free_port(), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["summary"]["step"] == 2  # 32 samples / 2 ranks / batch 8
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    assert r0["summary"]["last"] == r1["summary"]["last"] and r0["summary"]["last"]["n"] == 32
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_a_bare_cuda_device_gets_the_process_index(monkeypatch):
    """``train.device: cuda`` must name an index: ``torch.cuda.set_device`` refuses a bare ``cuda``
    (found on a GPU machine, where ``train.device=cuda`` stopped every run at its first step)."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")
