"""``bench/detect.py fit`` and ``table``: the library's probe recipe (``dfdetect.train.probe_fit``: heads,
selection and temperature on val, abstention rule) on the cached features of the benchmark's sets, then the
comparison: fusion with v2, tables on the held-out test splits (module of bench/detect.py; read its
docstring first)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.metrics import auc, bootstrap_ci, tpr_at_fpr

BAND_HIGH = 0.65  # the default verdict band's upper edge (constants.VERDICT_BAND)


def _data(args: argparse.Namespace) -> tuple[dict, dict, dict, Any, list[dict]]:
    """rows, clean features, H.264 features per set, the feature settings, and the set manifests' records
    (``--sets``, default ``OUT/sets``: written from ``detect.all_rows()`` when it holds none)."""
    import detect

    from dfdetect.train.probe import read_features
    from dfdetect.train.probe_fit import feature_settings, read_sets

    sets_dir = Path(args.sets or Path(args.out) / "sets")
    if not any(sets_dir.glob("*.csv")):
        detect.write_sets(sets_dir)
    sets = read_sets(sorted(sets_dir.glob("*.csv")))
    tower = getattr(args, "encoder", "clip-vit-b16-int8")
    settings = feature_settings(tower, getattr(args, "feature", "embeds"), getattr(args, "max_windows", 3))
    rows = {s.name: s.rows for s in sets}
    clean = {k: read_features(v, detect.FEATS / k, settings) for k, v in rows.items()}
    h264 = {k: read_features(v, detect.FEATS / k, settings, detect.PERTURBED) for k, v in rows.items()}
    return rows, clean, h264, settings, [s.record() for s in sets]


def _v2_temperature() -> float:
    import detect

    from dfdetect.checkpoint import Checkpoint

    return Checkpoint.load(detect.V2).temperature


def _v2(name: str) -> dict[tuple[str, str], float]:
    """v2's logits of a set's clips, divided by v2's own temperature (its calibrated scale)."""
    import detect

    path = detect.FEATS / name / "v2.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    recs = [json.loads(x) for x in lines]
    t = _v2_temperature()
    return {(r["path"], r["transform"]): r["logit"] / t for r in recs if r["logit"] is not None}


def _split(rows: dict, feats: dict, split: str) -> tuple[list, list, list[str]]:
    out_rows, out_feats, names = [], [], []
    for k in rows:
        for r, f in zip(rows[k], feats[k], strict=True):
            if r.split == split:
                out_rows.append(r), out_feats.append(f), names.append(k)
    return out_rows, out_feats, names


def _cell(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    if len(set(y.tolist())) < 2:
        return {"n": [int((y == 0).sum()), int((y == 1).sum())]}
    lo, hi = bootstrap_ci(y, s, auc, n_boot=1000, seed=0)
    return {"auc": auc(y, s), "ci": [lo, hi], "tpr@5%fpr": tpr_at_fpr(y, s, 0.05),
            "n": [int((y == 0).sum()), int((y == 1).sum())]}  # fmt: skip


def _fuse(a: np.ndarray, b: np.ndarray, coef: dict[str, float]) -> np.ndarray:
    return coef["w_expert"] * a + coef["w_v2"] * b + coef["bias"]


def fit_fusion(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Logistic regression of the label on (expert logit, v2 logit), fitted on val: calibrated fused logit."""
    from sklearn.linear_model import LogisticRegression

    ok = ~np.isnan(a) & ~np.isnan(b)
    lr = LogisticRegression(C=1.0).fit(np.stack([a[ok], b[ok]], 1), y[ok])
    return {"w_expert": float(lr.coef_[0, 0]), "w_v2": float(lr.coef_[0, 1]), "bias": float(lr.intercept_[0])}


def scores_of(model: Any, rows: dict, feats: dict, v2: dict, transform: str, t: float, fusion: dict) -> dict:
    """Per set: labels and calibrated-logit scores of v2, the expert and the fusion (NaN where missing)."""
    from dfdetect.train.probe import clip_logits

    out = {}
    for k in rows:
        test = [(r, f) for r, f in zip(rows[k], feats[k], strict=True) if r.split == "test"]
        if not test:
            continue
        y = np.array([r.label for r, _ in test])
        expert = clip_logits(model, [f for _, f in test]) / t
        old = np.array([v2[k].get((r.path, transform), np.nan) for r, _ in test], dtype=float)
        fused = _fuse(expert * t, old, fusion)
        out[k] = {"y": y, "v2": old, "expert": expert, "fusion": fused, "paths": [r.path for r, _ in test],
                  "quality": [f for _, f in test]}  # fmt: skip
    return out


def _model_cell(s: dict, h: dict | None, m: str, ok: np.ndarray) -> dict:
    """One model's cell on the items ``ok`` of a set: AUC, CI, TPR, reals called fake, and after H.264 on
    the re-encoded items that are also in ``ok`` (with the clean AUC of the same items)."""
    cell = _cell(s["y"][ok], s[m][ok])
    reals = s[m][ok][s["y"][ok] == 0]
    cell["reals_called_fake"] = [int((1 / (1 + np.exp(-reals)) >= BAND_HIGH).sum()), len(reals)]
    if h is not None:
        chosen = set(np.array(s["paths"])[ok])
        okh = ~np.isnan(h[m]) & np.array([p in chosen for p in h["paths"]], dtype=bool)
        cell["h264"] = _cell(h["y"][okh], h[m][okh]).get("auc")
        same = ok & np.array([p in set(np.array(h["paths"])[okh]) for p in s["paths"]], dtype=bool)
        cell["clean_same_items"] = _cell(s["y"][same], s[m][same]).get("auc")
    return cell


def _table(scores: dict, scores_h264: dict) -> dict:
    """Per set: v2, the expert and the fusion on the clips all three scored (side by side), and the
    expert alone on every clip it scored (``expert-all``)."""
    table = {}
    for k, s in scores.items():
        both = ~np.isnan(s["v2"]) & ~np.isnan(s["expert"])
        h = scores_h264.get(k)
        for m in ("v2", "expert", "fusion"):
            table[f"{k}/{m}"] = _model_cell(s, h, m, both)
        table[f"{k}/expert-all"] = _model_cell(s, h, "expert", ~np.isnan(s["expert"]))
    return table


def paired_difference(scores: dict, a: str = "expert", b: str = "v2", n_boot: int = 1000) -> dict:
    """Per set, AUC(a) - AUC(b) on the clips both scored, with a 95 % paired bootstrap CI (same resampled
    clips for both models)."""
    out = {}
    rng = np.random.default_rng(0)
    for k, s in scores.items():
        ok = ~np.isnan(s[a]) & ~np.isnan(s[b])
        y, x1, x2 = s["y"][ok], s[a][ok], s[b][ok]
        if len(set(y.tolist())) < 2:
            continue
        diffs = []
        for _ in range(n_boot):
            i = rng.integers(0, len(y), len(y))
            if len(set(y[i].tolist())) == 2:
                diffs.append(auc(y[i], x1[i]) - auc(y[i], x2[i]))
        out[k] = {"diff": auc(y, x1) - auc(y, x2), "ci": [float(np.percentile(diffs, 2.5)),
                  float(np.percentile(diffs, 97.5))]}  # fmt: skip
    return out


V1_WINDOWS_PER_S = 2.9  # v1's training throughput on these 2 cores (docs/model_card_default.md)


def speed(fitted: dict, model: Any) -> dict[str, float]:
    """Training throughput of the chosen head on cached features (windows seen per second, all epochs) and
    against the whole model's own forward + backward of a window (tower forward, measured here now, as
    a lower bound: a backward through the tower would cost more), both as ratios to v1's 2.9 windows/s."""
    import time

    hidden = model.head.net[0].out_features if len(model.head.net) > 2 else 0
    seen = fitted["frames"] * (30 if hidden else 1)  # MLP: 30 epochs; logistic regression: one solve
    head_rate = seen / max(fitted["fit_seconds"], 1e-6)
    x = np.random.default_rng(0).normal(size=(4, 1, 3, 224, 224)).astype(np.float32)
    model.encode(x[:1])  # load the tower
    start = time.perf_counter()
    model.encode(x)
    tower_rate = 4 / (time.perf_counter() - start)
    return {"head_windows_per_s": head_rate, "head_vs_v1": head_rate / V1_WINDOWS_PER_S,
            "tower_windows_per_s": tower_rate, "tower_vs_v1": tower_rate / V1_WINDOWS_PER_S,
            "head_vs_tower": head_rate / tower_rate}  # fmt: skip


def _test_aucs(model: Any, rows: dict, clean: dict) -> dict[str, float]:
    """Test AUC per set of one head (the with / without self-blends comparison)."""
    from dfdetect.train.probe import clip_logits

    out = {}
    for k in rows:
        test = [(r, f) for r, f in zip(rows[k], clean[k], strict=True) if r.split == "test" and f is not None]
        y = np.array([r.label for r, _ in test])
        if len(set(y.tolist())) == 2:
            out[k] = auc(y, clip_logits(model, [f for _, f in test]))
    return out


def per_family(scores: dict, rows: dict) -> dict[str, dict[str, Any]]:
    """Corpus test: each fake family against all test reals (AUC per model), and per real source the share
    of its clips called fake by the expert at the default band."""
    if "corpus" not in scores:
        return {}
    s = scores["corpus"]
    meta = {r.path: r for r in rows["corpus"]}
    fam = np.array([getattr(meta[p], "family", "") or meta[p].method for p in s["paths"]])
    src = np.array([getattr(meta[p], "source", "") for p in s["paths"]])
    out: dict[str, dict[str, Any]] = {}
    reals = s["y"] == 0
    for f in sorted(set(fam[~reals])):
        pick = reals | (fam == f)
        out[f"fake:{f}"] = {m: _cell(s["y"][pick & ~np.isnan(s[m])], s[m][pick & ~np.isnan(s[m])]).get("auc")
                            for m in ("v2", "expert")}  # fmt: skip
        out[f"fake:{f}"]["n"] = int((fam == f).sum())  # v2: on the clips it scored so far
    for source in sorted(set(src[reals])):
        pick = reals & (src == source)
        p = 1 / (1 + np.exp(-s["expert"][pick]))
        out[f"real:{source}"] = {"called_fake": int((p >= BAND_HIGH).sum()), "n": int(pick.sum())}
    return out


def abstains(f: dict | None, rule: dict[str, float]) -> bool:
    """The rule of ``dfdetect.infer.aggregate.abstention`` on cached quality facts (median over frames)."""
    if f is None:
        return False
    return bool(np.median(f["face_px"]) < rule["min_face_px"] or np.median(f["blur"]) < rule["min_sharpness"])


def _abstention_table(scores: dict, rule: dict) -> dict:
    out = {}
    for k, s in scores.items():
        p = 1 / (1 + np.exp(-s["expert"]))
        held = np.array([abstains(f, rule) for f in s["quality"]])
        fake = p >= BAND_HIGH
        r, f = s["y"] == 0, s["y"] == 1
        out[k] = {"reals_fake_before": [int((fake & r).sum()), int(r.sum())],
                  "reals_fake_after": [int((fake & r & ~held).sum()), int(r.sum())],
                  "fakes_fake_before": [int((fake & f).sum()), int(f.sum())],
                  "fakes_fake_after": [int((fake & f & ~held).sum()), int(f.sum())],
                  "abstained": int(held.sum())}  # fmt: skip
    return out


def _flat(rows: dict, feats: dict) -> tuple[list, list, list]:
    """Every set's rows, features and set names, one list each (set by set, as ``dfdetect fit-probe`` reads
    them)."""
    return (
        [r for k in rows for r in rows[k]],
        [f for k in rows for f in feats[k]],
        [k for k in rows for _ in rows[k]],
    )


def fit(args: argparse.Namespace) -> None:
    """The library's probe fit on the sets' train/val rows; fusion with v2 on val; test tables."""
    import logging

    import torch

    from dfdetect.train.probe import clip_logits
    from dfdetect.train.probe_fit import VARIANT_SETS, fit_probe

    torch.set_num_threads(1)  # heads of a few thousand weights: more threads only contend
    logging.basicConfig(level=logging.INFO, format="  %(message)s")  # the heads' val AUCs as they come
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, clean, h264, settings, records = _data(args)
    v2 = {k: _v2(k) for k in rows}
    flat_rows, flat_feats, names = _flat(rows, clean)
    probe = fit_probe(flat_rows, flat_feats, settings, sets=names)
    model, t, rule = probe.model, probe.temperature, probe.rule
    results: dict[str, Any] = {"sets": {k: len(v) for k, v in rows.items()}, "val": probe.val_auc,
                               "cv": probe.cv_auc, "selection": probe.selection}  # fmt: skip
    for variants in VARIANT_SETS:  # test AUC of the best head with and without the self-blends
        best = probe.candidates[probe.best_of(variants)]["model"]
        results["with_sbi" if "sbi" in variants else "without_sbi"] = _test_aucs(best, rows, clean)
    va_rows, va_feats, names = _split(rows, clean, "val")
    yv, sv = np.array([r.label for r in va_rows]), clip_logits(model, va_feats)
    old = np.array([v2[n].get((r.path, ""), np.nan) for r, n in zip(va_rows, names, strict=True)])
    fusion = fit_fusion(yv, sv, old)
    results.update({"chosen": probe.chosen, "temperature": t, "fusion": fusion, "rule": rule})
    scores = scores_of(model, rows, clean, v2, "", t, fusion)
    scores_h = scores_of(model, rows, h264, v2, "h264" + "30", t, fusion)
    results["test"] = _table(scores, scores_h)
    results["abstention"] = _abstention_table(scores, rule)
    results["speed"] = speed(probe.candidates[probe.chosen], model)
    results["corpus_detail"] = per_family(scores, rows)
    results["expert_minus_v2"] = paired_difference(scores)
    results["manifests"] = records
    _save(out, probe, settings, records, fusion)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    print(markdown(results))


def _save(out: Path, probe: Any, settings: Any, records: list[dict], fusion: dict) -> None:
    """``OUT/clip-probe.pt`` through the library's writer; one that ``dfdetect fit-probe`` wrote there is
    kept when it is the same fit (same head and temperature), else this stops: its tables would describe
    another model."""
    import shlex

    from dfdetect.checkpoint import Checkpoint
    from dfdetect.train.probe_fit import write_probe

    path = out / "clip-probe.pt"
    ckpt = Checkpoint.load(path) if path.is_file() else None
    made = str(((ckpt.train_config or {}) if ckpt else {}).get("command", ""))
    if made.startswith("dfdetect fit-probe"):
        if ckpt.metrics.get("chosen") != probe.chosen or abs(ckpt.temperature - probe.temperature) > 1e-6:
            raise SystemExit(
                f"{path} (made by `{made}`: {ckpt.metrics.get('chosen')}, T = {ckpt.temperature:.4f}) is "
                f"not this fit ({probe.chosen}, T = {probe.temperature:.4f}): were the features extended "
                "since? Run fit-probe again, or give another --out"
            )
        print(f"{path}: kept (made by `{made}`, the same fit)")
        return
    command = shlex.join(["python", "bench/detect.py", *sys.argv[1:]])
    write_probe(path, probe, settings, records, command, calibration={"fusion_v2": fusion})


def _fmt(cell: dict, key: str = "auc") -> str:
    if key not in cell or cell[key] is None:
        return "-"
    if key == "auc":
        return f"{cell['auc']:.3f} [{cell['ci'][0]:.2f}, {cell['ci'][1]:.2f}] ({cell['n'][0]}+{cell['n'][1]})"
    return f"{cell[key]:.3f}"


def markdown(results: dict) -> str:
    lines = [
        f"chosen head: {results['chosen']}, T = {results['temperature']:.3f}, fusion {results['fusion']}",
        "| set | model | AUC [95 % CI] (reals+fakes) | TPR@5%FPR | reals called fake | h264 30 | "
        "clean, same items | drop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, c in results["test"].items():
        k, m = key.split("/")
        drop = c.get("clean_same_items") - c["h264"] if c.get("h264") and c.get("clean_same_items") else None
        rf = c["reals_called_fake"]
        d = "-" if drop is None else f"{drop:+.3f}"
        cells = [k, m, _fmt(c), _fmt(c, "tpr@5%fpr"), f"{rf[0]}/{rf[1]}", _fmt(c, "h264")]
        lines.append("| " + " | ".join([*cells, _fmt(c, "clean_same_items"), d]) + " |")
    lines += ["", f"abstention rule {results['rule']}:", json.dumps(results["abstention"])]
    lines += ["", f"speed: {results.get('speed')}", f"expert - v2 (paired): {results.get('expert_minus_v2')}"]
    lines += ["", "corpus detail:"] + [f"  {k}: {v}" for k, v in (results.get("corpus_detail") or {}).items()]
    lines += ["", f"test AUC of the best head with self-blends {results.get('with_sbi')}",
              f"without {results.get('without_sbi')}"]  # fmt: skip
    return "\n".join(lines)


def table(args: argparse.Namespace) -> None:
    results = json.loads((Path(args.out) / "results.json").read_text(encoding="utf-8"))
    print(markdown(results))
