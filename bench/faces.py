"""Face detection and extraction speed vs PyAV decoding, and detection accuracy by detect_size.

Run from the project root (real clips in ../shared/media):

    python bench/faces.py [--frames 15] [--threads 1]
    python bench/faces.py --recall             # YuNet's recall of MTCNN's faces on the real clips
    python bench/faces.py --auc --out runs/faces-auc   # the default model's AUC with each backend

``--recall``: every real clip of ``../shared/media`` and ``../shared/data`` (FF++ originals, talking-head
reals), one frame per second of the first 10 s, both detectors on the whole frame at ``detect_size`` 640;
MTCNN's faces (score >= ``min_score`` 0.9, side >= 32 px: what prepare searches) are the reference, and a
face counts as found when YuNet has a box of score >= 0.9 with IoU > 0.5. ``--auc``: the packaged default
model (no speech companion, first 4 s) scans the held-out clips of the dev benchmark (talking-head test
split, FF++ official val pairs, a hashed subsample of the face-image ``val/``) once with each backend;
AUC with 95 % bootstrap CIs and the paired difference (resumable: results in ``--out``).

Prints, per clip: the decode time of the whole clip (PyAV alone, ``io.video.decode_all``), MTCNN
time per sampled frame at several ``detect_size`` values with the box agreement (IoU, recall) against
detection on the full-resolution frame, then the time of the full face extraction (detector +
tracking + crops) at several ``detect_every`` values as a ratio to the decode time, and last the
region-of-interest detection (``FaceExtractor(roi=True)``) against full-frame detection on every
keyframe: detector CPU time, and per-frame IoU of the track boxes (every reference track box must
have a box of the ROI run at the same time). Times are wall clock and process CPU time (the CPU
time is the steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import DATA, MEDIA, ROOT, measure

from dfdetect.config import PrepareConfig
from dfdetect.faces.detect import MTCNNDetector
from dfdetect.faces.extract import extract_faces
from dfdetect.faces.track import box_iou
from dfdetect.io.video import decode_all, iter_frames, probe

CLIPS = [
    "real/videoretalking_face_2.mp4",
    "real/videoretalking_face_1.mp4",
    "real/pcavs_Audio_Source_00015.mp4",
    "real/ffpp_orig_519.mp4",
    "real/face_recognition_short_hamilton_clip.mp4",
]


def _agreement(ref: list, got: list) -> tuple[float, float]:
    """Mean IoU of matched reference faces and the share of reference faces found (IoU > 0.5)."""
    ious, found, total = [], 0, 0
    for r, g in zip(ref, got, strict=True):
        total += len(r)
        if len(r) and len(g):
            best = box_iou(r.boxes, g.boxes).max(1)  # [R]
            ious.extend(best[best > 0.5].tolist())
            found += int((best > 0.5).sum())
    return (float(np.mean(ious)) if ious else float("nan")), (found / total if total else float("nan"))


class _CpuTimed:
    """Adds the detector's CPU seconds and calls (keeps the ``min_face_size`` keyword of ROI search)."""

    def __init__(self, inner: MTCNNDetector) -> None:
        self.inner, self.name, self.cpu, self.calls = inner, inner.name, 0.0, 0

    def detect(self, images: list[np.ndarray], min_face_size: float | None = None) -> list:
        t = time.process_time()
        try:
            return self.inner.detect(images, min_face_size=min_face_size)
        finally:
            self.cpu, self.calls = self.cpu + time.process_time() - t, self.calls + 1


def _track_agreement(ref: list, got: list) -> tuple[float, float, float]:
    """Mean and 5th-percentile IoU of every reference track box with the best box of ``got`` at that
    time, and the share of reference boxes matched with IoU > 0.5."""
    ious = []
    for face in ref:
        for t, box in zip(face.track.timestamps, face.track.boxes, strict=True):
            same = [g.track.boxes[np.isclose(g.track.timestamps, t)] for g in got]
            same = [b for b in same if len(b)]
            ious.append(float(box_iou(box[None], np.concatenate(same)).max()) if same else 0.0)
    ious = np.asarray(ious)
    return float(ious.mean()), float(np.percentile(ious, 5)), float((ious > 0.5).mean())


def bench_roi(frames: list, config: PrepareConfig, networks) -> None:
    """Full-frame detection on every keyframe vs ROI detection between full-frame searches."""
    runs = {}
    for roi in (False, True):
        det = MTCNNDetector(detect_size=config.detect_size, min_face_size=0.8 * config.min_face_size)
        det._mtcnn = networks
        timed = _CpuTimed(det)
        runs[roi] = extract_faces(frames, timed, config, roi=roi)
        print(
            f"  roi={roi!s:5}: detector {timed.cpu:.2f} s cpu in {timed.calls} calls, "
            f"tracks {[len(f.track.timestamps) for f in runs[roi]]}"
        )
    mean, p5, matched = _track_agreement(runs[False], runs[True])
    print(f"  ROI vs full-frame track boxes: IoU mean {mean:.3f}, 5th pct {p5:.3f}, matched {matched:.3f}")


def bench_clip(rel: str, n_frames: int, sizes: list[int], every: list[int]) -> None:
    path = MEDIA / rel
    info = probe(path)
    decode_wall, decode_cpu, _ = measure(lambda: decode_all(path))
    print(
        f"\n{rel}: {info.width}x{info.height}, {info.duration:.1f} s; PyAV decode {decode_wall:.2f} s "
        f"wall / {decode_cpu:.2f} s cpu"
    )
    config = PrepareConfig()
    frames = list(iter_frames(path, fps=config.fps, max_duration=config.max_duration))
    sample = frames[:: max(1, len(frames) // n_frames)][:n_frames]
    images = [f.image for f in sample]
    min_face = 0.8 * config.min_face_size
    full = MTCNNDetector(detect_size=max(images[0].shape[:2]), min_face_size=min_face)
    full.detect(images[:1])  # load the weights outside the timings
    wall, cpu, reference = measure(lambda: full.detect(images))
    print(f"  full res : {wall / len(images):.3f} s/frame wall, {cpu / len(images):.3f} cpu")
    for size in sizes:
        det = MTCNNDetector(detect_size=size, min_face_size=min_face)
        det._mtcnn = full._mtcnn  # same networks
        wall, cpu, got = measure(lambda d=det: d.detect(images))
        iou, recall = _agreement(reference, got)
        print(
            f"  size {size:4d}: {wall / len(images):.3f} s/frame wall, {cpu / len(images):.3f} cpu, "
            f"IoU vs full {iou:.3f}, recall {recall:.2f}"
        )
    for k in every:
        cfg = PrepareConfig(detect_every=k)
        det = MTCNNDetector(detect_size=cfg.detect_size, min_face_size=min_face)
        det._mtcnn = full._mtcnn
        wall, cpu, faces = measure(lambda d=det, c=cfg: extract_faces(frames, d, c))
        lengths = [len(f.track.timestamps) for f in faces]
        print(
            f"  extract detect_every={k} size={cfg.detect_size}: {wall:.2f} s wall / {cpu:.2f} cpu "
            f"= {wall / decode_wall:.2f}x / {cpu / decode_cpu:.2f}x decode; {len(frames)} frames, "
            f"tracks {lengths}"
        )
    bench_roi(frames, config, full._mtcnn)


def _real_clips() -> list[Path]:
    """Real clips of ../shared/media and ../shared/data (FF++ originals, talking-head reals)."""
    clips = sorted((MEDIA / "real").glob("*.mp4"))
    clips += sorted((DATA / "ffpp_c23" / "original_sequences").rglob("*.mp4"))
    return clips + sorted((DATA / "talking_heads" / "real").rglob("*.mp4"))


def bench_recall(min_side: float = 32.0, min_score: float = 0.9) -> None:
    """YuNet's recall of MTCNN's faces, per source and overall (see the module docstring)."""
    from dfdetect.faces.detect import YuNetDetector

    mtcnn, yunet = MTCNNDetector(min_face_size=min_side), YuNetDetector(min_face_size=min_side)
    totals: dict[str, list[int]] = {}
    cpu = {"mtcnn": 0.0, "yunet": 0.0}
    for path in _real_clips():
        images = [f.image for f in iter_frames(path, fps=1.0, max_duration=10.0)]
        (c_m, ref), (c_y, got) = [measure(lambda d=d, i=images: d.detect(i))[1:] for d in (mtcnn, yunet)]
        cpu["mtcnn"], cpu["yunet"] = cpu["mtcnn"] + c_m, cpu["yunet"] + c_y
        ref = [r.select(r.scores >= min_score) for r in ref]
        got = [g.select(g.scores >= min_score) for g in got]
        _, recall = _agreement(ref, got)
        n_ref, n_got = sum(len(r) for r in ref), sum(len(g) for g in got)
        found = round(recall * n_ref) if n_ref else 0
        source = next((k for k in ("ffpp_c23", "talking_heads") if k in path.parts), "media")
        row = totals.setdefault(source, [0, 0, 0, 0])
        row[0], row[1], row[2], row[3] = row[0] + n_ref, row[1] + found, row[2] + n_got, row[3] + len(images)
        print(
            f"  {path.name[:40]:40} frames {len(images):3d} mtcnn {n_ref:3d} yunet {n_got:3d} found {found}"
        )
    print(
        "\n| source | frames | MTCNN faces | YuNet faces | recall of MTCNN's faces |\n|---|---|---|---|---|"
    )
    for source, (n_ref, found, n_got, frames) in [*totals.items(), ("all", np.sum(list(totals.values()), 0))]:
        print(f"| {source} | {frames} | {n_ref} | {n_got} | {found / max(n_ref, 1):.4f} |")
    print(f"detector CPU seconds: MTCNN {cpu['mtcnn']:.1f}, YuNet {cpu['yunet']:.1f}")


def _auc_rows(faces_per_class: int) -> list:
    """Held-out rows of the dev benchmark: talking-head test split, FF++ val pairs, face-image val sample."""
    import hashlib
    from dataclasses import replace

    from dfdetect.data.sources import scan_source

    heads = scan_source("folder", DATA / "talking_heads", group_by="source_repo",
                        splits=str(ROOT / "configs/data/splits/talking_heads.json"))  # fmt: skip
    rows = [replace(r, dataset="talking_heads") for r in heads if r.split == "test"]
    ffpp = scan_source("ffpp", DATA / "ffpp_c23", compressions="c23")
    rows += [replace(r, dataset="ffpp") for r in ffpp if r.split == "val"]
    images = scan_source("folder", DATA / "face_images")
    key = lambda r: hashlib.sha1(r.path.encode()).hexdigest()  # noqa: E731
    for label in (0, 1):
        pool = sorted((r for r in images if "/val/" in r.path and r.label == label), key=key)
        rows += [replace(r, dataset="face_images") for r in pool[:faces_per_class]]
    return sorted(rows, key=key)  # a random order: a stopped run is a random subsample of every set


def bench_auc(out: Path, faces_per_class: int, max_duration: float) -> None:
    """The default model's p_fake of every held-out row with each backend (resumable), then the table."""
    import json

    from dfdetect.infer.pipeline import load_detector

    out.mkdir(parents=True, exist_ok=True)
    rows, names = _auc_rows(faces_per_class), ("yunet", "mtcnn")
    done = {n: _records(out / f"{n}.jsonl") for n in names}
    todo = [r for r in rows if any(r.path not in done[n] for n in names)]
    detectors = {}
    if todo:
        detectors = {
            n: load_detector(None, device="cpu", speech=None, faces=n, max_duration=max_duration)
            for n in names
        }
    for i, r in enumerate(todo):  # both backends on each clip in turn: a stopped run stays paired
        for n in names:
            if r.path in done[n]:
                continue
            pred = detectors[n].scan(r.path)
            rec = {"path": r.path, "set": r.dataset, "label": r.label, "p_fake": pred.p_fake,
                   "status": str(pred.status), "tracks": len(pred.tracks)}  # fmt: skip
            with (out / f"{n}.jsonl").open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(
                f"  {i + 1}/{len(todo)} {n} {r.dataset} {Path(r.path).name[:40]} {pred.status} {pred.p_fake}"
            )
    print(auc_table(out))


def _records(path: Path) -> dict[str, dict]:
    """path -> record of a results file (empty when absent)."""
    import json

    lines = path.read_text().splitlines() if path.is_file() else []
    return {r["path"]: r for r in map(json.loads, lines)}


def auc_table(out: Path, n_boot: int = 2000) -> str:
    """AUC per set and backend with 95 % bootstrap CIs, and the paired difference YuNet - MTCNN."""
    from dfdetect.metrics import auc

    recs = {n: _records(out / f"{n}.jsonl") for n in ("yunet", "mtcnn")}
    head = "| set | n (real+fake) | no face YuNet / MTCNN | AUC YuNet | AUC MTCNN | YuNet - MTCNN [95 % CI] |"
    lines = [head, "|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for name in ("talking_heads", "ffpp", "face_images", "all"):
        paths = [p for p in recs["mtcnn"] if p in recs["yunet"] and name in ("all", recs["mtcnn"][p]["set"])]
        if not paths:
            continue
        y = np.array([recs["mtcnn"][p]["label"] for p in paths])
        if len(set(y)) < 2:
            lines.append(f"| {name} | {len(y)} (one class) | - | - | - | - |")
            continue
        miss = {n: sum(recs[n][p]["p_fake"] is None for p in paths) for n in recs}
        s = {
            n: np.array([recs[n][p]["p_fake"] if recs[n][p]["p_fake"] is not None else 0.5 for p in paths])
            for n in recs
        }  # fmt: skip  (no face: 0.5, what a scan without a verdict is worth)
        boots = {n: [] for n in ("yunet", "mtcnn", "diff")}
        for _ in range(n_boot):
            i = rng.integers(0, len(y), len(y))
            if len(set(y[i])) < 2:
                continue
            a, b = auc(y[i], s["yunet"][i]), auc(y[i], s["mtcnn"][i])
            boots["yunet"].append(a), boots["mtcnn"].append(b), boots["diff"].append(a - b)
        ci = {n: np.percentile(v, [2.5, 97.5]) for n, v in boots.items()}
        a, b = auc(y, s["yunet"]), auc(y, s["mtcnn"])
        lines.append(
            f"| {name} | {int((y == 0).sum())}+{int((y == 1).sum())} | {miss['yunet']} / {miss['mtcnn']} | "
            f"{a:.3f} [{ci['yunet'][0]:.2f}, {ci['yunet'][1]:.2f}] | {b:.3f} [{ci['mtcnn'][0]:.2f}, "
            f"{ci['mtcnn'][1]:.2f}] | {a - b:+.3f} [{ci['diff'][0]:+.3f}, {ci['diff'][1]:+.3f}] |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recall", action="store_true", help="YuNet's recall of MTCNN's faces, real clips")
    parser.add_argument("--auc", action="store_true", help="AUC of the default model with each backend")
    parser.add_argument("--out", default="runs/faces-auc", help="--auc results (resumable)")
    parser.add_argument("--faces-per-class", type=int, default=50, help="--auc face images per class")
    parser.add_argument("--max-duration", type=float, default=4.0, help="--auc seconds read per clip")
    parser.add_argument("--frames", type=int, default=15, help="sampled frames for the detect_size table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 480, 320])
    parser.add_argument("--every", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--clips", nargs="+", default=CLIPS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.recall or args.auc:
        bench_recall() if args.recall else bench_auc(Path(args.out), args.faces_per_class, args.max_duration)
        return
    for rel in args.clips:
        bench_clip(rel, args.frames, args.sizes, args.every)


if __name__ == "__main__":
    main()
