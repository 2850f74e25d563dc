"""Adversarial robustness of a detector on real clips: `dfdetect eval --attack`, as a user runs it.

Real talking-head clips from ../shared/media (PC-AVS first, then VideoReTalking and LivePortrait) are
prepared with the real pipeline (MTCNN faces, `--size` px crops), then evaluated with one held-back
self-blended pseudo-fake per real clip (`--pseudofakes sbi`) under a white-box attack at each eps.
Printed: the attack table (AUC, attack success rate per direction) and the seconds per video of the
attacked scoring relative to the clean one.

With ``--source`` the attack is crafted on another checkpoint and scored by ``--model`` (transfer: a
black-box attacker with a model of its own); ``--modality video`` scores the frame model alone.

    python bench/attack.py [--clips 8] [--seconds 1.0] [--attack pgd] [--steps 10] [--model default]
        [--source other.pt] [--modality video]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import MEDIA, measure

PATTERNS = ("pcavs_*.mp4", "videoretalking_face_*.mp4", "liveportrait_d*.mp4")


def dfdetect(*args: str) -> float:
    """Run ``dfdetect ARGS`` in a subprocess; returns its wall seconds."""
    return measure(lambda: subprocess.run([sys.executable, "-m", "dfdetect", *args], check=True)).wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds prepared per clip")
    ap.add_argument("--size", type=int, default=160, help="crop size (the default model's input size)")
    ap.add_argument("--attack", default="pgd", choices=["fgsm", "pgd"])
    ap.add_argument("--eps", default="1/255,2/255,4/255")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--model", default=None, help="checkpoint (default: the packaged default model)")
    ap.add_argument("--source", default=None, help="craft the attack on this checkpoint (transfer)")
    ap.add_argument("--modality", choices=["video", "audio"], help="score with one modality only")
    ap.add_argument("--out", default=None, help="keep the eval folder here")
    ap.add_argument("--prepared", default=None, help="keep (and reuse) the prepared clips here")
    args = ap.parse_args()
    from dfdetect.infer.lookup import resolve_model

    model = str(resolve_model(args.model)[0])
    source = ["--attack-source", str(resolve_model(args.source)[0])] if args.source else []
    with tempfile.TemporaryDirectory() as tmp:
        clips = [c for pattern in PATTERNS for c in sorted((MEDIA / "real").glob(pattern))][: args.clips]
        labels = Path(tmp) / "labels.csv"  # all real, one test split (the fakes are held-back SBI)
        labels.write_text("path,label,split,group\n" + "".join(f"{c},0,test,{c.stem}\n" for c in clips))
        prep, out = Path(args.prepared or Path(tmp) / "prepared"), Path(args.out or Path(tmp) / "eval")
        dfdetect("prepare", "folder", str(labels), "--out", str(prep), "--size", str(args.size),
                 "--max-duration", str(args.seconds), "--workers", "1", "--quiet")  # fmt: skip
        common = ["--checkpoint", model, "--manifest", str(prep / "manifest.csv"), "--split", "test",
                  "--pseudofakes", "sbi", "--bootstrap", "50", "--no-progress"]  # fmt: skip
        common += ["--modality", args.modality] if args.modality else []
        clean = dfdetect("eval", *common, "--out", str(Path(tmp) / "clean"))
        attacked = dfdetect("eval", *common, "--out", str(out), "--attack", args.attack, "--eps", args.eps,
                            "--steps", str(args.steps), *source)  # fmt: skip
        table = json.loads((out / "attack.json").read_text())
    n = table["clean"]["n"]
    name = Path(model).name
    crafted = f", crafted on {Path(source[1]).name}" if source else ", white box"
    videos = f"{n} videos ({len(clips)} real + SBI)"
    print(f"{args.attack.upper()} ({args.steps} steps{crafted}), {name}: {videos}")
    print(f"clean: AUC {table['clean']['auc']:.3f}, {table['clean']['n_correct']}/{n} right at 0.5")
    for r in table["results"]:
        print(
            f"eps {r['eps_name']:>6}: AUC {r['auc']:.3f}  success {r['n_flipped']}/{r['n_correct']}"
            f" (fakes->real {r['n_flipped_fake_to_real']}/{r['n_correct_fake_to_real']},"
            f" reals->fake {r['n_flipped_real_to_fake']}/{r['n_correct_real_to_fake']})"
            f"  mean p real {r['mean_p_real']:.3f} fake {r['mean_p_fake']:.3f}"
        )
    per_eps = (attacked - clean) / len(table["results"])
    print(
        f"eval wall: clean {clean:.0f} s; each eps adds {per_eps:.0f} s ({per_eps / clean:.1f}x a clean eval)"
    )


if __name__ == "__main__":
    main()
