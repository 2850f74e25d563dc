"""Adversarial robustness: re-score cached clips under white-box FGSM / PGD attacks on their face crops.

The attack maths (pixel space in ``[0, 1]``, L-inf ``eps``, the loss of the true label maximised: fakes
pushed toward real, reals toward fake) lives in :mod:`dfdetect.models.adversarial`, shared with adversarial
training. Here it is put inside the scan core: :class:`AttackedModel` stands in for the evaluated model,
so every window of every clip is cut, batched and aggregated exactly as ``dfdetect scan`` does
(:meth:`~dfdetect.infer.pipeline.Detector.score`); each batch of windows is perturbed before the model
sees it. With a ``source`` checkpoint (transfer setting) the perturbation is crafted on the source model
and scored by the evaluated one.

Output (``out_dir``): ``attack.json`` (the table the report reads), ``attack/predictions-<name>.jsonl``
per eps, and ``figures/attack_examples_<name>.png`` (clean / adversarial / amplified perturbation crops).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dfdetect.config import PreprocessConfig
    from dfdetect.data.manifest import ManifestRow
    from dfdetect.infer.pipeline import Detector
    from dfdetect.types import Clip

DEFAULT_EPS = (1 / 255, 2 / 255, 4 / 255)
N_EXAMPLES = 2  # example videos per class in the report


def parse_eps(text: str) -> tuple[float, ...]:
    """``"1/255,2/255,0.01"`` -> ``(0.00392, 0.00784, 0.01)``: pixel units of the ``[0, 1]`` range.

    Raises:
        ValueError: an item is not a number or fraction, or lies outside ``[0, 1]``.
    """
    out = []
    for item in (s.strip() for s in str(text).split(",")):
        try:
            num, _, den = item.partition("/")
            value = float(num) / float(den or 1)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"eps {item!r} is not a number or fraction: write e.g. 2/255 or 0.008") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"eps {item} is outside [0, 1]: eps is in pixel units, e.g. 4/255")
        out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class AttackSpec:
    """What ``dfdetect eval --attack`` runs.

    Attributes:
        kind: ``fgsm`` or ``pgd``.
        eps: L-inf budgets in pixel units (``2/255`` = two 8-bit levels), one table row each.
        steps: PGD steps (FGSM: one).
        step_size: PGD pixels per step (None: ``2.5 * eps / steps``).
        source: checkpoint the attack is crafted on (transfer setting); None = the evaluated model.
    """

    kind: str = "pgd"
    eps: tuple[float, ...] = DEFAULT_EPS
    steps: int = 10
    step_size: float | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        from dfdetect.models.adversarial import ATTACKS

        if self.kind not in ATTACKS:
            raise ValueError(f"unknown attack {self.kind!r}: choose {' or '.join(ATTACKS)}")
        if not self.eps or self.steps < 1 or any(not 0 <= e <= 1 for e in self.eps):
            raise ValueError(f"an attack needs eps in [0, 1] and steps >= 1, got {self.eps}, {self.steps}")
        if self.source is not None and not Path(self.source).is_file():
            raise ValueError(f"attack source checkpoint not found: {self.source}")

    @classmethod
    def of(cls, value: AttackSpec | dict[str, Any] | str) -> AttackSpec:
        """An :class:`AttackSpec` from itself, a dict of its fields, or an attack name."""
        if isinstance(value, AttackSpec):
            return value
        if isinstance(value, str):
            return cls(kind=value)
        fields = dict(value)
        if isinstance(fields.get("eps"), str):
            fields["eps"] = parse_eps(fields["eps"])
        fields["eps"] = tuple(float(e) for e in fields.get("eps", DEFAULT_EPS))
        return cls(**fields)


def eps_name(eps: float) -> str:
    """``2/255`` -> ``"2/255"``; other values as decimals."""
    levels = eps * 255
    return f"{levels:g}/255" if abs(levels - round(levels, 3)) < 1e-6 else f"{eps:g}"


class AttackedModel:
    """Stands in for a model: perturbs each batch of windows (pixels within ``eps``), then scores it.

    Args:
        target: the evaluated model (scores the adversarial windows).
        pre: its preprocessing (mean, std of the windows it is given).
        spec: the attack.
        eps: this run's budget.
        source: (model, preprocessing) the attack is crafted on; None = ``target`` (white box).
    """

    def __init__(
        self,
        target: Any,
        pre: PreprocessConfig,
        spec: AttackSpec,
        eps: float,
        source: tuple[Any, PreprocessConfig] | None = None,
    ) -> None:
        self.target, self.pre, self.spec, self.eps = target, pre, spec, eps
        self.source, self.source_pre = source if source is not None else (target, pre)
        self.key, self.label, self.generator = "", 0, None
        self.examples: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:  # modalities, name, ... of the evaluated model
        target = self.__dict__.get("target")
        if target is None:
            raise AttributeError(name)
        return getattr(target, name)

    def begin(self, key: str, label: int) -> None:
        """The next windows belong to video ``key`` of true ``label`` (seeds its random start)."""
        import torch

        self.key, self.label = key, int(label)
        self.generator = torch.Generator().manual_seed(zlib.crc32(f"{key}|{self.eps}".encode()))

    def eval(self) -> AttackedModel:
        self.target.eval()
        self.source.eval()
        return self

    def __call__(self, frames, audio=None, audio_mask=None, mouths=None) -> dict[str, Any]:  # noqa: ANN001
        """The target's outputs on the adversarial version of these windows (``frames [B, T, 3, H, W]``)."""
        import torch

        from dfdetect.models.adversarial import PIXEL_KEYS, attack, model_batch, to_pixels

        inputs = {"frames": frames, "audio": audio, "audio_mask": audio_mask, "mouths": mouths}
        if self.eps == 0 and self.source is self.target:
            return self.target(**inputs)  # the identity: exactly the clean scores
        m, s = self.pre.mean, self.pre.std
        with torch.inference_mode(False):  # the scan core scores under inference mode; attacks need grads
            pixels = {
                k: None if v is None else (to_pixels(v.clone(), m, s) if k in PIXEL_KEYS else v.clone())
                for k, v in inputs.items()
            }
            y = torch.full((frames.shape[0],), float(self.label), device=frames.device)  # [B]
            sp = self.source_pre
            adv = attack(
                self.spec.kind, self.source, pixels, y, eps=self.eps, steps=self.spec.steps,
                step_size=self.spec.step_size, mean=sp.mean, std=sp.std,
                size=sp.size if self.source is not self.target else None, generator=self.generator,
            )  # fmt: skip
        self._keep_example(pixels["frames"], adv["frames"])
        return self.target(**model_batch(adv, m, s))

    def _keep_example(self, clean, adv) -> None:  # noqa: ANN001
        """First frame of the first window of the first few videos of each class (HWC float arrays)."""
        same_class = sum(e["label"] == self.label for e in self.examples.values())
        if self.key in self.examples or same_class >= N_EXAMPLES:
            return
        to_img = lambda x: x[0, 0].permute(1, 2, 0).detach().float().cpu().numpy()  # noqa: E731  [H, W, 3]
        self.examples[self.key] = {"label": self.label, "clean": to_img(clean), "adv": to_img(adv)}


def load_source(path: str | os.PathLike, device: str) -> tuple[Any, PreprocessConfig]:
    """(model, preprocessing) of a transfer source checkpoint."""
    from dfdetect.checkpoint import Checkpoint

    ckpt = Checkpoint.load(path)
    return ckpt.build_model(device), ckpt.preprocess


def attacked_detector(detector: Detector, model: AttackedModel) -> Detector:
    """A copy of ``detector`` (same rules, temperature, thresholds, speech companion) around ``model``."""
    from dfdetect.infer.pipeline import Detector as _Detector

    return _Detector.from_model(
        model, detector.preprocess, name=detector.name, temperature=detector.temperature,
        prepare=detector.prepare_config, device=detector.device, thresholds=detector.thresholds,
        aggregation=detector.aggregation, speech=detector.speech,
    )  # fmt: skip


def _labelled_loader(
    model: AttackedModel, cache_dir: Path, loader: Callable[[ManifestRow], Clip] | None
) -> Callable[[ManifestRow], Clip]:
    """A row loader that tells ``model`` which video (and true label) the next windows come from."""
    from dfdetect.data.cache import read_entry

    def load(row: ManifestRow) -> Clip:
        model.begin(row.path, row.label)
        return loader(row) if loader is not None else read_entry(cache_dir, row.path)

    return load


def summarize(clean: list[dict], adv: list[dict], threshold: float = 0.5) -> dict[str, Any]:
    """AUC and attack success of ``adv`` records against the ``clean`` ones (joined by path).

    A video is *correct* when its clean p_fake is on its label's side of ``threshold``; the attack
    *succeeds* on it when its adversarial p_fake crosses to the other side. Success rates are over the
    correct videos (all, fakes only = made to look real, reals only = made to look fake).
    """
    from dfdetect.metrics import MetricError, auc

    before = {r["path"]: r["p_fake"] for r in clean if r.get("p_fake") is not None}
    pairs = [(r["extras"]["label"], before[r["path"]], r["p_fake"]) for r in adv
             if r.get("p_fake") is not None and r["path"] in before]  # fmt: skip
    try:
        value = auc([y for y, _, _ in pairs], [p for _, _, p in pairs])
    except MetricError:
        value = None
    out: dict[str, Any] = {"n": len(pairs), "auc": value}
    for name, cls in (("", (0, 1)), ("_fake_to_real", (1,)), ("_real_to_fake", (0,))):
        correct = [(y, a) for y, c, a in pairs if y in cls and (c >= threshold) == bool(y)]
        flipped = sum((a >= threshold) != bool(y) for y, a in correct)
        out[f"n_correct{name}"], out[f"n_flipped{name}"] = len(correct), flipped
        out[f"success_rate{name}"] = flipped / len(correct) if correct else None
    for name, y in (("mean_p_real", 0), ("mean_p_fake", 1)):
        ps = [a for label, _, a in pairs if label == y]
        out[name] = sum(ps) / len(ps) if ps else None
    out["mean_abs_change"] = sum(abs(a - c) for _, c, a in pairs) / len(pairs) if pairs else None
    return out


def _example_figure(model: AttackedModel, clean: list[dict], adv: list[dict], path: Path) -> Path | None:
    """Clean / adversarial / amplified perturbation crops of the examples ``model`` kept."""
    from dfdetect.eval import plots

    p0 = {r["path"]: r["p_fake"] for r in clean}
    p1 = {r["path"]: r["p_fake"] for r in adv}
    rows = [
        {**e, "title": f"{Path(k).name[:32]} (label {e['label']}): p_fake {_p(p0.get(k))} -> {_p(p1.get(k))}"}
        for k, e in sorted(model.examples.items(), key=lambda kv: -kv[1]["label"])
    ]
    return plots.attack_examples(rows, model.eps, path) if rows else None


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def run_attacks(
    detector: Detector,
    rows: Sequence[ManifestRow],
    cache_dir: str | os.PathLike,
    spec: AttackSpec | dict[str, Any] | str,
    out_dir: str | os.PathLike,
    clean: list[dict],
    predict: Callable[..., list[dict]],
    loader: Callable[[ManifestRow], Clip] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Score ``rows`` under the attack at every eps of ``spec``; write ``attack.json`` and friends.

    Args:
        detector: the evaluated detector.
        rows: the videos (as scored clean).
        cache_dir: their cache.
        spec: the attack (:class:`AttackSpec`, its fields as a dict, or a name).
        out_dir: the eval output folder.
        clean: the clean prediction records of ``rows`` (the baseline of success rates).
        predict: :func:`~dfdetect.eval.evaluate.predict_rows` (passed in: ``evaluate`` imports this module).
        loader: the row loader of ``predict`` (pseudo-fakes).
        **kw: more ``predict`` options (modality_mask, batch_size, ...).

    Returns:
        The ``attack.json`` table.
    """
    from dfdetect.data.manifest import file_hash
    from dfdetect.io.files import atomic_write_text, write_jsonl

    spec, out = AttackSpec.of(spec), Path(out_dir)
    if kw.get("modality_mask") == "audio":
        raise ValueError("the attack perturbs face crops: it cannot run with the audio-only modality mask")
    source = load_source(spec.source, detector.device) if spec.source else None
    table: dict[str, Any] = {
        **dataclasses.asdict(spec), "threshold": 0.5, "pixel_range": [0, 1],
        "source_hash": file_hash(spec.source) if spec.source else None,
        "clean": summarize(clean, clean), "results": [],
    }  # fmt: skip
    for eps in spec.eps:
        model = AttackedModel(detector.model, detector.preprocess, spec, eps, source)
        name = f"{spec.kind}-eps{eps * 255:.3g}"
        load = _labelled_loader(model, Path(cache_dir), loader)
        desc = f"{spec.kind} eps={eps_name(eps)}"
        records = predict(attacked_detector(detector, model), rows, cache_dir, loader=load, desc=desc, **kw)
        write_jsonl(records, out / "attack" / f"predictions-{name}.jsonl")
        fig = _example_figure(model, clean, records, out / "figures" / f"attack_examples_{name}.png")
        result = {"eps": eps, "eps_name": eps_name(eps), **summarize(clean, records)}
        result["examples"] = os.path.relpath(fig, out) if fig is not None else None
        table["results"].append(result)
    atomic_write_text(out / "attack.json", json.dumps(table, indent=2))
    return table


def report_section(doc: Any, out_dir: str | os.PathLike, figs: str | os.PathLike) -> dict[str, Any] | None:
    """The report's "Adversarial robustness" section from ``attack.json`` (``doc``: the report's document)."""
    from dfdetect.eval import plots

    doc.h2("Adversarial robustness")
    path = Path(out_dir) / "attack.json"
    if not path.is_file():
        doc.p(
            "Not run: use `--attack fgsm|pgd --eps 1/255,2/255,4/255` (white-box attacks on the face crops)."
        )
        return None
    table = json.loads(path.read_text(encoding="utf-8"))
    steps = "one step" if table["kind"] == "fgsm" else f"{table['steps']} steps"
    source = "white box (crafted on the evaluated model)"
    if table.get("source"):
        source = f"crafted on {table['source']}, scored by the evaluated model (transfer)"
    doc.p(
        f"{table['kind'].upper()} ({steps}), {source}: every face-crop window is perturbed within eps "
        "(L-inf, pixels in [0, 1]; 1/255 = one 8-bit level) to raise the loss of its true label (fakes "
        f"pushed toward real, reals toward fake). Attack success rate: share of the videos right at p_fake "
        f"{table['threshold']:g} before the attack that are wrong after it."
    )
    clean = table["clean"]
    rows = [["clean", clean["n"], clean["auc"], None, None, None, clean["mean_p_real"], clean["mean_p_fake"]]]
    rows += [
        [r["eps_name"], r["n"], r["auc"], _rate(r, ""), _rate(r, "_fake_to_real"), _rate(r, "_real_to_fake"),
         r["mean_p_real"], r["mean_p_fake"]]
        for r in table["results"]
    ]  # fmt: skip
    headers = [
        "eps",
        "n",
        "AUC",
        "success rate",
        "fakes -> real",
        "reals -> fake",
        "mean p real",
        "mean p fake",
    ]
    doc.table(headers, rows)
    doc.img(plots.attack_curve(table, Path(figs) / "attack_auc.png"), "AUC and attack success rate vs eps")
    for r in table["results"]:
        if r.get("examples"):
            doc.p(f"eps {r['eps_name']}: clean crop, adversarial crop, amplified perturbation (grey = none)")
            doc.img(Path(out_dir) / r["examples"], f"adversarial examples at eps {r['eps_name']}")
    return table


def _rate(row: dict[str, Any], direction: str) -> str:
    """``"0.750 (3/4)"``: a success rate with its counts."""
    n = row[f"n_correct{direction}"]
    return f"{row[f'n_flipped{direction}'] / n:.3f} ({row[f'n_flipped{direction}']}/{n})" if n else "–"
