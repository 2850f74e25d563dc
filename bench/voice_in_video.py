"""The voice in a video scan, measured: how often the speech companion turns a real video into ``fake``.

A video scan fuses the face model's calibrated ``p_visual`` with the speech companion's ``p_audio`` by
``dfdetect.infer.aggregate.fuse_speech``: only a voice above the companion's real-voice ceiling ``p0``
raises the score. This script measures that rule on the video corpus (``bench/detect.py``'s sets,
``OUT/sets/corpus.csv``), clips that have speech:

    python bench/voice_in_video.py hear --split val test     # p_audio of every clip with speech (resumable)
    python bench/voice_in_video.py table                     # verdicts at the companion's ceiling
    python bench/voice_in_video.py table --model aasist-l-ft --p0 0.5948 0.9921 --temperature 1

``hear`` runs the companion exactly as a scan does (``Detector._hear``: the clip's audio, its codec round
trip, voice activity, windows) and caches the raw (T = 1) logit of each clip in
``FEATS/corpus/voice-<model>.jsonl``; ``table`` applies the companion's temperature (or ``--temperature``).
``table`` scores the face model on the cached tower features (``bench/detect.py features``), fuses, and
prints, per split and ceiling: reals called fake (p >= the band's upper edge), fakes called fake, AUC of
the fused score vs the face alone. Choose ``p0`` on ``val``; ``test`` is the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from common import ROOT

BAND_HIGH = 0.65  # constants.VERDICT_BAND's upper edge


def _rows(sets: Path, splits: list[str]) -> list:
    from dfdetect.data.manifest import read_manifest

    return [r for r in read_manifest(sets / "corpus.csv") if r.split in splits]


def _cache(model: str) -> Path:
    """Where the logits of ``model``'s file content go: a refit, or a new packaged model, is heard afresh."""
    import detect

    from dfdetect.data.speech_features import content_hash
    from dfdetect.infer.lookup import resolve_model

    path = resolve_model(model, onnx=False)[0]
    return detect.FEATS / "corpus" / f"voice-{Path(model).stem}-{content_hash(path)[:10]}.jsonl"


def _heard(model: str) -> dict[str, float | None]:
    """path -> the companion's raw logit of the clip's speech (None: no speech)."""
    path = _cache(model)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return {r["path"]: r["logit"] for r in map(json.loads, lines)}


def hear(args: argparse.Namespace) -> None:
    """The companion's raw logit for every clip of ``--split`` with usable audio (None: no speech)."""
    from tqdm import tqdm

    from dfdetect.infer.pipeline import load_speech_branch
    from dfdetect.train.probe_fit import expert_configs, media_loader

    branch = load_speech_branch(args.model, None)
    load = media_loader(expert_configs()[0])
    done = _heard(args.model)
    todo = [r for r in _rows(Path(args.sets), args.split) if r.path not in done]
    out = _cache(args.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    for row in tqdm(todo, desc="voices", unit="clip"):
        z = None
        try:
            clip = load(row)
            if clip.has_usable_audio:
                z = branch.hear(clip).scores.logit
        except Exception as e:  # noqa: BLE001 - a bad clip is recorded, the batch goes on
            print(f"{row.path}: {type(e).__name__}: {e}", file=sys.stderr)
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"path": row.path, "logit": z}) + "\n")


def _visual(checkpoint: str, rows: list) -> np.ndarray:
    """Calibrated p_visual of each row from the cached clean tower features (NaN: no face / not cached)."""
    import detect

    from dfdetect.checkpoint import Checkpoint
    from dfdetect.train.probe import clip_logits, read_features
    from dfdetect.train.probe_fit import feature_settings

    ckpt = Checkpoint.load(checkpoint)
    feats = read_features(rows, detect.FEATS / "corpus", feature_settings())
    logits = clip_logits(ckpt.build_model(), feats) / ckpt.temperature
    return 1.0 / (1.0 + np.exp(-logits))


def table(args: argparse.Namespace) -> None:
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.infer.aggregate import fuse_speech, sigmoid
    from dfdetect.infer.lookup import resolve_model
    from dfdetect.metrics import auc

    heard = _heard(args.model)
    judge = Checkpoint.load(resolve_model(args.model, onnx=False)[0])
    t = args.temperature or judge.temperature
    print(f"{args.model}: temperature {t:.4f}, ceilings {args.p0 or [judge.real_voice_ceiling]}")
    for split in args.split:
        rows = [r for r in _rows(Path(args.sets), [split]) if heard.get(r.path) is not None]
        pv = _visual(args.checkpoint, rows)
        ok = ~np.isnan(pv)
        rows, pv = [r for r, k in zip(rows, ok, strict=True) if k], pv[ok]
        y = np.array([r.label for r in rows])
        pa = sigmoid(np.array([heard[r.path] for r in rows]) / t)
        print(f"\n{split}: {int((y == 0).sum())} real and {int((y == 1).sum())} fake clips with speech")
        print(f"  face only: reals called fake {int((pv[y == 0] >= BAND_HIGH).sum())}, fakes "
              f"{int((pv[y == 1] >= BAND_HIGH).sum())}, AUC {auc(y, pv):.3f}; voice alone AUC "
              f"{auc(y, pa):.3f}; real voices: median {np.median(pa[y == 0]):.3f}, "
              f"q95 {np.quantile(pa[y == 0], 0.95):.3f}")  # fmt: skip
        for p0 in args.p0 or [judge.real_voice_ceiling]:
            pf = np.array([fuse_speech(v, a, p0)["p_fake"] for v, a in zip(pv, pa, strict=True)])
            print(f"  p0 {p0:.4f}: reals called fake {int((pf[y == 0] >= BAND_HIGH).sum())}, fakes "
                  f"{int((pf[y == 1] >= BAND_HIGH).sum())}, real voices above p0 "
                  f"{int((pa[y == 0] > p0).sum())}, AUC {auc(y, pf):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("hear", "table"):
        p = sub.add_parser(name)
        p.add_argument("--model", default="whisper-speech", help="speech companion (name or .pt)")
        p.add_argument("--sets", default=str(ROOT / "runs/v4/sets"), help="bench/detect.py manifests folder")
        p.add_argument("--split", nargs="+", default=["val", "test"])
    sub.choices["table"].add_argument("--checkpoint", default=str(ROOT / "src/dfdetect/weights/default.pt"))
    sub.choices["table"].add_argument("--p0", nargs="+", type=float, help="ceilings (default: the judge's)")
    sub.choices["table"].add_argument("--temperature", type=float, help="the judge's (default: its own)")
    args = parser.parse_args()
    (hear if args.cmd == "hear" else table)(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
