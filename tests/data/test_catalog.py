"""`dfdetect prepare catalog` on a tiny git repository made here from real clips of ../shared/media.

The repository holds two real clips, a side-by-side composite of them made with PyAV (left = clip A,
right = clip B, with A's audio), and, in a second commit, another encode of clip A at the same path.
"""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from dfdetect.config import PrepareConfig
from dfdetect.data.catalog import Repositories, git_blob_id, materialise, prepare_catalog
from dfdetect.data.catalog_crop import Crop, CropError, parse_crop
from dfdetect.data.manifest import read_manifest
from dfdetect.data.sources.catalog import catalog_entries
from dfdetect.data.sources.catalog_split import SplitPlan, load_plan, normalise_family
from dfdetect.data.splits import check_no_leak
from tests.conftest import media

CLIP_A = "real/pcavs_Audio_Source_00015.mp4"  # 224 x 224, 25 fps, speech
CLIP_B = "real/pcavs_Input_00098.mp4"
VOICE = "videoretalking_audio_1.wav"
SECONDS = 1.0  # what the test clips keep: fast tests
HEADER = "repo,commit,path,blob,bytes,label,generator,crop,note,licence"
CONFIG = PrepareConfig(fps=5.0, max_duration=SECONDS, detect_every=2, detector="yunet")


def _frames(rel: str, seconds: float = SECONDS) -> list[np.ndarray]:
    with av.open(str(media(rel))) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0) if f.time < seconds]


def _write_video(path: Path, frames: list[np.ndarray], audio_from: str | None = None) -> None:
    """H.264 video of ``frames`` at 25 fps (near lossless), with the first second of a clip's audio."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "4", "preset": "ultrafast"}
        if audio_from:
            with av.open(str(media(audio_from))) as inp:
                aout = out.add_stream_from_template(inp.streams.audio[0])
                for packet in inp.demux(inp.streams.audio[0]):
                    if packet.dts is not None and packet.pts * packet.time_base < SECONDS:
                        packet.stream = aout
                        out.mux(packet)
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))


def _git(repo: Path, *args: str) -> str:
    who = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env = {**os.environ, **who, "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=env, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A git root with ``test/clips`` (two commits) and a catalogue naming its files, good and bad."""
    root = tmp_path_factory.mktemp("gitroot")
    work = root / "test+clips" / "repo"
    (work / "clips").mkdir(parents=True)
    a, b = _frames(CLIP_A), _frames(CLIP_B)
    n = min(len(a), len(b))
    _write_video(work / "clips/a.mp4", a, CLIP_A)
    _write_video(work / "clips/b.mp4", b)
    _write_video(
        work / "clips/side_by_side.mp4",
        [np.hstack([x, y]) for x, y in zip(a[:n], b[:n], strict=True)],
        CLIP_A,
    )
    (work / "clips/voice.wav").write_bytes(media(VOICE).read_bytes())
    Image.fromarray(np.hstack([a[0], b[0]])).save(work / "clips/still.png")
    _git(work, "init", "-q")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "clips")
    first = _git(work, "rev-parse", "HEAD")
    _write_video(work / "clips/a.mp4", a[: n // 2], CLIP_A)  # another encode of clip A, same path
    _git(work, "commit", "-qam", "re-encode")
    second = _git(work, "rev-parse", "HEAD")
    blob = {p: _git(work, "rev-parse", f"{first}:clips/{p}") for p in ("a.mp4", "b.mp4", "side_by_side.mp4")}
    blob["a2.mp4"] = _git(work, "rev-parse", f"{second}:clips/a.mp4")
    blob["voice.wav"] = _git(work, "rev-parse", f"{first}:clips/voice.wav")
    blob["still.png"] = _git(work, "rev-parse", f"{first}:clips/still.png")
    sbs = f"test/clips,{first},clips/side_by_side.mp4,{blob['side_by_side.mp4']},1"
    rows = [
        f"test/clips,{first},clips/a.mp4,{blob['a.mp4']},1,real,,,,CC0",
        f"test/clips,{second},clips/a.mp4,{blob['a2.mp4']},1,real,,,another encode,CC0",
        f"{sbs},real,,left-half,original,CC0",
        f"{sbs},fake,SwapNet (VC),right-half,,CC0",
        f"test/clips,{first},clips/b.mp4,{blob['b.mp4']},1,fake,SwapNet-page:v2,,,CC0",
        f"test/clips,{first},clips/b.mp4,{blob['a.mp4']},1,fake,Wrong,left-half,A's blob at B's path,CC0",
        f"test/clips,{first},clips/c.mp4,{'c' * 40},1,fake,Missing,,not in the repository,CC0",
        f"test/absent,{first},x.mp4,{'d' * 40},1,fake,Absent,,repository not fetched,CC0",
        f"test/clips,{first},clips/a.mp4,{blob['a.mp4']},1,real,,,listed twice,CC0",
    ]
    catalog = root / "catalog" / "base.csv"
    catalog.parent.mkdir()
    catalog.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return {"root": root, "work": work, "catalog": catalog, "blob": blob, "first": first}


@pytest.fixture(scope="module")
def built(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("prepared")
    summary, catalog = prepare_catalog(
        corpus["catalog"], out, corpus["root"], config=CONFIG, workers=1, progress=False
    )
    return {"out": out, "summary": summary, "catalog": catalog, "rows": read_manifest(out / "manifest.csv")}


def _row(built: dict, blob: str, slug: str = "") -> object:
    name = f"{blob}.{slug}.mp4" if slug else f"{blob}.mp4"
    return next(r for r in built["rows"] if Path(r.path).name == name)


# ---------------------------------------------------------------- extraction and verification


def test_blobs_are_extracted_and_verified_by_blob_id(corpus: dict, built: dict) -> None:
    media_dir = built["out"] / "media"
    for name in ("a.mp4", "a2.mp4", "b.mp4", "side_by_side.mp4"):
        path = media_dir / f"{corpus['blob'][name]}.mp4"
        assert path.is_file()
        assert git_blob_id(path) == corpus["blob"][name]  # what was written hashes to the catalogue's id
    # git_blob_id is git's own hash
    assert git_blob_id(media(CLIP_A)) == _git(corpus["work"], "hash-object", str(media(CLIP_A)))
    assert not list(media_dir.glob(".*tmp*"))


def test_bad_rows_fail_with_what_to_do_and_the_others_go_on(corpus: dict, built: dict) -> None:
    failed = {status: message for status, message in built["catalog"].failed.values()}
    assert set(failed) == {"wrong_blob", "missing_blob", "missing_repo"}
    assert corpus["blob"]["b.mp4"] in failed["wrong_blob"] and "base.csv:7" in failed["wrong_blob"]
    assert "test/clips" in failed["missing_blob"] and "--clone" in failed["missing_blob"]
    assert "fetch github:test/absent" in failed["missing_repo"]
    # every good sample was prepared into the cache; the failures are in the summary as unreadable
    summary = built["summary"]
    assert summary.done == 5 and len(summary.failed) == 3
    assert all(f.status == "unreadable" and f.message.startswith("[") for f in summary.failed)
    index = list(csv.DictReader((built["out"] / "catalog_index.csv").open()))
    assert [r["status"] for r in index].count("ok") == 5 and len(index) == 9


def test_clone_fetches_a_repository_the_root_lacks(corpus: dict, tmp_path: Path) -> None:
    _git(corpus["work"], "config", "uploadpack.allowFilter", "true")
    url = "file://" + str(corpus["root"]) + "/{repo}"  # stands in for https://github.com/{repo}.git
    repos = Repositories(tmp_path / "root", clone=True, url=url.replace("{repo}", "test+clips/repo"))
    planned = [e for e in catalog_entries(corpus["catalog"], tmp_path / "media") if e.path == "clips/b.mp4"]
    summary = materialise(planned[:1], repos, tmp_path / "media", progress=False)
    assert summary.extracted == 1 and not summary.failed
    assert (tmp_path / "root" / "test+clips" / "clone" / ".git").is_dir()
    assert git_blob_id(tmp_path / "media" / f"{corpus['blob']['b.mp4']}.mp4") == corpus["blob"]["b.mp4"]


# ---------------------------------------------------------------- crops


def test_panels_are_cut_with_their_audio(corpus: dict, built: dict) -> None:
    blob = corpus["blob"]["side_by_side.mp4"]
    left, right = _row(built, blob, "c1of2"), _row(built, blob, "c2of2")
    assert (left.label, right.label) == (0, 1)
    for row, source in ((left, CLIP_A), (right, CLIP_B)):
        with av.open(row.path) as c:
            frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
            assert len(c.streams.audio) == 1  # the composite's audio travels with each panel
        assert frame.shape == (224, 224, 3)
        want = _frames(source, 0.05)[0]
        assert np.abs(frame.astype(int) - want).mean() < 6  # the panel is that clip, not the other one
    assert np.abs(_frames(CLIP_A, 0.05)[0].astype(int) - _frames(CLIP_B, 0.05)[0]).mean() > 20


def test_crop_formats() -> None:
    assert parse_crop("") == Crop() and parse_crop("left-half") == parse_crop("panel1/2")
    assert parse_crop("panel2/3").rect(300, 100) == (100, 0, 200, 100)
    assert parse_crop("right-half").rect(449, 225) == (224, 0, 448, 224)  # even sides for H.264
    assert parse_crop("grid r2c3", (2, 4)).rect(800, 400) == (400, 200, 600, 400)
    assert parse_crop("grid r1c4", (2, 4)).slug == "r1c4of2x4"
    for bad, shape in (("panel3/2", None), ("grid r1c1", None), ("grid r3c1", (2, 4)), ("top", None)):
        with pytest.raises(CropError):
            parse_crop(bad, shape)


# ---------------------------------------------------------------- groups and splits


def test_duplicates_share_a_group(corpus: dict, built: dict) -> None:
    blob = corpus["blob"]
    # both sides of the composite: one group
    assert (
        _row(built, blob["side_by_side.mp4"], "c1of2").group
        == _row(built, blob["side_by_side.mp4"], "c2of2").group
    )
    # the same clip in another encode (same path, another commit): one group
    assert _row(built, blob["a.mp4"]).group == _row(built, blob["a2.mp4"]).group
    assert _row(built, blob["a.mp4"]).group != _row(built, blob["side_by_side.mp4"], "c1of2").group
    # a blob listed twice is one sample
    assert sum(Path(r.path).name == f"{blob['a.mp4']}.mp4" for r in built["rows"]) == 1
    left_out = [e for e in catalog_entries(corpus["catalog"], built["out"] / "media") if e.excluded]
    assert [e.where.rsplit(":", 1)[1] for e in left_out] == ["10"] and left_out[0].excluded.startswith(
        "duplicate:"
    )


def test_manifest_columns(corpus: dict, built: dict) -> None:
    fake = _row(built, corpus["blob"]["b.mp4"])
    assert (fake.dataset, fake.method, fake.family, fake.source, fake.licence) == (
        "catalog", "SwapNet-page:v2", "swapnet", "test/clips", "CC0")  # fmt: skip
    real = _row(built, corpus["blob"]["a.mp4"])
    assert (real.method, real.family, real.source) == ("real", "real", "test/clips")


def test_families_normalise() -> None:
    assert normalise_family("AdaSpeech-page:cln") == normalise_family("AdaSpeech") == "adaspeech"
    assert (
        normalise_family("autovc (VC)") == "autovc"
        and normalise_family("AlmostUnsupTTS:200") == "almostunsuptts"
    )
    assert normalise_family("HiFi-GAN vocoded GT (OverFlow page)") == "hifiganvocodedgt"


def test_split_by_family_and_real_source(corpus: dict, tmp_path: Path) -> None:
    """Listed units go where listed; the composite's real side follows its fake family; nothing crosses."""
    plan_file = tmp_path / "splits.yaml"
    plan_file.write_text("aliases:\n  swapnet: ['^SwapNet']\nvideo:\n  test:\n    families: [swapnet]\n")
    planned = catalog_entries(corpus["catalog"], tmp_path / "media", plan_file)
    rows = [e.row for e in planned if e.row is not None]
    check_no_leak(rows)
    by_unit: dict[str, set[str]] = {}
    for r in rows:
        by_unit.setdefault(r.family if r.label else f"real:{r.source}", set()).add(r.split)
    assert all(len(s) == 1 for s in by_unit.values()), by_unit
    assert by_unit["swapnet"] == {"test"} and by_unit["real:test/clips"] == {"test"}  # followed its fakes
    # the hash rule is stable and fills the shares roughly
    plan = SplitPlan()
    units = [f"family{i}" for i in range(2000)]
    first = [plan.split_of("video", u) for u in units]
    assert first == [SplitPlan().split_of("video", u) for u in units]
    assert abs(first.count("test") / 2000 - 0.2) < 0.03 and abs(first.count("val") / 2000 - 0.1) < 0.03


def test_the_project_split_file_is_valid() -> None:
    plan = load_plan(Path(__file__).parents[2] / "corpus" / "splits.yaml")
    assert plan.listed["video"]["deepfacelivedfm"] == "test"
    assert plan.family("ESPnet tacotron2.v1 + GL") == plan.family("ESPnet fastspeech.v2 + GL") == "espnet"


# ---------------------------------------------------------------- resume


def test_a_second_run_does_nothing_and_partial_files_are_never_used(corpus: dict, built: dict) -> None:
    out = built["out"]
    media_dir = out / "media"
    cut = Path(_row(built, corpus["blob"]["side_by_side.mp4"], "c1of2").path)
    before = cut.stat().st_mtime_ns
    # what a killed run leaves: a half-written temporary file next to the samples, and a sample that was
    # never renamed into place
    partial = media_dir / f".{cut.name}.k1ll3d.tmp.mp4"
    partial.write_bytes(b"\x00" * 100)
    full = media_dir / f"{corpus['blob']['b.mp4']}.mp4"
    full.write_bytes(full.read_bytes()[:1000])  # a truncated copy is refused by its blob id and rewritten
    summary, catalog = prepare_catalog(
        corpus["catalog"], out, corpus["root"], config=CONFIG, workers=1, progress=False
    )
    assert not partial.exists() and cut.stat().st_mtime_ns == before
    assert git_blob_id(full) == corpus["blob"]["b.mp4"]
    assert (catalog.extracted, catalog.cut) == (1, 0)
    assert (summary.skipped, summary.done) == (5, 0)  # the same bytes again: its cache entry still holds
    summary, catalog = prepare_catalog(
        corpus["catalog"], out, corpus["root"], config=CONFIG, workers=1, progress=False
    )
    assert (catalog.extracted, catalog.cut, summary.done, summary.skipped) == (0, 0, 0, 5)


def test_command_line(corpus: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dfdetect.cli import main

    out = tmp_path / "out"
    base = ["prepare", "catalog", str(corpus["catalog"].parent), "--out", str(out)]
    assert main(base) == 2  # no --git-root
    assert "--git-root" in capsys.readouterr().err
    assert main(["prepare", "folder", "a", "b", "--out", str(out)]) == 2  # only catalog takes several roots
    flags = ["--git-root", str(corpus["root"]), "--workers", "1", "--fps", "5", "--max-duration", "1"]
    assert main([*base, *flags, "--detector", "yunet", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "failed 3 (missing_blob: 1, missing_repo: 1, wrong_blob: 1)" in printed
    assert len(read_manifest(out / "manifest.csv")) == 8 and (out / "catalog_index.csv").is_file()


def test_speech_catalogue(corpus: dict, tmp_path: Path) -> None:
    """Audio rows become audio-only entries grouped by speaker; a second run skips them as they are."""
    catalog = tmp_path / "speech.csv"
    head = "repo,commit,path,blob,bytes,label,generator,speaker,language,licence"
    blob = corpus["blob"]["voice.wav"]
    row = f"test/clips,{corpus['first']},clips/voice.wav,{blob},1,real,ground truth,Spk,en,CC0"
    catalog.write_text(f"{head}\n{row}\n")
    out = tmp_path / "out"
    for run in range(2):
        summary, _ = prepare_catalog(catalog, out, corpus["root"], config=CONFIG, workers=1, progress=False)
        assert summary.counts == {"ok": 1} and summary.skipped == run
    (row,) = read_manifest(out / "manifest.csv")
    assert row.path.endswith(".wav") and row.label == 0 and row.source == "test/clips"


def test_still_image_panels(corpus: dict, tmp_path: Path) -> None:
    """A composite still is cut into PNG panels; they are one-frame clips, ok without audio on every run."""
    catalog = tmp_path / "stills.csv"
    blob = corpus["blob"]["still.png"]
    rows = [f"test/clips,{corpus['first']},clips/still.png,{blob},1,{label},{gen},{crop},,CC0"
            for label, gen, crop in (("real", "", "panel1/2"), ("fake", "FLUX", "panel2/2"))]  # fmt: skip
    catalog.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    for run in range(2):
        summary, _ = prepare_catalog(catalog, out, corpus["root"], config=CONFIG, workers=1, progress=False)
        assert summary.counts == {"ok": 2} and summary.skipped == 2 * run
    left = _frames(CLIP_A, 0.05)[0].astype(int)
    (real,) = [r for r in read_manifest(out / "manifest.csv") if r.label == 0]
    assert real.path.endswith(".c1of2.png") and np.abs(np.asarray(Image.open(real.path)) - left).mean() < 1
