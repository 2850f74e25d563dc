"""Speech evaluation on held-out files: every model side by side, clean and after codecs / telephone band.

    nice -n 10 python bench/speech_eval.py configs/experiments/speech_whisper.yaml --set shared \
        --model runs/speech_whisper/checkpoints/best.pt --model aasist-l --model aasist-l-ft \
        --out runs/speech_eval_shared.json
    nice -n 10 python bench/speech_eval.py configs/experiments/speech_whisper.yaml --set corpus ...

Sets (of the experiment's ``test`` split, never trained on): ``shared`` = the held-out speakers of
``../shared/data/speech`` (speaker-disjoint split of ``data.labels``); ``corpus`` = the test generator
families and real sources of the prepared catalogue manifests (``data.manifests``). ``--split val``
scores validation instead (to choose an ensemble on val).

Each file: 16 kHz mono, the first ``--seconds`` (30) -> condition (``clean``, ``mp3_64k``: MP3 64 kbit/s,
``aac_48k``, ``opus_16k``, ``telephone_8k``: 8 kHz band; applied to the file as a degraded upload would
be) -> the model:

- a frozen-encoder checkpoint (``whisper-speech``) reads its pooled features from the feature cache (the
  windows a scan cuts: 10 s, side by side; the same code as a scan's model call);
- a waveform model (``aasist-l``, ``aasist``, ``aasist-l-ft`` or a ``.pt``) scores its first window only
  (64600 samples, through the checkpoint's one codec, as the official protocol), to bound CPU time.

Clip score = mean window logit. Scores are cached per model file (its name and content, so a refit or a
new packaged model of the same name is scored afresh) in ``--scores`` (JSON lines; re-runs resume).
Prints AUC and EER with 95 % bootstrap CIs (files resampled, 1000 times), overall and per generator
family, and an ``average`` row (mean of the models' per-model z-scored logits, z-scores from ``--split``
itself, so only choose it on val). ``--out`` writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CONDITIONS = ("clean", "mp3_64k", "aac_48k", "opus_16k", "telephone_8k")
AASIST_SECONDS = 64600 / 16000


def rows_of(cfg, split: str, which: str, per_family: int | None = None) -> list:  # noqa: ANN001
    """The rows of ``split`` in set ``which``; at most ``per_family`` files of every generator family and
    real source (the fixed choice of :func:`dfdetect.train.speech_head.cap_per_family`), if given."""
    from dfdetect.data.speech import speech_splits
    from dfdetect.train.speech_head import cap_per_family

    rows = speech_splits(cfg.data)[split]
    rows = cap_per_family(rows, per_family) if per_family else rows
    if which == "shared":
        return [r for r in rows if r.dataset == "folder"]
    if which == "corpus":
        return [r for r in rows if r.dataset != "folder"]
    return rows


class WhisperScorer:
    """Clip logits of a ``whisper-speech`` checkpoint from the feature cache."""

    def __init__(self, path: str, cfg) -> None:  # noqa: ANN001
        from dfdetect.checkpoint import Checkpoint
        from dfdetect.data.speech_features import FeatureCache

        ckpt = Checkpoint.load(path)
        self.head = {k: np.asarray(v, np.float32) for k, v in ckpt.model_state.items()}
        d = cfg.data
        self.cache = FeatureCache(d.feature_cache, ckpt.model_config.get("encoder", "whisper-tiny-en"),
                                  d.feature_seconds, d.max_seconds)  # fmt: skip

    def __call__(self, path: str, condition: str) -> float:
        from dfdetect.models.whisper_speech import head_logits

        return float(head_logits(self.cache.get(path, condition), self.head).mean())


class WaveformScorer:
    """First-window logit of a torch speech model through its checkpoint's codec."""

    def __init__(self, path: str, threads: int) -> None:
        import torch

        from dfdetect.checkpoint import Checkpoint

        torch.set_num_threads(threads)
        ckpt = Checkpoint.load(path)
        self.model, self.codec = ckpt.build_model("cpu"), ckpt.input_codec

    def __call__(self, path: str, condition: str) -> float:
        import torch

        from dfdetect.data.speech import perturb, reencode
        from dfdetect.io.audio import load_audio

        audio, _ = load_audio(path, 16000, max_duration=AASIST_SECONDS)
        x = perturb(audio, condition, seed=0)
        if self.codec is not None:
            x = reencode(x, 16000, *self.codec)
        with torch.inference_mode():
            return float(self.model(audio=torch.from_numpy(np.ascontiguousarray(x))[None])["logit"][0])


def score_all(name: str, scorer, rows: list, conditions, store: Path) -> dict:  # noqa: ANN001
    """``{condition: {path: logit}}``, resumed from and appended to the JSON-lines file ``store``."""
    done: dict[str, dict[str, float]] = {c: {} for c in conditions}
    if store.is_file():
        for line in store.read_text().splitlines():
            rec = json.loads(line)
            if rec["condition"] in done:
                done[rec["condition"]][rec["path"]] = rec["logit"]
    store.parent.mkdir(parents=True, exist_ok=True)
    t0, todo = time.perf_counter(), [(r, c) for c in conditions for r in rows if r.path not in done[c]]
    with store.open("a") as f:
        for i, (row, cond) in enumerate(todo):
            try:
                logit = scorer(row.path, cond)
            except Exception as e:  # noqa: BLE001 - a bad file is reported, not fatal
                print(f"\n{name}: {row.path} ({cond}): {type(e).__name__}: {e}")
                continue
            done[cond][row.path] = logit
            f.write(json.dumps({"path": row.path, "condition": cond, "logit": logit}) + "\n")
            f.flush()
            print(f"{name}: {i + 1}/{len(todo)} {time.perf_counter() - t0:.0f}s", end="\r", flush=True)
    return done


def summary(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000) -> dict:
    from dfdetect.metrics import auc, bootstrap_ci, eer

    if len(set(labels.tolist())) < 2:
        return {"n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum())}
    return {
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "auc": auc(labels, scores),
        "auc_ci": bootstrap_ci(labels, scores, lambda y, s: auc(y, s), n_boot),
        "eer": eer(labels, scores)[0],
        "eer_ci": bootstrap_ci(labels, scores, lambda y, s: eer(y, s)[0], n_boot),
    }


def _line(name: str, cond: str, sub: str, m: dict) -> str:
    if "auc" not in m:
        return f"| {name} | {cond} | {sub} | {m['n_real']}/{m['n_fake']} | - | - |"
    return (
        f"| {name} | {cond} | {sub} | {m['n_real']}/{m['n_fake']} | "
        f"{100 * m['eer']:.1f} % ({100 * m['eer_ci'][0]:.1f}-{100 * m['eer_ci'][1]:.1f}) | "
        f"{m['auc']:.3f} ({m['auc_ci'][0]:.3f}-{m['auc_ci'][1]:.3f}) |"
    )


def report(rows: list, scores: dict[str, dict], conditions, per_family: bool) -> dict:
    """Print the markdown table; returns the metrics."""
    labels = np.array([r.label for r in rows])
    methods = np.array([r.method for r in rows])
    print("| model | condition | subset | n real/fake | EER (95 % CI) | AUC (95 % CI) |")
    print("|---|---|---|---|---|---|")
    out: dict = {}
    for name, by_cond in scores.items():
        out[name] = {}
        for cond in conditions:
            keep = np.array([r.path in by_cond[cond] for r in rows])
            s = np.array([by_cond[cond].get(r.path, np.nan) for r in rows])
            subsets = {"all": keep}
            if per_family and cond == "clean":
                subsets |= {
                    g: keep & ((methods == g) | (labels == 0)) for g in sorted(set(methods[labels == 1]))
                }
            out[name][cond] = {}
            for sub, k in subsets.items():  # per family: 200 resamples (40 families x models)
                out[name][cond][sub] = m = summary(labels[k], s[k], 1000 if sub == "all" else 200)
                print(_line(Path(name).name, cond, sub, m), flush=True)
    return out


def average(scores: dict[str, dict], rows: list, conditions) -> dict:
    """Mean of the models' z-scored logits (per model and condition)."""
    out: dict[str, dict[str, float]] = {}
    for cond in conditions:
        common = [r.path for r in rows if all(r.path in s[cond] for s in scores.values())]
        z = []
        for s in scores.values():
            v = np.array([s[cond][p] for p in common])
            z.append((v - v.mean()) / (v.std() + 1e-9))
        out[cond] = dict(zip(common, np.mean(z, axis=0).tolist(), strict=True)) if z else {}
    return out


def checkpoint_file(spec: str) -> str:
    """The ``.pt`` file of a model name or checkpoint path (a packaged model's torch file, not its ONNX)."""
    from dfdetect.infer.lookup import resolve_model

    return str(resolve_model(spec, onnx=False)[0])


def is_frozen_encoder(path: str) -> bool:
    """Whether the checkpoint is a head on a frozen encoder (scored from the feature cache, every window)."""
    from dfdetect.checkpoint import Checkpoint

    return Checkpoint.load(path).name == "whisper-speech"


def main() -> None:
    from dfdetect.data.speech_features import content_hash
    from dfdetect.train.speech import load_speech_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--model", action="append", required=True, help="name or checkpoint (.pt)")
    p.add_argument("--set", default="all", choices=["shared", "corpus", "all"])
    p.add_argument("--split", default="test")
    p.add_argument("--condition", nargs="*", default=list(CONDITIONS))
    p.add_argument("--per-family", type=int, default=None, help="at most N files per family / real source")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scores", default="runs/speech_eval_scores")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cfg = load_speech_config(args.config, args.overrides)
    rows = rows_of(cfg, args.split, args.set, args.per_family)
    print(f"{args.set} {args.split}: {len(rows)} files ({sum(r.label == 0 for r in rows)} real)")
    scores = {}
    for spec in args.model:
        path = checkpoint_file(spec)
        scorer = WhisperScorer(path, cfg) if is_frozen_encoder(path) else WaveformScorer(path, args.threads)
        # the tag holds the file's content: a refit, or a new packaged model of a name, is scored afresh
        tag = f"{spec.replace('/', '_')}-{content_hash(path)[:10]}"
        scores[spec] = score_all(spec, scorer, rows, args.condition, Path(args.scores) / f"{tag}.jsonl")
    if len(scores) > 1:
        scores["average"] = average(scores, rows, args.condition)
    print()
    metrics = report(rows, scores, args.condition, per_family=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"metrics": metrics, "scores": scores}, indent=1))


if __name__ == "__main__":
    main()
