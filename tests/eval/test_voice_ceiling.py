"""`dfdetect calibrate-voice`: a speech model's real-voice ceiling, measured on held-out real voices as
scans score them, and written into its checkpoint on request."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dfdetect.checkpoint import Checkpoint
from dfdetect.cli import main
from dfdetect.infer.lookup import WEIGHTS_DIR
from tests.conftest import ROOT, media

SPEECH = str(ROOT / "configs" / "experiments" / "speech.yaml")


def _labels(tmp_path: Path) -> Path:
    rows = ["path,label,speaker,split"]
    rows += [f"{media(f'videoretalking_audio_{i}.wav')},real,s{i},test" for i in (1, 2)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def test_the_ceiling_is_the_quantile_of_held_out_real_voices_and_is_written_on_request(tmp_path, capsys):
    model = tmp_path / "judge.pt"
    shutil.copy(WEIGHTS_DIR / "aasist-l-ft.pt", model)
    before = Checkpoint.load(model).real_voice_ceiling
    out = tmp_path / "ceiling.json"
    args = ["calibrate-voice", SPEECH, f"data.labels={_labels(tmp_path)}", "--model", str(model)]
    assert main([*args, "--split", "test", "--seconds", "2", "--quantile", "1.0", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert len(got["scores"]) == 2 and got["n_real"] == 2 and got["splits"] == ["test"]
    assert got["p0"] == max(got["scores"].values())  # quantile 1.0: the highest real voice
    assert Checkpoint.load(model).real_voice_ceiling == before  # not written without --write
    assert main([*args, "--split", "test", "--seconds", "2", "--write"]) == 0
    assert "p0 written into" in capsys.readouterr().out
    written = Checkpoint.load(model)
    command = written.calibration["real_voice_ceiling_info"]["command"]
    assert command.startswith("dfdetect calibrate-voice") and "--write" in command  # the whole command line
    assert 0 < written.real_voice_ceiling <= got["p0"] + 1e-4
    assert main([*args, "--split", "val"]) == 2  # no real voice held out there: a clear error
    assert "no real voices" in capsys.readouterr().err
    assert main(args) == 2  # by default val only: a ceiling is never fitted on test unless asked
    assert "split(s) val" in capsys.readouterr().err


def test_anchoring_puts_the_ceiling_on_the_band_edge_and_keeps_the_ranking() -> None:
    import numpy as np
    import pytest

    from dfdetect.constants import VERDICT_BAND
    from dfdetect.eval.voice_ceiling import VoiceCeiling, anchored

    scores = {"a": 0.05, "b": 0.4, "c": 0.83, "d": 0.95}
    got = anchored(VoiceCeiling(0.83, {"temperature": 2.0}, scores))
    assert got.p0 == VERDICT_BAND[1] and got.info["temperature_before"] == 2.0
    t = got.info["temperature"]  # T' = T * logit(p0) / logit(0.65)
    assert t == pytest.approx(2.0 * np.log(0.83 / 0.17) / np.log(0.65 / 0.35))
    assert got.scores["c"] == pytest.approx(VERDICT_BAND[1])  # the ceiling voice now sits on the edge
    assert sorted(got.scores, key=got.scores.get) == sorted(scores, key=scores.get)  # same ranking
    with pytest.raises(ValueError, match="cannot anchor"):
        anchored(VoiceCeiling(0.4, {"temperature": 1.0}, scores))  # below 0.5: no temperature moves it up


def test_anchor_refuses_a_ceiling_under_one_half(tmp_path, capsys) -> None:
    model = tmp_path / "judge.pt"
    shutil.copy(WEIGHTS_DIR / "aasist-l-ft.pt", model)
    args = ["calibrate-voice", SPEECH, f"data.labels={_labels(tmp_path)}", "--model", str(model)]
    assert main([*args, "--split", "test", "--seconds", "2", "--anchor", "--write"]) == 2  # real voices ~0.3
    assert "cannot anchor" in capsys.readouterr().err
    assert Checkpoint.load(model).temperature == 1.0  # nothing written


def test_every_real_source_weighs_the_same_in_the_ceiling() -> None:
    import numpy as np

    from dfdetect.metrics import source_quantile

    values = np.array([0.1] * 98 + [0.9, 0.95])  # one large quiet source, one small source that scores high
    sources = ["big"] * 98 + ["small"] * 2
    assert np.quantile(values, 0.95) == 0.1  # per file, the large source sets the ceiling
    assert source_quantile(values, sources, 0.95) == 0.95  # per source, half the weight is the small one's
    assert source_quantile(values, sources, 0.5) == 0.1 and source_quantile(values, sources, 1.0) == 0.95
    assert source_quantile(values, ["s"] * 100, 0.95) == np.sort(values)[94]  # one source: per file


def test_leaving_each_source_out_says_what_the_ceiling_promises_a_new_source() -> None:
    import numpy as np

    from dfdetect.metrics import held_out_exceedance

    # three quiet sources and one loud one: with the loud one held out, the others' ceiling is low
    values = np.concatenate([np.linspace(0.0, 0.5, 20)] * 3 + [np.linspace(0.6, 0.9, 20)])
    sources = ["a"] * 20 + ["b"] * 20 + ["c"] * 20 + ["loud"] * 20
    got = held_out_exceedance(values, sources, 0.95)
    assert got["per_source"] == 0.25  # the loud source: all above the quiet ones' ceiling; they: none above
    assert got["per_file"] == 20 / 80
    assert held_out_exceedance(values, ["one"] * 80, 0.95) == {}  # nothing to hold out


def test_a_ceiling_is_refused_on_the_voices_the_model_trained_on(tmp_path, capsys):
    """A judge trained on a labels file's train split cannot have its ceiling fitted on that split."""
    labels = _labels(tmp_path)
    ckpt = Checkpoint.load(WEIGHTS_DIR / "aasist-l-ft.pt")
    state = ckpt.to_state()
    state["train_config"] = {**(state.get("train_config") or {}), "data": {"labels": str(labels)}}
    model = Checkpoint.from_state(state).save(tmp_path / "trained_here.pt")
    args = ["calibrate-voice", SPEECH, f"data.labels={labels}", "--model", str(model), "--seconds", "2"]
    assert main([*args, "--split", "train", "--split", "test"]) == 2
    assert "not held out" in capsys.readouterr().err
    assert main([*args, "--split", "test"]) == 0  # its held-out split is fine
