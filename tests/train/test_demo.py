"""The demo recipe end to end on real clips (prepared with the real pipeline), CI-sized.

A CI-sized run (a few dozen steps) does not yet separate held-back pseudo-fakes from reals (measured:
val AUC ~0.5 after 60 steps), so these tests check the pipeline and exact resume on real data; the
learning itself is checked on stand-ins in test_loop.py and measured on the full demo (see report).
"""

from __future__ import annotations

import math

import pytest
import torch

from dfdetect.checkpoint import Checkpoint, read_state
from dfdetect.train.logging import read_metrics
from dfdetect.train.run import train_from_config

DEMO = "configs/experiments/demo.yaml"
EPOCHS = 2  # 5 train videos x 8 windows / batch 8 = 5 steps per epoch


def _overrides(data, **extra) -> list[str]:
    base = {
        "data.sources": f"[{{prepared: '{data}'}}]",
        "data.val_split": "val",
        "data.num_workers": 0,
        "data.windows_per_video": 8,
        "train.epochs": EPOCHS,
        "train.progress": "false",
        "train.patience": "null",
        "train.save_every": 3,
    }
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


@pytest.fixture(scope="module")
def demo_run(demo_data, tmp_path_factory):
    threads = torch.get_num_threads()
    run = tmp_path_factory.mktemp("demo-run")
    try:
        train_from_config(DEMO, _overrides(demo_data), run_dir=run, resume=False)
    finally:
        torch.set_num_threads(threads)  # the demo config sets 1 thread
    return run


@pytest.mark.slow
def test_demo_trains_on_reals_and_held_back_pseudo_fakes(demo_run):
    val = [r for r in read_metrics(demo_run) if r["split"] == "val"]
    assert [r["epoch"] for r in val] == list(range(1, EPOCHS + 1))
    assert all(r["n"] == 24 and 0 < r["n_fake"] < 24 for r in val), val  # 3 videos x 8 windows
    assert all(math.isfinite(r["auc"]) for r in val)
    assert len({r["n_fake"] for r in val}) == 1, "validation pseudo-fakes must be fixed"
    train = [r for r in read_metrics(demo_run) if r["split"] == "train"]
    assert train and {"loss_video", "loss_segment", "loss_sync"} <= set(train[0])
    state = read_state(demo_run / "checkpoints" / "best.pt")
    assert state["preprocess"]["size"] == 112 and state["train_config"]["name"] == "demo"
    model = Checkpoint.from_state(state).build_model()  # the checkpoint alone rebuilds the model
    torch.testing.assert_close(model.state_dict(), state["model_state"])
    assert (demo_run / "config.yaml").read_text().startswith("name: demo")


@pytest.mark.slow
def test_demo_killed_and_resumed_ends_like_uninterrupted(demo_run, demo_data, tmp_path):
    threads = torch.get_num_threads()
    try:
        train_from_config(DEMO, _overrides(demo_data, **{"train.stop_after_steps": 7}), tmp_path, False)
        assert read_state(tmp_path / "checkpoints" / "last.pt")["step"] == 6
        train_from_config(DEMO, _overrides(demo_data), run_dir=tmp_path)  # resumes from last.pt
    finally:
        torch.set_num_threads(threads)
    a = read_state(demo_run / "checkpoints" / "last.pt")
    b = read_state(tmp_path / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 5 * EPOCHS and a["metrics"] == b["metrics"]
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])


VISUAL_DEMO = "configs/experiments/demo_visual.yaml"


@pytest.mark.slow
def test_visual_demo_learns_held_back_pseudo_fakes(demo_data, tmp_path):
    """Trained on 5 real clips only, it tells held-back self-blended fakes from the 3 unseen reals."""
    threads = torch.get_num_threads()
    try:
        overrides = _overrides(demo_data, **{"train.epochs": 10, "train.save_every": 1000})
        train_from_config(VISUAL_DEMO, overrides, run_dir=tmp_path, resume=False)
    finally:
        torch.set_num_threads(threads)
    val = [r for r in read_metrics(tmp_path) if r["split"] == "val"]
    assert all(r["n"] == 24 and 6 <= r["n_fake"] <= 18 for r in val), val
    best = max(r["auc"] for r in val)
    assert best >= 0.7, f"val AUC per epoch: {[round(r['auc'], 3) for r in val]}"
    assert read_state(tmp_path / "checkpoints" / "best.pt")["metrics"]["auc"] == pytest.approx(best)


@pytest.mark.slow
def test_soup_of_the_run_checkpoints_is_chosen_on_val_and_loads(demo_run, tmp_path, capsys):
    """`dfdetect soup` scores each checkpoint on the run's own val split, keeps what does not lower it."""
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.cli import main
    from dfdetect.train.soup import average

    ckpts = [str(demo_run / "checkpoints" / n) for n in ("best.pt", "last.pt")]
    out = tmp_path / "soup.pt"
    assert main(["soup", "--config", str(demo_run / "config.yaml"), *ckpts, "--out", str(out)]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    soup = Checkpoint.load(out)
    members = soup.metrics["soup_members"]
    assert set(members) <= set(ckpts) and members
    singles = [float(read_state(p)["metrics"].get("val_auc", 0)) for p in ckpts]
    assert soup.metrics["val_auc_soup"] >= 0 and len(singles) == 2
    expected = average([read_state(p)["model_state"] for p in members])
    for key, value in soup.model_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(value.float(), expected[key].float(), atol=2e-3, rtol=2e-3)
    assert soup.calibration["temperature"] == 1.0  # calibrated afterwards, on held-out data
    assert main(["soup", "--config", str(demo_run / "config.yaml"), "/nowhere.pt", "--out", "x.pt"]) == 2


def test_greedy_soup_keeps_only_members_that_hold_the_score():
    from dfdetect.train.soup import greedy

    states = [{"w": torch.tensor([1.5])}, {"w": torch.tensor([3.0])}, {"w": torch.tensor([-9.0])}]
    result = greedy(states, lambda s: -abs(float(s["w"]) - 2.0), ["a", "b", "c"])  # best near w = 2
    assert result.members == ["a", "b"] and result.val_auc == -0.25  # (1.5 + 3) / 2; c would drag it away
    assert [s.get("try") for s in result.steps[3:]] == [["a", "b"], ["a", "b", "c"]]
