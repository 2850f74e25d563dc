"""Experiment configs: includes, dotted overrides, errors that name the key, resolved dump."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dfdetect.config import ConfigError, ExperimentConfig, dump_config, load_config

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def experiment(tmp_path) -> Path:
    _write(tmp_path / "models/tiny.yaml", {"name": "av", "backbone": "resnet18", "dropout": 0.2})
    _write(tmp_path / "data/d.yaml", {"sources": [{"prepared": "runs/d"}], "batch_size": 4})
    _write(tmp_path / "base.yaml", {"train": {"seed": 3, "epochs": 7}, "optim": {"lr": 0.01}})
    return _write(
        tmp_path / "experiments/e.yaml",
        {
            "defaults": ["../base.yaml", {"model": "../models/tiny.yaml"}, {"data": "../data/d.yaml"}],
            "name": "e",
            "train": {"epochs": 2},
            "data": {"batch_size": 16},
        },
    )


def test_includes_merge_and_own_keys_win(experiment):
    cfg = load_config(experiment)
    assert cfg.model.name == "av" and cfg.model.kwargs() == {"backbone": "resnet18", "dropout": 0.2}
    assert cfg.data.sources[0].manifest_path() == Path("runs/d/manifest.csv")
    assert cfg.data.batch_size == 16  # the experiment wins over the data file
    assert (cfg.train.epochs, cfg.train.seed, cfg.optim.lr) == (2, 3, 0.01)


def test_overrides_are_yaml_typed_and_reach_model_kwargs_and_lists(experiment):
    cfg = load_config(
        experiment,
        ["train.epochs=5", "optim.lr=1e-4", "model.backbone=resnet50", "data.pseudofake={only_real: true}",
         "data.sources.0.limit=3", "train.patience=null", "optim.amp=false"],
    )  # fmt: skip
    assert cfg.train.epochs == 5 and cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.model.kwargs()["backbone"] == "resnet50"
    assert cfg.data.pseudofake is not None and cfg.data.pseudofake.only_real
    assert cfg.data.sources[0].limit == 3 and cfg.train.patience is None and cfg.optim.amp is False


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.epoch=3", "train.epoch"),  # typo: unknown key
        ("optim.lr=fast", "optim.lr"),
        ("optim.schedule=linear", "optim.schedule"),
        ("data.preprocess.size=8", "data.preprocess.size"),
        ("train.stages=[{name: v, trainable: [video], head: nose}]", "train.stages.0.head"),
    ],
)
def test_validation_errors_name_the_key(experiment, override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(experiment, [override])


def test_bad_files_and_overrides(tmp_path, experiment):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(experiment, ["train.epochs"])
    with pytest.raises(ConfigError, match="index"):
        load_config(experiment, ["data.sources.4.limit=1"])
    _write(tmp_path / "a.yaml", {"defaults": ["b.yaml"]})
    _write(tmp_path / "b.yaml", {"defaults": ["a.yaml"]})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="sources.0"):
        load_config(experiment, ["data.sources=[{cache: only/cache}]"])


def test_dump_round_trip(tmp_path, experiment):
    cfg = load_config(experiment, ["train.stages=[{name: video, trainable: [video], epochs: 2}]"])
    text = dump_config(cfg)
    back = load_config(_write(tmp_path / "dumped.yaml", yaml.safe_load(text)))
    assert back == cfg and dump_config(back) == text
    assert ExperimentConfig.model_validate(yaml.safe_load(text)) == cfg


EXPERIMENTS = sorted((ROOT / "configs" / "experiments").glob("*.yaml"))
# Speech experiments (data.kind: speech): `dfdetect train` reads them through train.speech.
SPEECH_EXPERIMENTS = ("speech.yaml", "speech_whisper.yaml")
# Run by `dfdetect distill --config` (a distill: section beside the usual ones).
DISTILL_EXPERIMENTS = ("distill.yaml",)


@pytest.mark.parametrize(
    "path",
    [p for p in EXPERIMENTS if p.name not in SPEECH_EXPERIMENTS + DISTILL_EXPERIMENTS],
    ids=lambda p: p.name,
)
def test_shipped_experiments_load(path):
    from dfdetect.train.run import check_model_preprocess

    cfg = load_config(path)
    assert cfg.model.name and cfg.data.sources, path
    check_model_preprocess(cfg)
    assert cfg.data.preprocess.num_segments >= 1


@pytest.mark.parametrize("name", DISTILL_EXPERIMENTS)
def test_shipped_distill_experiments_load_with_distill_only(name):
    from dfdetect.train.distill import distill_config

    path = ROOT / "configs" / "experiments" / name
    cfg, dcfg = distill_config(config=path)
    assert cfg.model.name and cfg.data.sources and dcfg.teacher, path
    with pytest.raises(ConfigError, match="dfdetect distill --config"):  # not for `dfdetect train`
        load_config(path)


@pytest.mark.parametrize("name", SPEECH_EXPERIMENTS)
def test_shipped_speech_experiments_load_with_their_trainer_only(name):
    from dfdetect.train.speech import load_speech_config

    path = ROOT / "configs" / "experiments" / name
    cfg = load_speech_config(path)
    assert cfg.model.name and (cfg.data.labels or cfg.data.manifests), path
    with pytest.raises(ConfigError, match="a speech experiment"):  # not a video experiment
        load_config(path)
