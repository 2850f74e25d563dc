"""Training throughput of the demo model on CPU: samples/s of a training step and the ratio of
data-loading time to step time.

    dfdetect prepare folder ../shared/media --out runs/demo-data     # once
    python bench/train.py [--config configs/experiments/demo.yaml] [--data runs/demo-data] [--batches 10]

Prints one line per figure. Data loading is timed in this process (num_workers=0: the cost a worker
pays per batch); the step (forward + backward + AdamW) is timed on batches already in memory.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/experiments/demo.yaml")
    parser.add_argument("--data", default=None, help="prepared dir (overrides the config's sources)")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from dfdetect.config import OptimConfig, load_config
    from dfdetect.data.dataset import collate
    from dfdetect.train.optim import build_optimizer, named_groups
    from dfdetect.train.run import build_dataset, build_model
    from dfdetect.train.task import DeepfakeTask

    torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.sources=[{{prepared: '{args.data}'}}]")
    cfg = load_config(args.config, overrides)
    torch.manual_seed(0)
    dataset = build_dataset(cfg.data, cfg.data.train_split, True, 0)
    bs = cfg.data.batch_size
    loader = DataLoader(dataset, batch_size=bs, shuffle=True, collate_fn=collate, num_workers=0)

    batches, t0 = [], time.perf_counter()
    for batch in loader:
        batches.append(batch)
        if len(batches) == args.batches:
            break
    data_s = (time.perf_counter() - t0) / len(batches)

    model = build_model(cfg).train()
    task = DeepfakeTask(cfg.loss)
    opt = build_optimizer(named_groups(model), OptimConfig(**{**cfg.optim.model_dump(), "amp": False}))
    task.training_step(model, batches[0], torch.device("cpu"))[0].backward()  # warm-up
    opt.zero_grad()
    t0 = time.perf_counter()
    for batch in batches:
        loss, _ = task.training_step(model, batch, torch.device("cpu"))
        loss.backward()
        opt.step()
        opt.zero_grad()
    step_s = (time.perf_counter() - t0) / len(batches)

    params = sum(p.numel() for p in model.parameters())
    pre = cfg.data.preprocess
    print(f"model {cfg.model.name} {cfg.model.kwargs()} ({params / 1e6:.2f} M parameters)")
    print(f"input: batch {bs} x {pre.clip_frames} frames x {pre.size}px, {pre.audio_samples} audio samples")
    print(f"threads: {args.threads}  batches timed: {len(batches)}")
    print(f"data loading: {data_s * 1000:.0f} ms/batch ({bs / data_s:.1f} samples/s in one worker)")
    print(f"train step:   {step_s * 1000:.0f} ms/batch ({bs / step_s:.1f} samples/s)")
    print(f"ratio data-loading / step: {data_s / step_s:.2f}")


if __name__ == "__main__":
    main()
