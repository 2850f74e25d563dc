"""Small stand-ins for the loop tests: a model with the output contract and a synthetic dataset.

Fakes are frames with a brighter lower half plus noise, so a tiny model learns them in a few steps.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from dfdetect.config import OptimConfig, TrainConfig

T, SIZE, K, S = 4, 8, 2, 64


class TinyAV(nn.Module):
    """Video branch (mean-pooled conv), audio branch (linear), fusion (linear); dropout uses the RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.video = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.video_head = nn.Linear(16, 1)
        self.audio = nn.Linear(S, 8)
        self.audio_head = nn.Linear(8, 1)
        self.drop = nn.Dropout(0.1)
        self.fusion = nn.Linear(16 + 8, K + 1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "video": [*self.video.parameters(), *self.video_head.parameters()],
            "audio": [*self.audio.parameters(), *self.audio_head.parameters()],
            "fusion": list(self.fusion.parameters()),
        }

    def forward(self, frames, audio=None, audio_mask=None, mouths=None) -> dict[str, torch.Tensor]:
        b, t = frames.shape[:2]
        v = self.video(frames.flatten(0, 1)).flatten(1).view(b, t, -1).mean(1)  # [B, 16]
        a = torch.relu(self.audio(audio))  # [B, 8]
        z = self.fusion(self.drop(torch.cat([v, a], 1)))  # [B, K+1]
        return {
            "logit": z[:, 0],
            "segment_logits": z[:, 1:],
            "video_logit": self.video_head(v)[:, 0],
            "audio_logit": self.audio_head(a)[:, 0],
        }


class SyntheticSet(torch.utils.data.Dataset):
    """Deterministic per (seed, epoch, index) like the real dataset; labels alternate."""

    def __init__(self, n: int = 48, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100_000 + self.epoch * 1000 + i)
        label = float(i % 2)
        frames = torch.randn(T, 3, SIZE, SIZE, generator=g)
        frames[:, :, SIZE // 2 :] += 1.5 * label
        return {
            "frames": frames,
            "audio": torch.randn(S, generator=g),
            "audio_mask": torch.tensor(True),
            "label": torch.tensor(label),
            "segment_labels": torch.full((K,), label),
            "video_label": torch.tensor(label),
            "audio_label": torch.tensor(0.0),
            "meta": {"index": i},
        }


def configs(**train_kw) -> tuple[TrainConfig, OptimConfig]:
    train = TrainConfig(
        **{"epochs": 3, "patience": None, "log_every": 1, "save_every": 2, "progress": False, **train_kw}
    )
    return train, OptimConfig(lr=1e-2, warmup_steps=2, amp=False)


def make_trainer(run_dir, n_train=48, **train_kw):
    from dfdetect.config import LossConfig
    from dfdetect.data.dataset import collate
    from dfdetect.train.loop import Trainer
    from dfdetect.train.task import DeepfakeTask

    torch.manual_seed(0)
    model = TinyAV()
    train_cfg, optim_cfg = configs(**train_kw)
    meta = {"model_config": {"name": "tiny"}, "preprocess": {}, "train_config": {}}
    return Trainer(
        model,
        DeepfakeTask(LossConfig(segment=0.5, modality=0.1)),
        SyntheticSet(n_train),
        SyntheticSet(32, seed=1),
        collate_fn=collate,
        train_cfg=train_cfg,
        optim_cfg=optim_cfg,
        run_dir=run_dir,
        batch_size=8,
        checkpoint_meta=meta,
    )


def ddp_worker(rank: int, world: int, port: int, run_dir: str, out_dir: str) -> None:
    """One rank of the DDP test: trains one tiny epoch and saves its weights."""
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
         "RANK": str(rank), "LOCAL_RANK": str(rank)}
    )  # fmt: skip
    torch.set_num_threads(1)
    from dfdetect.train.loop import Stage

    trainer = make_trainer(run_dir, n_train=32, epochs=1)
    summary = trainer.fit([Stage("joint", 1)])
    torch.save({"state": trainer.model.state_dict(), "summary": summary}, f"{out_dir}/rank{rank}.pt")
    import torch.distributed as dist

    dist.destroy_process_group()
