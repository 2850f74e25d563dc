"""Speech experiments under `dfdetect train`: configs, a waveform model's checkpoint, the Whisper head fit."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from dfdetect.data.manifest import ManifestRow
from dfdetect.models.whisper_speech import ENCODER_WIDTH
from dfdetect.train import speech_head as H
from dfdetect.train.speech import checkpoint_meta, load_speech_config, speech_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_speech_config_loads_with_overrides() -> None:
    cfg = load_speech_config(ROOT / "configs/experiments/speech.yaml", ["data.codec=mp3", "train.seed=3"])
    assert cfg.model.name == "aasist-l" and cfg.model.kwargs()["pretrained"] is True
    assert cfg.data.codec == "mp3" and cfg.train.seed == 3
    assert cfg.train.stages[0].trainable == ["audio"]
    meta = checkpoint_meta(cfg)
    assert meta["model_config"]["pretrained"] is False and meta["preprocess"]["codec"] == "mp3"


def test_dfdetect_train_reads_speech_and_video_experiments(capsys: pytest.CaptureFixture) -> None:
    from dfdetect.cli import main
    from dfdetect.config import ExperimentConfig
    from dfdetect.train.run import load_experiment
    from dfdetect.train.speech import SpeechExperimentConfig

    cfg = load_experiment(ROOT / "configs/experiments/speech_whisper.yaml", ["fit.c_grid=[0.1]"])
    assert isinstance(cfg, SpeechExperimentConfig) and cfg.model.name == "whisper-speech"
    assert cfg.fit.c_grid == [0.1] and cfg.data.kind == "speech"
    assert isinstance(load_experiment(ROOT / "configs/experiments/demo.yaml"), ExperimentConfig)
    path = str(ROOT / "configs/experiments/speech_whisper.yaml")
    assert main(["train", "--config", path, "--print-config"]) == 0
    assert "whisper-speech" in capsys.readouterr().out


def test_waveform_checkpoint_rebuilds_the_model(tmp_path: Path) -> None:
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.models.factory import create_model

    model = create_model("aasist-l", pretrained=True)
    state = speech_checkpoint(model.state_dict(), "aasist-l", {"hop_samples": 16000}, metrics={"eer": 0.1})
    ckpt = Checkpoint.load(Checkpoint.from_state(state).save(tmp_path / "s.pt"))
    rebuilt = ckpt.build_model()
    assert rebuilt.hop_samples == 16000 and not rebuilt.training
    pre = ckpt.preprocess  # the scan core cuts audio into exactly one window
    assert pre.audio_samples == 64600 and pre.num_segments == 1 and pre.sample_rate == 16000
    assert ckpt.input_codec == ("opus", 48000)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


def _row(i: int, label: int, family: str, split: str = "train", source: str = "") -> ManifestRow:
    return ManifestRow(f"/x/{family}/{i}.wav", label, "catalog", family if label else "real", split,
                       f"g{i}", family=family if label else "real", source=source)  # fmt: skip


def test_family_balance_and_caps() -> None:
    rows = [_row(i, 1, "big") for i in range(100)] + [_row(100 + i, 1, "small") for i in range(5)]
    rows += [_row(200 + i, 0, "", source=f"repo{i % 2}") for i in range(40)]
    w = H.family_weights(rows, per_family=10)
    fam = np.array([H.family_of(r) for r in rows])
    assert w[fam == "fake:big"].sum() == pytest.approx(2 * w[fam == "fake:small"].sum())  # 10 vs 5 files
    assert w[:105].sum() == pytest.approx(w[105:].sum())  # the classes weigh the same
    capped = H.cap_per_family(rows, 10)
    assert sum(H.family_of(r) == "fake:big" for r in capped) == 10 and len(capped) == 10 + 5 + 20
    assert capped == H.cap_per_family(list(reversed(rows)), 10)  # a fixed choice, whatever the order
    variants = H.training_variants(rows[0], ["clean", "mp3", "aac", "opus"], 2)
    assert variants[0] == "clean" and len(variants) == 2


@pytest.mark.parametrize("hidden", [0, 8])
def test_head_fit_separates_separable_features(hidden: int) -> None:
    from dfdetect.metrics import auc
    from dfdetect.models.whisper_speech import head_logits

    rng = np.random.default_rng(0)
    y = np.repeat([0.0, 1.0], 50)
    x = rng.normal(size=(100, 768)).astype(np.float32) + 2 * y[:, None] * (np.arange(768) < 5)
    head = H.fit_head(H.WindowTable(x, y, np.ones(100)), c=1.0, hidden=hidden, epochs=200)
    assert auc(y, head_logits(x, head)) > 0.99
    assert ("w1" in head) == bool(hidden)


def _wav(path: Path, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.random.default_rng(seed).normal(0, 0.1, 8000) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return path.name


def test_fit_writes_a_scannable_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit end to end on a tiny labels CSV, with stand-in features (the encoder is tested apart)."""
    from dfdetect.checkpoint import Checkpoint
    from dfdetect.train.run import load_experiment, train

    lines = ["path,label,generator,speaker"]
    for i in range(24):
        label = i % 2
        name, kind = _wav(tmp_path / f"{i}.wav", i), ("fake", "tts") if label else ("real", "real")
        lines.append(f"{name},{kind[0]},{kind[1]},s{i // 2}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")

    overrides = [f"data.labels={tmp_path / 'labels.csv'}", "data.manifests=[]", "fit.c_grid=[0.1, 1.0]",
                 "data.val=0.25", "data.test=0.25", f"data.feature_cache={tmp_path / 'cache'}"]  # fmt: skip
    cfg = load_experiment(ROOT / "configs/experiments/speech_whisper.yaml", overrides)
    dim = 2 * ENCODER_WIDTH[cfg.model.encoder]  # mean and std of the configured encoder's states

    def features(cache, jobs, progress=True):  # noqa: ANN001, ANN202
        out = {}
        for path, variant in jobs:
            i = int(Path(path).stem)
            out[(path, variant)] = np.random.default_rng(i).normal(size=(2, dim)).astype(np.float32) + (i % 2)
        return out

    monkeypatch.setattr("dfdetect.data.speech_features.extract_features", features)
    run = train(cfg, run_dir=tmp_path / "run")
    ckpt = Checkpoint.load(run / "checkpoints" / "best.pt")
    assert ckpt.name == "whisper-speech" and ckpt.metrics["val"]["clean"] == 1.0
    assert 0.0 <= ckpt.real_voice_ceiling < 1.0 and ckpt.input_codec is None
    assert ckpt.build_model().state_dict()["w"].shape == (dim,)
    assert (run / "metrics.json").is_file() and (run / "config.yaml").is_file()


def test_averaged_heads_are_one_exact_linear_head() -> None:
    from dfdetect.models.whisper_speech import head_logits

    rng = np.random.default_rng(0)
    heads = [
        {
            "mean": rng.normal(size=6),
            "std": rng.uniform(0.5, 2, 6),
            "w": rng.normal(size=6),
            "b": rng.normal(),
        }
        for _ in range(2)
    ]
    x = rng.normal(size=(5, 6)).astype(np.float32)
    both = H.average_heads(heads, [0.3, 0.7])
    expected = 0.3 * head_logits(x, heads[0]) + 0.7 * head_logits(x, heads[1])
    np.testing.assert_allclose(head_logits(x, both), expected, rtol=1e-5, atol=1e-5)


def _pool_rows(split: str, n: int) -> list[ManifestRow]:
    """Half labelled-folder files (speakers), half catalogue files (generator families, real sources)."""
    rows = []
    for i in range(n):
        label = i % 2
        if i < n // 2:
            rows.append(ManifestRow(f"/x/{split}/folder/{i}.wav", label, "folder", "tts" if label else "real",
                                    split, f"speaker{i // 4}"))  # fmt: skip
        else:
            family = f"gen{i % 6}" if label else "real"
            rows.append(ManifestRow(f"/x/{split}/cat/{i}.wav", label, "catalog", family, split, f"g{i}",
                                    family=family, source="" if label else f"repo{i % 6}"))  # fmt: skip
    return rows


def test_pooled_heads_are_chosen_on_val_and_the_ceiling_is_fitted_out_of_fold() -> None:
    """With ``fit.mix_grid`` a head per pool (labelled folder, catalogue) is averaged; each pool carries its
    own cue, so only the average separates both. The ceiling reads every training real out of fold."""
    from dfdetect.constants import VERDICT_BAND

    overrides = ["fit.mix_grid=[0.0, 0.5]", "fit.c_grid=[1.0]", "data.variants=[clean]",
                 "fit.val_variants=[clean]", "data.per_family=100"]  # fmt: skip
    cfg = load_speech_config(ROOT / "configs/experiments/speech_whisper.yaml", overrides)
    splits = {"train": _pool_rows("train", 160), "val": _pool_rows("val", 80)}
    rng = np.random.default_rng(1)
    feats = {}
    for row in splits["train"] + splits["val"]:
        cue = 0 if row.dataset == "folder" else 1  # the pools' real/fake cues lie in different dimensions
        x = rng.normal(size=(2, 8)).astype(np.float32)
        x[:, cue] += 1.5 * row.label
        feats[(row.path, "clean")] = x
    head, record, records = H.select_head(cfg, splits, feats)
    assert [r["mix"] for r in records] == [0.0, 0.5] and record["mix"] == 0.5
    assert record["val_auc"]["mean"] > records[0]["val_auc"]["mean"] + 0.1  # the catalogue head alone
    temperature, info = H.real_voice_ceiling(cfg, splits, feats, head, record)
    n_real = sum(r.label == 0 for r in splits["train"] + splits["val"])
    assert info["n_real"] == n_real and info["logit"] > 0 and info["p0"] == VERDICT_BAND[1]
    assert temperature > 0 and info["sources"] == 1 + 3  # the folder (its dataset) + 3 repositories
    assert set(info["new_source_above"]) == {"per_source", "per_file"}
