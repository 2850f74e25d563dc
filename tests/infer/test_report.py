"""The HTML scan report: sections, escaping, images inline, many videos."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dfdetect.infer.explain import encode_image
from dfdetect.infer.report import render_report, timeline_plot, write_report
from dfdetect.types import Prediction, Status, TrackScore, Verdict


def _scored(tmp_path: Path) -> Prediction:
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    frames = [
        {
            "track_id": 0,
            "time": 1.2,
            "score": 0.9,
            "crop": encode_image(crop, None, "c"),
            "overlay": encode_image(crop, tmp_path, "o"),
        }  # one inline, one file: both end up inline
    ]
    curves = {
        "fake_probability": {"t": [0.0, 1.0, 2.0], "value": [0.2, 0.9, 0.4]},
        "attention": {"t": [0.0, 1.0, 2.0], "value": [0.1, 0.5, 0.2]},
        "sync": {"t": [0.8, 1.6], "value": [0.7, 0.2]},
    }
    return Prediction(
        path="/videos/a<b>.mp4",
        status=Status.OK,
        p_fake=0.91,
        verdict=Verdict.FAKE,
        message="1 face track(s) scored",
        modality={"visual": 0.8, "sync": 0.7},
        tracks=[TrackScore(0, 0.91, 0.0, 2.8, 15, (1, 2, 3, 4), True, 0.3)],
        timeline=[(0.0, 1.0, 0.3), (1.0, 2.0, 0.95), (2.0, 3.0, 0.5)],
        suspicious=[(1.0, 2.0, 0.95)],
        timings={"prepare": 1.0, "model": 0.5, "total": 1.6},
        model="tiny",
        extras={
            "duration": 3.0,
            "explain": {"method": "gradcam", "frames": frames, "curves": curves},
            "thumbnails": {"0": encode_image(crop, None, "t")},
        },
    )


def test_single_video_sections(tmp_path: Path) -> None:
    out = write_report(tmp_path / "r.html", [_scored(tmp_path)])
    text = out.read_text(encoding="utf-8")
    for section in (
        "FAKE".lower(),
        "91%",
        "Timeline",
        "Modality scores",
        "Face tracks",
        "Where the model looked",
        "Suspicious segments",
        "Grad-CAM",
    ):
        assert section.lower() in text.lower(), section
    assert "a&lt;b&gt;.mp4" in text and "a<b>.mp4" not in text, "paths are escaped"
    assert 'src="/' not in text and "file://" not in text, "no external resources: self-contained"
    assert len(re.findall(r"data:image/(png|jpeg);base64,", text)) >= 4  # plot, crop, overlay, thumbnail


def test_many_videos_summary_and_statuses(tmp_path: Path) -> None:
    preds = [
        _scored(tmp_path),
        Prediction(path="/v/broken.mp4", status=Status.UNREADABLE, message="cannot open the file"),
        Prediction(path="/v/face.mp4", status=Status.NO_FACE, message="no face was found"),
    ]
    text = render_report(preds)
    assert "3 videos" in text and "1 fake" in text and "2 not scored" in text
    assert "cannot open the file" in text and "no face was found" in text
    assert text.count("<section") == 3
    assert "href='#video-1'" in text


def test_timeline_plot_only_when_scored(tmp_path: Path) -> None:
    assert timeline_plot(Prediction(path="x", status=Status.NO_FACE)) is None
    assert timeline_plot(_scored(tmp_path)).startswith("data:image/png;base64,")


def test_audio_file_shows_waveform_with_window_scores() -> None:
    from dfdetect.infer.report import waveform_plot

    t = np.linspace(0, 6, 600)
    env = np.abs(np.sin(t))
    voice = Prediction(
        path="/a/voice.wav",
        status=Status.OK,
        kind="audio",
        p_fake=0.8,
        verdict=Verdict.FAKE,
        timeline=[(0.0, 1.0, 0.7), (1.0, 2.0, 0.9)],
        speech=[(0.3, 5.5, 0.8)],
        model="aasist-l",
        extras={
            "audio_windows": [[0.0, 4.04, 0.7], [1.96, 6.0, 0.9]],
            "waveform": {"t": t.tolist(), "lo": (-env).tolist(), "hi": env.tolist()},
        },
    )
    assert waveform_plot(voice).startswith("data:image/png;base64,")
    text = render_report([voice])
    assert "alt='waveform'" in text and "Speech judged by aasist-l" in text
    assert waveform_plot(Prediction(path="x", status=Status.NO_SPEECH)) is None


def test_the_timeline_draws_one_quantity_per_axis_and_says_what_each_is(tmp_path: Path) -> None:
    """The per-second window scores (the verdict's) and the frame head's per-frame scores answer different
    questions: they get separate axes and a caption, never one axis with two contradicting curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfdetect.infer.report import TIMELINE_CAPTION, timeline_panels

    pred = _scored(tmp_path)
    assert [key for key, _, _ in timeline_panels(pred)] == ["fake_probability", "attention", "sync"]
    before = set(plt.get_fignums())
    real_close = plt.close
    kept = []
    plt.close = lambda fig=None: kept.append(fig)  # keep the figure to read its axes
    try:
        assert timeline_plot(pred).startswith("data:image/png;base64,")
    finally:
        plt.close = real_close
    (fig,) = kept
    top, *panels = fig.axes
    assert [a.get_ylabel() for a in panels] == [label for _, label, _ in timeline_panels(pred)]
    assert len(top.lines) == 0 and [len(c) for c in top.containers] == [3]  # only the per-second bars
    assert all(len(a.lines) == 1 for a in panels)  # one curve per panel
    real_close(fig)
    assert set(plt.get_fignums()) == before
    assert TIMELINE_CAPTION in render_report([pred]).replace("&#x27;", "'")
