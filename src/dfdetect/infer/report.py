"""Self-contained HTML report of scanned videos (one file: inline CSS, plots and images as data URIs).

For each video: a verdict banner (calibrated p_fake, verdict, status, message), modality scores, a
timeline plot with the uncertain band and the suspicious segments shaded, frame-attention and
audio-visual sync curves, the waveform with the speech model's per-window scores (audio files, and
videos whose speech a speech model judged), a per-track table with thumbnails, and Grad-CAM overlays when
the scan was run with explanations. Several videos get a summary table with links on top.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dfdetect.constants import VERDICT_BAND
from dfdetect.types import Prediction

_COLOURS = {"fake": "#c62828", "real": "#2e7d32", "uncertain": "#e08600", "none": "#607d8b"}
_MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@functools.cache
def _css() -> str:
    """The report's style sheet (``report.css`` beside this module), inlined in every report."""
    return Path(__file__).with_name("report.css").read_text(encoding="utf-8")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _key(pred: Prediction) -> str:
    """Colour key of a prediction: its verdict, or ``none`` when it has no score."""
    return str(pred.verdict) if pred.verdict is not None and pred.p_fake is not None else "none"


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def _pct(p: float | None) -> str:
    return "–" if p is None else f"{100 * p:.0f}%"


def _img_src(value: Any) -> str | None:
    """A ``data:`` URI for an image given as a data URI or a file path (None when unusable)."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("data:image/"):
        return value
    path = Path(value)
    if not path.is_file():
        return None
    mime = _MIME.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _analysed(pred: Prediction) -> float:
    """End of the analysed part (the timeline's end)."""
    return max((b for _, b, _ in pred.timeline), default=0.0)


def _duration(pred: Prediction) -> float:
    ends = [b for _, b, _ in pred.timeline] + [t.end for t in pred.tracks]
    d = pred.extras.get("duration")
    return float(d) if isinstance(d, int | float) and d > 0 else (max(ends) if ends else 0.0)


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


# Panels under the timeline: one quantity each, (curve key, y label, colour).
_PANELS = (
    ("fake_probability", "one frame alone:\nframe-head p(fake)", "#1d2330"),
    ("attention", "frame attention", "#6a1b9a"),
    ("sync", "lip-sync agreement", "#00838f"),
)
TIMELINE_CAPTION = (
    "Top: the calibrated p(fake) of each second, from the model's windows (the verdict's own scores). "
    "Below, when explained: what the frame head says of each frame seen alone, before the temporal layer "
    "combines the frames (it often disagrees with the window score, and the verdict does not use it), "
    "the frame attention, and the lip-sync agreement."
)


def timeline_panels(pred: Prediction) -> list[tuple[str, str, str]]:
    """The curves drawn below the per-second bars, one panel each: ``(key, y label, colour)``."""
    curves = (pred.extras.get("explain") or {}).get("curves") or {}
    return [panel for panel in _PANELS if curves.get(panel[0], {}).get("t")]


def timeline_plot(pred: Prediction, thresholds: tuple[float, float] = VERDICT_BAND) -> str | None:
    """Timeline figure (PNG data URI): the calibrated p(fake) per second with the uncertain band and the
    suspicious segments shaded, then one panel per explanation curve (:func:`timeline_panels`)."""
    if not pred.timeline:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curves = (pred.extras.get("explain") or {}).get("curves") or {}
    panels = timeline_panels(pred)
    heights = [3.0] + [1.3] * len(panels)
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(10.5, sum(heights) * 0.9 + 0.6),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    _plot_probability(axes[0, 0], pred, thresholds)
    for row, (name, label, colour) in enumerate(panels, start=1):
        a = axes[row, 0]
        a.plot(curves[name]["t"], curves[name]["value"], color=colour, lw=1.6)
        a.fill_between(curves[name]["t"], curves[name]["value"], color=colour, alpha=0.12)
        a.set_ylabel(label, fontsize=9)
        a.set_ylim(bottom=0, top=1.02 if name != "attention" else None)
        _shade(a, pred)
        _style(a)
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 0].set_xlim(0, max(_duration(pred), pred.timeline[-1][1]))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def waveform_plot(pred: Prediction, thresholds: tuple[float, float] = VERDICT_BAND) -> str | None:
    """Waveform figure (PNG data URI) of scored speech: the waveform with the speech segments shaded, and
    below it the speech model's p(fake) per window (and its real-voice ceiling for a video's speech)."""
    windows = pred.extras.get("audio_windows") or []
    wave = pred.extras.get("waveform") or {}
    if not windows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10.5, 3.6), sharex=True, gridspec_kw={"height_ratios": [1.2, 1.0]}
    )
    if wave.get("t"):
        top.fill_between(wave["t"], wave["lo"], wave["hi"], color="#455a64", lw=0, alpha=0.8)
    for t0, t1, _ in pred.speech:
        top.axvspan(t0, t1, color="#1f5fbf", alpha=0.10, lw=0)
    top.set_ylabel("waveform", fontsize=9)
    top.set_yticks([])
    lo, hi = thresholds
    bottom.axhspan(lo, hi, color=_COLOURS["uncertain"], alpha=0.10, lw=0)
    for t0, t1, p in windows:
        bottom.hlines(p, t0, t1, color=_colour(p, thresholds), lw=3, alpha=0.75)
    p0 = (pred.fusion or {}).get("p0")
    if p0 is not None:
        bottom.axhline(p0, color="#1d2330", lw=1, ls="--", label=f"real-voice ceiling {p0:.2f}")
        bottom.legend(loc="lower left", fontsize=8, frameon=False)
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("p(fake) per\nspeech window", fontsize=9)
    bottom.set_xlabel("time (s)")
    end = max([b for _, b, _ in windows] + ([wave["t"][-1]] if wave.get("t") else []))
    bottom.set_xlim(0, end)
    for ax in (top, bottom):
        _style(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _audio(pred: Prediction, thresholds: tuple[float, float]) -> str:
    plot = waveform_plot(pred, thresholds)
    if plot is None:
        return ""
    model = (pred.fusion or {}).get("speech_model") or pred.model
    note = f"Speech judged by {_e(model)}: each bar is one model window that overlaps speech (blue)."
    return f"<h3>Speech</h3><p class='muted small'>{note}</p><img class='plot' src='{plot}' alt='waveform'>"


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e3e7ee", lw=0.8)
    ax.tick_params(labelsize=8)


def _shade(ax: Any, pred: Prediction) -> None:
    for t0, t1, _ in pred.suspicious:
        ax.axvspan(t0, t1, color=_COLOURS["fake"], alpha=0.10, lw=0)
    end, duration = _analysed(pred), _duration(pred)
    if duration > end + 0.5:  # the part of the video beyond max_duration was not read
        ax.axvspan(end, duration, color="#9aa5b1", alpha=0.15, lw=0, hatch="//")


def _interval(ax: Any, pred: Prediction) -> None:
    """The 90 % interval of p(fake) per second over the uncertainty passes, shaded over the bars."""
    u = pred.uncertainty
    for k, (a, b, _, low, high) in enumerate(u.timeline if u is not None else []):
        label = f"{u.level:.0%} interval ({u.passes} {u.method} passes)" if k == 0 else None
        ax.fill_between([a, b], low, high, color="#1d2330", alpha=0.3, lw=0, label=label, zorder=3)
        ax.hlines([low, high], a, b, color="#1d2330", lw=0.9, zorder=3)


def _plot_probability(ax: Any, pred: Prediction, thresholds: tuple[float, float]) -> None:
    lo, hi = thresholds
    ax.axhspan(lo, hi, color=_COLOURS["uncertain"], alpha=0.10, lw=0, label="uncertain band")
    for t0, t1, p in pred.suspicious:
        ax.text(
            (t0 + t1) / 2, 1.02, f"peak {p:.2f}", ha="center", va="bottom", fontsize=8, color=_COLOURS["fake"]
        )
    colours = [
        _COLOURS["fake"] if p >= hi else _COLOURS["real"] if p <= lo else _COLOURS["uncertain"]
        for _, _, p in pred.timeline
    ]
    ax.bar(
        [a for a, _, _ in pred.timeline],
        [p for _, _, p in pred.timeline],
        width=[b - a for a, b, _ in pred.timeline],
        align="edge",
        color=colours,
        alpha=0.75,
        edgecolor="white",
        lw=0.8,
        label="p(fake) per second (calibrated, as the verdict)",
    )
    _interval(ax, pred)
    _shade(ax, pred)
    end, duration = _analysed(pred), _duration(pred)
    if duration > end + 0.5:
        ax.text(
            (end + duration) / 2, 0.5, "not analysed", ha="center", va="center", fontsize=8, color="#5f6b7a"
        )
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("p(fake)", fontsize=9)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False, ncol=3)
    _style(ax)


# ---------------------------------------------------------------------------------------------
# HTML pieces
# ---------------------------------------------------------------------------------------------


def _banner(pred: Prediction) -> str:
    key = _key(pred)
    verdict = str(pred.verdict) if key != "none" else str(pred.status).replace("_", " ")
    p = f'<div class="p">{_pct(pred.p_fake)}<small>probability fake (calibrated)</small></div>'
    meta = [f"status: <b>{_e(pred.status)}</b>"]
    if pred.uncertainty is not None:
        u = pred.uncertainty
        crossed = " (crosses the band: uncertain)" if u.crosses_band else ""
        meta.append(
            f"spread: ± {u.std:.3f}, {u.level:.0%} interval {_pct(u.low)}–{_pct(u.high)}"
            f" over {u.passes} {_e(u.method)} passes{crossed}"
        )
    if pred.model:
        meta.append(f"model: {_e(pred.model)}")
    if _duration(pred):
        analysed = f" (analysed {_analysed(pred):.1f} s)" if _analysed(pred) < _duration(pred) - 0.5 else ""
        meta.append(f"duration: {_duration(pred):.1f} s{analysed}")
    if pred.timings.get("total"):
        meta.append(f"scan time: {pred.timings['total']:.1f} s")
    return (
        f'<div class="banner bg-{key}"><div class="verdict">{_e(verdict)}</div>'
        f'{p if pred.p_fake is not None else ""}<div class="meta">{"<br>".join(meta)}</div></div>'
    )


def _colour(p: float, band: tuple[float, float] = VERDICT_BAND) -> str:
    """Colour of a probability on the default verdict band."""
    return _COLOURS["fake"] if p >= band[1] else _COLOURS["real"] if p <= band[0] else _COLOURS["uncertain"]


def _modalities(pred: Prediction) -> str:
    if not pred.modality:
        return '<p class="muted small">No per-modality scores for this model.</p>'
    fusion = pred.fusion or {}
    speech_model = fusion.get("speech_model")
    names = {"visual": "visual", "audio": "audio", "sync": "lip-sync", "audio_av": "audio (AV head)"}
    if speech_model and fusion.get("audio") is not None:
        names["audio"] = f"audio ({speech_model})"
    rows = []
    for name, p in pred.modality.items():
        colour = _colour(p)
        rows.append(
            f'<div class="modrow"><div>{_e(names.get(name, name))}</div>'
            f'<div class="bar"><span style="width:{100 * p:.1f}%;background:{colour}"></span></div>'
            f'<div class="v">{_pct(p)}</div></div>'
        )
    note = "Raw head probabilities (not calibrated); high = fake."
    if speech_model and fusion.get("audio") is not None:
        note = (
            f"Verdict = visual {fusion['visual']:.2f} (video model, calibrated) fused with the speech "
            f"model's {fusion['audio']:.2f} above its real-voice ceiling {fusion['p0']:.2f} (excess "
            f"{fusion['audio_excess']:.2f}); decided by <b>{_e(fusion['decided_by'])}</b>. " + note
        )
    elif speech_model:
        note = f"No speech for {_e(speech_model)} to judge: the verdict is the video model's. " + note
    return "".join(rows) + f'<p class="muted small">{note}</p>'


def _timings(pred: Prediction) -> str:
    if not pred.timings:
        return '<p class="muted small">No timings.</p>'
    rows = "".join(
        f'<tr><td>{_e(k)}</td><td class="num">{v:.2f} s</td></tr>' for k, v in pred.timings.items()
    )
    return f"<table>{rows}</table>"


def _tracks(pred: Prediction) -> str:
    if not pred.tracks:
        return ""
    thumbs = pred.extras.get("thumbnails") or {}
    decisive = pred.extras.get("decisive_track")
    rows = []
    for t in pred.tracks:
        src = _img_src(thumbs.get(str(t.track_id)))
        img = f'<img class="thumb" src="{src}" alt="track {t.track_id}">' if src else ""
        colour = _colour(t.p_fake)
        notes = [
            n for n, on in (("speaking", t.speaking), ("decides the verdict", t.track_id == decisive)) if on
        ]
        sync = "–" if t.sync_score is None else f"{t.sync_score:.2f}"
        rows.append(
            f"<tr><td>{img}</td><td>#{t.track_id}</td>"
            f'<td class="num"><span class="pill" style="background:{colour}">{_pct(t.p_fake)}</span></td>'
            f'<td class="num">{t.start:.1f}–{t.end:.1f} s</td><td class="num">{t.n_frames}</td>'
            f'<td class="num">{sync}</td><td class="small muted">{_e(", ".join(notes))}</td></tr>'
        )
    head = (
        '<tr><th></th><th>track</th><th class="num">p(fake)</th><th class="num">time</th>'
        '<th class="num">frames</th><th class="num">sync</th><th></th></tr>'
    )
    return f"<h3>Face tracks</h3><div class='card'><table>{head}{''.join(rows)}</table></div>"


def _suspicious(pred: Prediction) -> str:
    if not pred.suspicious:
        return ""
    items = "".join(f"<li>{a:.1f}–{b:.1f} s: peak p(fake) {p:.2f}</li>" for a, b, p in pred.suspicious)
    return f"<h3>Suspicious segments</h3><div class='card'><ul class='segs'>{items}</ul></div>"


def _cams(pred: Prediction) -> str:
    explain = pred.extras.get("explain") or {}
    cards = []
    for f in explain.get("frames") or []:
        crop, overlay = _img_src(f.get("crop")), _img_src(f.get("overlay"))
        if not crop:
            continue
        imgs = f'<img src="{crop}" alt="face crop">' + (
            f'<img src="{overlay}" alt="heatmap">' if overlay else ""
        )
        cls = "pair" if overlay else ""
        cards.append(
            f'<div class="cam"><div class="{cls}">{imgs}</div><div class="cap">'
            f"<span>t = {f['time']:.2f} s · track #{f['track_id']}</span>"
            f"<b>{_pct(f['score'])}</b></div></div>"
        )
    if not cards:
        return ""
    method = {
        "gradcam": "Grad-CAM",
        "saliency": "input-gradient saliency",
        "attention": "frame attention",
    }.get(explain.get("method"), explain.get("method"))
    note = f"Most suspicious face crops and where the model looked ({_e(method)}; red = most influential)."
    return (
        f"<h3>Where the model looked</h3><p class='muted small'>{note}</p>"
        f"<div class='cams'>{''.join(cards)}</div>"
    )


def _video_section(i: int, pred: Prediction, thresholds: tuple[float, float]) -> str:
    plot = timeline_plot(pred, thresholds)
    caption = f"<p class='muted small'>{_e(TIMELINE_CAPTION)}</p>"
    plot_html = f'<h3>Timeline</h3>{caption}<img class="plot" src="{plot}" alt="timeline">' if plot else ""
    body = ""
    if pred.p_fake is not None:
        body = (
            f"<div class='grid2'><div class='card'><h3 style='margin-top:0'>Modality scores</h3>"
            f"{_modalities(pred)}</div><div class='card'><h3 style='margin-top:0'>Timings</h3>"
            f"{_timings(pred)}</div></div>{plot_html}{_audio(pred, thresholds)}{_suspicious(pred)}"
            f"{_tracks(pred)}{_cams(pred)}"
        )
    return (
        f"<section class='card' id='video-{i}'><h2>{_e(Path(pred.path).name)}</h2>"
        f"<div class='muted small'>{_e(pred.path)}</div>{_banner(pred)}"
        f"<p class='message'>{_e(pred.message)}</p>{body}</section>"
    )


def _summary(preds: Sequence[Prediction]) -> str:
    rows = []
    for i, p in enumerate(preds):
        key = _key(p)
        label = str(p.verdict) if key != "none" else str(p.status)
        rows.append(
            f"<tr><td><a href='#video-{i}'>{_e(Path(p.path).name)}</a></td><td>{_e(p.status)}</td>"
            f"<td><span class='pill' style='background:{_COLOURS[key]}'>{_e(label)}</span></td>"
            f"<td class='num'>{_pct(p.p_fake)}</td><td class='small muted'>{_e(_short(p.message))}</td></tr>"
        )
    counts = {k: sum(1 for p in preds if _key(p) == k) for k in ("fake", "uncertain", "real", "none")}
    line = " · ".join(f"{n} {k if k != 'none' else 'not scored'}" for k, n in counts.items() if n)
    head = (
        "<tr><th>video</th><th>status</th><th>verdict</th><th class='num'>p(fake)</th><th>message</th></tr>"
    )
    return (
        f"<div class='card'><h3 style='margin-top:0'>{len(preds)} videos: {line}</h3>"
        f"<table>{head}{''.join(rows)}</table></div>"
    )


def render_report(
    predictions: Sequence[Prediction],
    title: str = "dfdetect scan report",
    thresholds: tuple[float, float] = VERDICT_BAND,
) -> str:
    """The HTML text of the report for ``predictions`` (self-contained: no external resources)."""
    preds = list(predictions)
    from dfdetect._version import __version__

    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    sections = "".join(_video_section(i, p, thresholds) for i, p in enumerate(preds))
    summary = _summary(preds) if len(preds) > 1 else ""
    band = f"real ≤ {thresholds[0]:.2f} < uncertain < {thresholds[1]:.2f} ≤ fake"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
        f"<style>{_css()}</style></head><body><header class='top'><h1>{_e(title)}</h1>"
        f"<span class='sub'>{len(preds)} video(s) · {when} · dfdetect {__version__} · {band}</span></header>"
        f"<main>{summary}{sections}<footer>p(fake) is calibrated by temperature scaling on validation data. "
        "A detector can be wrong: treat the verdict as evidence, not proof.</footer></main></body></html>"
    )


def write_report(
    path: str | os.PathLike,
    predictions: Sequence[Prediction],
    title: str = "dfdetect scan report",
    thresholds: tuple[float, float] = VERDICT_BAND,
) -> Path:
    """Write the HTML report atomically; returns its path."""
    from dfdetect.io.files import atomic_write_text

    return atomic_write_text(path, render_report(predictions, title=title, thresholds=thresholds))


def status_counts(predictions: Sequence[Prediction]) -> dict[str, int]:
    """How many predictions have each status (for summaries)."""
    out: dict[str, int] = {}
    for p in predictions:
        out[str(p.status)] = out.get(str(p.status), 0) + 1
    return out
