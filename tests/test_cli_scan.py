"""`dfdetect scan`: output formats, documented exit codes, the HTML report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dfdetect.cli import main
from tests.conftest import media
from tests.infer.conftest import make_checkpoint

CLIP = "real/liveportrait_d0.mp4"  # 3 s, one face, no audio stream: quick to scan


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_checkpoint(tmp_path_factory.mktemp("cli") / "tiny.pt"))


def _scan(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["scan", "--no-progress", "--device", "cpu", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_is_instant_and_documents_exit_codes() -> None:
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dfdetect", "scan", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "exit codes:" in res.stdout and "3  nothing was judged fake" in res.stdout
    imported = res.stderr
    assert " torch" not in imported and " av" not in imported, "--help must not import torch or PyAV"


def test_json_and_table(ckpt: str, capsys) -> None:
    code, out, _ = _scan(capsys, str(media(CLIP)), "--model", ckpt, "--json")
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 1
    assert data[0]["status"] == "no_audio" and 0 <= data[0]["p_fake"] <= 1
    assert code == (1 if data[0]["verdict"] == "fake" else 0)
    code, out, _ = _scan(capsys, str(media(CLIP)), "--model", ckpt, "--threshold-band", "1", "1")
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["path", "kind", "status", "verdict", "p_fake"]
    assert "no_audio" in lines[1] and "real" in lines[1]
    assert code == 0, "with the band at 1 every scored video is real"


def test_jsonl_exit_codes_and_report(ckpt: str, capsys, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    report = tmp_path / "out" / "report.html"
    args = [str(media(CLIP)), str(bad), "--model", ckpt, "--jsonl", "--report", str(report)]
    code, out, err = _scan(capsys, *args, "--threshold-band", "1", "1")
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["status"] for r in rows] == ["no_audio", "unreadable"]
    assert rows[1]["message"]
    assert code == 3, "nothing fake, one file unreadable"
    text = report.read_text(encoding="utf-8")
    for section in ("Timeline", "Face tracks", "broken.mp4", "unreadable", "2 videos"):
        assert section in text, section
    assert "report written" in err
    code, _, _ = _scan(capsys, *args, "--threshold-band", "0", "0")
    assert code == 1, "a fake verdict wins over unreadable files"


def test_usage_errors(ckpt: str, capsys, tmp_path: Path) -> None:
    code, _, err = _scan(capsys, str(tmp_path / "nothing-here.mp4"), "--model", ckpt)
    assert code == 2 and "no input found" in err
    code, _, err = _scan(capsys, str(media(CLIP)), "--model", "no-such-model")
    assert code == 2 and "available models" in err
    code, _, err = _scan(capsys, str(media(CLIP)), "--model", ckpt, "--threshold-band", "0.8", "0.2")
    assert code == 2 and "threshold" in err


def test_no_speech_flag(ckpt: str, capsys, tmp_path: Path) -> None:
    from dfdetect.checkpoint import attach_speech

    named = attach_speech(ckpt, "aasist-l", p0=0.9, dst=tmp_path / "named.pt")
    code, out, _ = _scan(capsys, str(media(CLIP)), "--model", str(named), "--no-speech", "--json")
    assert code in (0, 1) and json.loads(out)[0]["fusion"] == {}
    code, _, err = _scan(capsys, str(media(CLIP)), "--model", ckpt, "--speech", "no-such-voice-model")
    assert code == 2 and "no-such-voice-model" in err
