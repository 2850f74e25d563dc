"""Detection benchmark of the default detector (docs/model_card_default.md): v2, CLIP expert, fusion.

Every set is listed here with its splits (never trained or calibrated on its ``test`` split):

- ``face_images``: ``../shared/data/face_images``; ``val/`` is the test set (as for v1/v2), 10 % of
  ``train/`` by file hash the calibration/selection split, the rest trains; subsamples per class by file
  hash (:data:`FACE_PER_CLASS`, the CPU budget of this machine);
- ``ffpp``: FF++ c23, official train pairs train, official val pairs are the held-out test (as for v2);
- ``talking_heads``: whole generator repositories per ``configs/data/splits/talking_heads.json``;
- ``corpus``: the leave-generator-out video corpus (``/work/prepared/corpus-video``), when built.

The default detector's recipe lives in the library (``dfdetect.train.probe_fit``, ``dfdetect fit-probe``);
this script only measures. Steps, each resumable:

    python bench/detect.py features                  # frozen-tower features of every clip, + after H.264
    python bench/detect.py v2                        # v2's logit of the val/test clips (for the comparison)
    python bench/detect.py manifests --out runs/v3/sets      # [--face-train N]: face images per class
    dfdetect fit-probe runs/v3/sets/*.csv --features runs/features --out runs/v3   # the model
    python bench/detect.py fit --out runs/v3         # comparison tables (v2, fusion, H.264, per family)
    python bench/detect.py table --out runs/v3       # print the tables again

``features`` decodes each clip once as a scan would (up to 8 s at 5 fps, YuNet faces, 224 px crops, margin
1.3: ``probe_fit.expert_configs``), caches the CLIP features of its main face (clean, self-blended when real,
randomly re-encoded), then the same after H.264 CRF 30 for the test sets (``eval/perturb.py``'s ``h264``).
``fit`` reads the sets of ``OUT/sets`` (writing them first when absent), so its tables describe the model
``fit-probe`` made from the same rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import DATA, MEDIA, measure

from dfdetect.hub import sha256_file
from dfdetect.train.probe_fit import expert_configs, feature_settings, media_loader

CORPUS = Path(os.environ.get("DFDETECT_CORPUS", "/work/prepared/corpus-video"))
# corpus clips kept per (split, label) and family (reals: one family), by hash; CPU budget of this machine
# (wave 4, session 2, unloaded machine: every real clip, up to 40 fakes per family in train, all of val)
CORPUS_CAP = {("train", 0): 10_000, ("train", 1): 40, ("val", 0): 10_000, ("val", 1): 10_000}
CORPUS_CAP.update({("test", 0): 10_000, ("test", 1): 15})
FEATS = Path(os.environ.get("DFDETECT_FEATS", "runs/features"))
V2 = "src/dfdetect/weights/v2.pt"
TEST_PERTURB = ("h264", 30.0)
# face-image subsamples per class, by file hash. train: 80, the shipped default's; the probe's
# cross-validation ties 80 and 400 on the corpus and prefers both to 800 and all ~1,800 (model card)
FACE_PER_CLASS = {"train": 80, "val": 40, "test": 100}


def _hash01(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def shared_rows() -> dict[str, list[Any]]:
    """Rows per set of ``../shared/data`` with this benchmark's splits."""
    from dataclasses import replace

    from dfdetect.data.sources import scan_source

    ffpp = scan_source("ffpp", DATA / "ffpp_c23", compressions="c23")
    ffpp = [replace(r, split="test" if r.split == "val" else r.split) for r in ffpp]
    heads = scan_source("folder", DATA / "talking_heads", group_by="source_repo",
                        splits="configs/data/splits/talking_heads.json")  # fmt: skip
    faces = []
    counts = {(s, c): 0 for s in ("train", "val", "test") for c in (0, 1)}
    for r in sorted(scan_source("folder", DATA / "face_images"), key=lambda r: _hash01(r.path)):
        split = "test" if r.split == "val" else "val" if _hash01("val:" + r.path) < 0.1 else "train"
        if counts[split, r.label] < FACE_PER_CLASS[split]:
            counts[split, r.label] += 1
            faces.append(replace(r, split=split))
    return {"face_images": faces, "ffpp": ffpp, "talking_heads": heads}


def corpus_rows() -> list[Any]:
    """Rows of the video corpus (its manifest's leave-generator-out split) whose media file is extracted,
    or [] if not built; capped per split, label and generator family by :data:`CORPUS_CAP` (by hash)."""
    from collections import Counter

    from dfdetect.data.manifest import read_manifest

    manifest = CORPUS / "manifest.csv"
    rows = read_manifest(manifest) if manifest.is_file() else []
    kept, seen = [], Counter()
    for r in sorted(rows, key=lambda r: _hash01(r.path)):
        if not Path(r.path).is_file():
            continue
        family = getattr(r, "family", "") or r.method
        seen[r.split, family] += 1
        cap = CORPUS_CAP.get((r.split, r.label))
        if cap is None or seen[r.split, family] <= cap:
            kept.append(r)
    return kept


def all_rows(sets: list[str] | None = None) -> dict[str, list[Any]]:
    """Every set's rows (the corpus only once it is built), without test rows whose file has a byte copy in
    any set's train or val split (the video corpus holds most of ``../shared/data/talking_heads``)."""
    rows = shared_rows()
    corpus = corpus_rows()
    if corpus:
        rows["corpus"] = corpus
    rows = drop_test_copies(rows)
    return {k: v for k, v in rows.items() if not sets or k in sets}


def drop_test_copies(rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """``rows`` less the test rows whose file content is also a train or val row's (of any set)."""

    def fitted(r: Any) -> bool:
        return r.split != "test" or not Path(r.path).is_file()

    seen = {sha256_file(r.path) for v in rows.values() for r in v if r.split != "test" and fitted(r)}
    out = {k: [r for r in v if fitted(r) or sha256_file(r.path) not in seen] for k, v in rows.items()}
    for k, v in rows.items():
        if len(out[k]) < len(v):
            print(f"{k}: {len(v) - len(out[k])} test rows left out (copies of train/val rows)", flush=True)
    return out


def write_sets(out: Path, sets: list[str] | None = None) -> dict[str, int]:
    """Every set's rows with this benchmark's splits as a manifest ``OUT/<set>.csv`` (the input of
    ``dfdetect fit-probe``); rows per set."""
    from dfdetect.data.manifest import write_manifest

    rows = all_rows(sets)
    for name, part in rows.items():
        write_manifest(part, Path(out) / f"{name}.csv")
    return {k: len(v) for k, v in rows.items()}


def manifests(args: argparse.Namespace) -> None:
    for name, n in write_sets(Path(args.out), args.sets).items():
        print(f"{Path(args.out) / name}.csv: {n} rows", flush=True)


def _plan(sets: list[str] | None) -> list[tuple[str, list[Any], bool]]:
    """(set, rows, after H.264?) in the order they are computed: every clean set first, then the
    re-encoded test sets (the corpus last: it is built while this runs)."""
    rows = all_rows(sets)
    rows = {k: rows[k] for k in ("corpus", "talking_heads", "ffpp", "face_images") if k in rows}
    first = {"val": 0, "test": 1}  # the corpus in hash order (whatever is done is a fair sample)
    order = {k: sorted(v, key=lambda r: (0 if k == "corpus" else first.get(r.split, 2), _hash01(r.path)))
             for k, v in rows.items()}  # fmt: skip
    clean = [(k, v, False) for k, v in order.items()]
    test = {k: [r for r in v if r.split == "test"] for k, v in order.items()}
    for k in ("face_images", "corpus"):  # re-encoded: a third of these test sets (CPU budget)
        test[k] = [r for r in test.get(k, []) if _hash01("h264:" + r.path) < 1 / 3]
    return clean + [(k, v, True) for k, v in test.items()]


PERTURBED = f"{TEST_PERTURB[0]}{TEST_PERTURB[1]:g}"


def _perturb(clip: Any) -> Any:
    from dfdetect.eval.perturb import apply

    return apply(clip, *TEST_PERTURB)


def features(args: argparse.Namespace) -> None:
    """Cache the expert's features of every clip; then of the test sets after H.264 CRF 30."""
    import torch

    from dfdetect.models.probe import FeatureProbe

    torch.set_num_threads(args.threads)
    prepare, pre = expert_configs(args.encoder)
    model = FeatureProbe(args.encoder, args.feature, threads=args.threads)
    settings = feature_settings(args.encoder, args.feature, args.max_windows)
    load = media_loader(prepare)
    for i in range(args.passes):  # the corpus grows while its media are extracted: passes pick new files up
        if not _features_pass(args, model, pre, settings, load) and i + 1 < args.passes:
            time.sleep(60)


def _features_pass(args: argparse.Namespace, model: Any, pre: Any, settings: Any, load: Any) -> int:
    """One pass over the plan; the number of clips computed."""
    from dfdetect.train.probe import extract_features

    computed = 0
    for name, rows, perturbed in _plan(args.sets):
        rows = [r for r in rows if (not args.splits or r.split in args.splits) and _in_shard(r, args.shard)]
        if computed and args.chunk:  # new clips first: plan again before the re-encoded sets
            break
        transform = (PERTURBED, _perturb) if perturbed else None
        for fitted in (False, True):  # variants (self-blends, re-encodings) only where a head learns
            part = [r for r in rows if (r.split != "test") == fitted]
            if args.chunk:  # at most this many new clips per pass (the corpus grows meanwhile)
                tag = PERTURBED if perturbed else ""
                part = [r for r in part if not (FEATS / name / f"{settings.key(r.path, tag)}.npz").is_file()]
                part = part[: max(0, args.chunk - computed)]
            variants = ("clean", "sbi", "aug") if fitted and not perturbed else ("clean",)
            counts = extract_features(part, FEATS / name, load, model, pre, settings, variants, transform)
            print(name, PERTURBED if perturbed else "clean", counts, flush=True)
            computed += counts["done"] + counts["no_face"]
    return computed


def v2_scores(args: argparse.Namespace) -> None:
    """v2's raw logit (frame model, no voice) of every val/test clip, decoded as for the expert
    (``FEATS/<set>/v2.jsonl``, one line per clip and transform; resumable)."""
    import torch

    from dfdetect.infer.pipeline import Detector

    torch.set_num_threads(args.threads)
    prepare, _ = expert_configs()
    load, v2 = media_loader(prepare), Detector.from_checkpoint(V2, speech=None, device="cpu")
    for i in range(args.passes):
        if not _v2_pass(args, load, v2) and i + 1 < args.passes:
            time.sleep(60)


def _v2_pass(args: argparse.Namespace, load: Any, v2: Any) -> int:
    """One pass of :func:`v2_scores` (at most ``--chunk`` clips): clean test clips first, then clean val
    clips (the fusion is fitted on them), then the re-encoded test clips; the number of clips scored."""
    tasks = []
    for name, rows, perturbed in _plan(args.sets):
        out = FEATS / name / "v2.jsonl"
        done = {tuple(json.loads(x)[k] for k in ("path", "transform")) for x in _lines(out)}
        tag = PERTURBED if perturbed else ""
        rank = 2 if perturbed else {"test": 0, "val": 1}.get
        tasks += [((rank if perturbed else rank(r.split, 3)), name, r, tag) for r in rows
                  if r.split != "train" and (r.path, tag) not in done]  # fmt: skip
    tasks.sort(key=lambda t: t[0])
    for _, name, row, tag in tasks[: args.chunk or None]:
        try:
            clip = load(row)
            logit = v2.score(_perturb(clip) if tag else clip, speech=False).logit
        except Exception as e:  # noqa: BLE001 - a bad clip is recorded, the batch goes on
            print(f"v2 {row.path}: {type(e).__name__}: {e}", file=sys.stderr)
            logit = None
        out = FEATS / name / "v2.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"path": row.path, "transform": tag, "logit": logit}) + "\n")
    print(
        "v2 pass:",
        min(len(tasks), args.chunk or len(tasks)),
        "clips scored,",
        len(tasks),
        "were left",
        flush=True,
    )
    return min(len(tasks), args.chunk or len(tasks))


def _in_shard(row: Any, shard: str | None) -> bool:
    """``shard`` "I/N": the rows whose hash falls in the I-th of N equal parts (parallel processes)."""
    if not shard:
        return True
    i, n = (int(x) for x in shard.split("/"))
    return int(_hash01("shard:" + row.path) * n) == i


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def make_720p(src: Path, dst: Path, seconds: float = 10.0) -> Path:
    """``src`` (looped to ``seconds``) upscaled into a 1280x720 H.264 frame (CRF 20), no audio."""
    from fractions import Fraction

    import av
    import cv2
    import numpy as np

    with av.open(str(src)) as inp:
        fps = float(inp.streams.video[0].average_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options={"crf": "20"})
        vs.width, vs.height, vs.pix_fmt = 1280, 720, "yuv420p"
        for i in range(round(seconds * fps)):
            canvas = np.zeros((720, 1280, 3), np.uint8)
            canvas[:, 280:1000] = cv2.resize(
                frames[i % len(frames)], (720, 720), interpolation=cv2.INTER_CUBIC
            )
            out.mux(vs.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(vs.encode())
    return dst


def scan_time(args: argparse.Namespace) -> None:
    """Seconds of an in-process scan (model loaded, best of ``--repeats``) of a 10 s 720p clip, per model,
    with the PyAV decode of the whole clip as the yardstick (``scan / decode`` ratio)."""
    import tempfile

    import torch

    from dfdetect.infer.pipeline import Detector
    from dfdetect.io.video import decode_all

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_720p(MEDIA / "real" / "liveportrait_d10.mp4", Path(tmp) / "clip720.mp4")
        decode = measure(lambda: decode_all(str(clip)), args.repeats).wall
        for model in args.models:
            det = Detector.from_checkpoint(model, speech=None, device="cpu")
            det.scan(clip)  # warm-up: sessions, detector
            best = measure(lambda d=det: d.scan(clip), args.repeats).wall
            print(
                f"{model}: scan {best:.2f} s, decode_all {decode:.2f} s, scan/decode {best / decode:.2f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features", help="cache features (resumable)")
    f.add_argument("--sets", nargs="*", help="face_images ffpp talking_heads corpus (default: all)")
    f.add_argument("--face-train", type=int, help="face images per class in train (default 80)")
    f.add_argument("--encoder", default="clip-vit-b16-int8")
    f.add_argument("--feature", default="embeds")
    f.add_argument("--max-windows", type=int, default=3, help="frames per clip at most")
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--passes", type=int, default=1, help="repeat (new corpus files are picked up)")
    f.add_argument("--chunk", type=int, default=0, help="at most this many new clips per pass (0: all)")
    f.add_argument("--splits", nargs="*", help="only these splits (e.g. train, for a second process)")
    f.add_argument("--shard", help="I/N: only the I-th of N hash parts (for parallel processes)")
    v = sub.add_parser("v2", help="score val/test clips with the v2 default (resumable)")
    v.add_argument("--sets", nargs="*")
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--passes", type=int, default=1)
    v.add_argument("--chunk", type=int, default=0, help="at most this many clips per set and pass (0: all)")
    s = sub.add_parser("scan-time", help="in-process scan of a 10 s 720p clip, per model")
    s.add_argument("models", nargs="+")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--repeats", type=int, default=2)
    m = sub.add_parser("manifests", help="write every set's rows (with their splits) as OUT/<set>.csv")
    m.add_argument("--out", default="runs/v3/sets")
    m.add_argument("--sets", nargs="*", help="face_images ffpp talking_heads corpus (default: all)")
    m.add_argument("--face-train", type=int, help="face images per class in train (default 80)")
    fit_parser = sub.add_parser("fit", help="comparison tables of the fitted probe (reads cached features)")
    fit_parser.add_argument("--out", default="runs/v3")
    fit_parser.add_argument(
        "--sets", help="folder of the set manifests (default: OUT/sets, written if absent)"
    )
    fit_parser.add_argument("--encoder", default="clip-vit-b16-int8", help="the frozen tower")
    fit_parser.add_argument("--feature", default="embeds", help="the tower's feature the heads read")
    fit_parser.add_argument("--max-windows", type=int, default=3, help="frames per clip at most")
    tables = sub.add_parser("table", help="print the tables of OUT/results.json")
    tables.add_argument("--out", default="runs/v3")
    args = parser.parse_args()
    if getattr(args, "face_train", None):
        FACE_PER_CLASS["train"] = args.face_train
    if args.cmd == "features":
        features(args)
    elif args.cmd == "v2":
        v2_scores(args)
    elif args.cmd == "scan-time":
        scan_time(args)
    elif args.cmd == "manifests":
        manifests(args)
    else:
        from detect_fit import fit, table  # sibling module of bench/

        (fit if args.cmd == "fit" else table)(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
