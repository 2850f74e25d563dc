"""`dfdetect train` argument handling (the training itself is covered by test_demo/test_loop)."""

from __future__ import annotations

import yaml

from dfdetect.cli import main


def _experiment(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"name": "e", "data": {"sources": [{"prepared": str(tmp_path)}]}}))
    return path


def test_print_config_applies_overrides(tmp_path, capsys):
    assert main(["train", "--config", str(_experiment(tmp_path)), "train.epochs=3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 3 and printed["name"] == "e"


def test_errors_name_the_problem(tmp_path, capsys):
    exp = str(_experiment(tmp_path))
    assert main(["train", "--config", exp, "optim.lr=fast"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main(["train", "--config", exp, "--run-dir", str(tmp_path / "r"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "--config", exp, "--run-dir", str(tmp_path / "r")]) == 1
    assert "manifest not found" in capsys.readouterr().err
