"""Does the whole frame add to the face? CLIP embeddings of whole frames next to the face crops' (issue 21).

    python bench/context_frames.py features --sets runs/v4/sets    # whole-frame embeddings (resumable)
    python bench/context_frames.py compare --sets runs/v4/sets     # CV on train, then test

``features``: per clip of the set manifests, 3 evenly spaced frames of the first 8 s (1 fps), short side
resized to 224 and centre-cropped (CLIP's own preprocessing), the tower's ``image_embeds`` averaged;
cached as ``runs/features/context/<sha1 of path>.npz``. ``compare``: clip-level heads (logistic
regression, MLP 64) on the face features (the mean of the cached clean face embeddings), the frame
features, both concatenated, and the sum of the face and frame heads' standardised scores; scored by the
probe's leave-family-out cross-validation on train (``probe_cv.fold_groups``, 5 folds x 3 shuffles), then
trained on all train and scored on test with paired bootstrap CIs against the face-only MLP.
Measured (wave 4, session 4): face + frame gains ~0.03 on the corpus in cross-validation and +0.017
[-0.018, +0.050] on the test families, and frames alone, second best in cross-validation, are the worst
on test (-0.037): not built into the product (docs/model_card_default.md says why).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

FEATS = Path("runs/features")
CONTEXT = FEATS / "context"


def _key(path: str) -> Path:
    return CONTEXT / f"{hashlib.sha1(path.encode()).hexdigest()}.npz"


def _frames(path: str) -> list[np.ndarray]:
    from dfdetect.io.image import load_image
    from dfdetect.io.video import iter_frames

    if Path(path).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
        return [load_image(path)]
    frames = [f.image for f in iter_frames(path, fps=1.0, max_side=640, max_duration=8.0)]
    keep = np.unique(np.linspace(0, len(frames) - 1, 3).round().astype(int)) if frames else []
    return [frames[i] for i in keep]


def _centre(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Short side to ``size``, centre crop, CLIP-normalised ``[3, size, size]``."""
    import cv2

    from dfdetect.models.tower import CLIP_MEAN, CLIP_STD

    h, w = image.shape[:2]
    scale = size / min(h, w)
    image = cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))), cv2.INTER_AREA)
    h, w = image.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    crop = image[y : y + size, x : x + size].astype(np.float32) / 255
    return ((crop - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)).transpose(2, 0, 1)


def features(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from dfdetect.data.manifest import read_manifest
    from dfdetect.io.files import atomic_write_bytes
    from dfdetect.models.tower import get_encoder

    encoder = get_encoder("clip-vit-b16-int8", "embeds", args.threads)
    rows = [r for f in sorted(Path(args.sets).glob("*.csv")) for r in read_manifest(f)]
    CONTEXT.mkdir(parents=True, exist_ok=True)
    for row in tqdm(rows, desc="whole frames", mininterval=30):
        out = _key(row.path)
        if out.is_file():
            continue
        try:
            frames = _frames(row.path)
        except Exception as e:  # noqa: BLE001 - a bad clip is reported, the batch goes on
            print(f"{row.path}: {type(e).__name__}: {e}", flush=True)
            continue
        if frames:
            import io

            buf = io.BytesIO()
            np.savez(buf, feat=encoder.features(np.stack([_centre(f) for f in frames])))
            atomic_write_bytes(out, buf.getvalue())


def _table(args: argparse.Namespace) -> tuple:
    """Per clip with both features: rows, set names, face features, frame features."""
    from dfdetect.train.probe import read_features
    from dfdetect.train.probe_fit import feature_settings, read_sets

    rows, names, face, frame = [], [], [], []
    settings = feature_settings()
    for s in read_sets(sorted(Path(args.sets).glob("*.csv"))):
        for r, f in zip(s.rows, read_features(s.rows, FEATS / s.name, settings), strict=True):
            if f is None or not len(f.get("feat_clean", [])) or not _key(r.path).is_file():
                continue
            with np.load(_key(r.path)) as z:
                frame.append(z["feat"].mean(0))
            rows.append(r), names.append(s.name), face.append(f["feat_clean"].mean(0))
    return rows, np.array(names), np.array(face), np.array(frame)


def _head(kind: str):  # noqa: ANN202
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "lr":
        linear = LogisticRegression(C=0.01, max_iter=3000, class_weight="balanced")
        return make_pipeline(StandardScaler(), linear)
    return make_pipeline(StandardScaler(), MLPClassifier((64,), alpha=1.0, max_iter=300, random_state=0))


def _logit(model, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    p = np.clip(model.predict_proba(x)[:, 1], 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / v.std()


def compare(args: argparse.Namespace) -> None:
    rows, names, face, frame = _table(args)
    inputs = {"face": face, "frame": frame, "concat": np.hstack([face, frame])}
    compare_inputs(rows, names, inputs, base="face", fused=("face", "frame"))


def compare_inputs(
    rows: list, names: np.ndarray, inputs: dict[str, np.ndarray], base: str, fused: tuple[str, str]
) -> None:
    """Clip-level heads (``lr``, ``mlp``) on each of ``inputs`` (one row per clip) and the sum of the two
    ``fused`` heads' standardised scores: leave-family-out CV on train (5 folds x 3 shuffles), then trained
    on all train and scored on test, with paired bootstrap CIs against ``mlp/<base>``."""
    from sklearn.model_selection import GroupKFold

    from dfdetect.metrics import auc
    from dfdetect.train.probe_cv import fold_groups

    y, split = np.array([r.label for r in rows]), np.array([r.split for r in rows])
    tr, te = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    groups = fold_groups([rows[i] for i in tr], [names[i] for i in tr])
    scored, both = ("corpus", "face_images"), "+".join(fused)
    for kind in ("lr", "mlp"):
        oof = {k: [] for k in inputs}
        for name, x in inputs.items():
            for seed in range(3):
                out = np.zeros(len(tr))
                for fit, held in GroupKFold(5, shuffle=True, random_state=seed).split(tr, y[tr], groups):
                    out[held] = _logit(_head(kind).fit(x[tr[fit]], y[tr[fit]]), x[tr[held]])
                oof[name].append(out)
        oof[both] = [_z(a) + _z(b) for a, b in zip(oof[fused[0]], oof[fused[1]], strict=True)]
        for name, runs in oof.items():
            cv = {s: np.mean([auc(y[tr][names[tr] == s], o[names[tr] == s]) for o in runs]) for s in scored}
            print(f"CV {kind}/{name}: " + ", ".join(f"{s} {v:.3f}" for s, v in cv.items()), flush=True)
    test = {}
    for kind in ("lr", "mlp"):
        for name, x in inputs.items():
            test[f"{kind}/{name}"] = _logit(_head(kind).fit(x[tr], y[tr]), x[te])
        test[f"{kind}/{both}"] = _z(test[f"{kind}/{fused[0]}"]) + _z(test[f"{kind}/{fused[1]}"])
    rng = np.random.default_rng(0)
    for s in (*scored, "ffpp"):
        k = names[te] == s
        yy, ref = y[te][k], test[f"mlp/{base}"][k]
        cells = []
        for name, v in test.items():
            diffs = []
            for _ in range(500):
                i = rng.integers(0, len(yy), len(yy))
                if len(set(yy[i].tolist())) == 2:
                    diffs.append(auc(yy[i], v[k][i]) - auc(yy[i], ref[i]))
            lo, hi = np.percentile(diffs, [2.5, 97.5])
            cells.append(f"{name} {auc(yy, v[k]):.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(f"test {s} ({(yy == 0).sum()}+{(yy == 1).sum()}): " + " | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("features", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--sets", default="runs/v4/sets", help="folder of the set manifests")
        p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    (features if args.cmd == "features" else compare)(args)


if __name__ == "__main__":
    main()
