"""Cut one sample out of a composite frame: the ``crop`` column of a video catalogue.

Formats (``corpus/README.md``): empty (the whole frame), ``panelK/N`` (the K-th of N equal side-by-side
panels, from the left), ``left-half``, ``right-half`` and ``grid rRcC`` (row R, column C of a grid; the
grid's shape comes from the row's note, ``grid 2x4`` = 2 rows x 4 columns, else from the largest row and
column that the rows of the same file name).

:func:`cut_media` writes the cut copy of a video (PyAV: the crop is applied to every decoded frame, the
frames are re-encoded nearly losslessly with H.264, the audio packets are copied as they are) or of a still
image, atomically; every panel of one composite comes from one decoding pass.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from dfdetect.io.files import atomic_path

CUT_CRF = 10  # H.264 quality of cut copies: visually lossless, so the cut adds almost no compression trace
_PANEL = re.compile(r"^panel\s*(\d+)\s*/\s*(\d+)$")
_GRID = re.compile(r"^grid\s*r(\d+)\s*c(\d+)$")
_SHAPE = re.compile(r"grid\D{0,12}?(\d+)\s*[x×]\s*(\d+)", re.IGNORECASE)


class CropError(ValueError):
    """A ``crop`` value that is not one of the known formats, or a frame too small to cut."""


@dataclass(frozen=True)
class Crop:
    """Which part of a frame is the sample, as fractions of the frame: columns ``col/cols`` .. and rows
    ``row/rows`` (0-based). The whole frame is ``Crop(0, 1, 0, 1)``."""

    col: int = 0
    cols: int = 1
    row: int = 0
    rows: int = 1

    @property
    def whole(self) -> bool:
        return self.cols == 1 and self.rows == 1

    @property
    def slug(self) -> str:
        """A short file-name-safe name: ``c2of3``, ``r1c3of2x4`` ("" for the whole frame)."""
        if self.whole:
            return ""
        if self.rows == 1:
            return f"c{self.col + 1}of{self.cols}"
        return f"r{self.row + 1}c{self.col + 1}of{self.rows}x{self.cols}"

    def rect(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in pixels of a ``width`` x ``height`` frame, even-sized (H.264 4:2:0).

        Raises:
            CropError: the cut would be smaller than 2 x 2 pixels.
        """
        x0, x1 = round(self.col * width / self.cols), round((self.col + 1) * width / self.cols)
        y0, y1 = round(self.row * height / self.rows), round((self.row + 1) * height / self.rows)
        x1, y1 = x0 + (x1 - x0) // 2 * 2, y0 + (y1 - y0) // 2 * 2  # even sides
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise CropError(f"a {width}x{height} frame is too small to cut {self.slug}")
        return x0, y0, x1, y1


def grid_shape(note: str) -> tuple[int, int] | None:
    """``(rows, cols)`` when a note says ``grid RxC`` (e.g. "grid 2x4"), else None."""
    m = _SHAPE.search(note or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def grid_cell(crop: str) -> tuple[int, int] | None:
    """``(row, col)`` (1-based) of a ``grid rRcC`` crop, else None."""
    m = _GRID.match((crop or "").strip().lower())
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_crop(crop: str, shape: tuple[int, int] | None = None) -> Crop:
    """A catalogue ``crop`` value as a :class:`Crop`.

    Args:
        crop: "", ``panelK/N``, ``left-half``, ``right-half`` or ``grid rRcC``.
        shape: ``(rows, cols)`` of the grid, needed for ``grid rRcC``.

    Raises:
        CropError: an unknown format, K > N, a cell outside the grid, or a grid without a shape.
    """
    text = (crop or "").strip().lower()
    if text in ("", "full", "whole"):
        return Crop()
    if text in ("left-half", "right-half"):
        return Crop(col=0 if text.startswith("left") else 1, cols=2)
    m = _PANEL.match(text)
    if m:
        k, n = int(m.group(1)), int(m.group(2))
        if not 1 <= k <= n:
            raise CropError(f"crop {crop!r}: panel K/N needs 1 <= K <= N")
        return Crop(col=k - 1, cols=n)
    cell = grid_cell(text)
    if cell is None:
        raise CropError(f"unknown crop {crop!r}: expected '', panelK/N, left-half, right-half or grid rRcC")
    if shape is None:
        raise CropError(f"crop {crop!r}: the grid's shape is unknown (write 'grid RxC' in the note)")
    (r, c), (rows, cols) = cell, shape
    if not (1 <= r <= rows and 1 <= c <= cols):
        raise CropError(f"crop {crop!r} lies outside a {rows}x{cols} grid")
    return Crop(col=c - 1, cols=cols, row=r - 1, rows=rows)


def cut_media(
    src: str | os.PathLike,
    cuts: list[tuple[str | os.PathLike, Crop]],
    image: bool = False,
    max_seconds: float | None = None,
) -> list[Path]:
    """Write each ``(dst, crop)`` of ``src`` (a video, or a still image when ``image``) atomically, from one
    decoding pass; a video is cut to its first ``max_seconds`` (None = all).

    Raises:
        CropError: the frame is too small for a crop.
        av.error.FFmpegError, OSError: ``src`` cannot be read or a ``dst`` written.
    """
    dsts = [Path(d) for d, _ in cuts]
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(d, suffix=d.suffix)) for d in dsts]
        targets = list(zip(tmps, (c for _, c in cuts), strict=True))
        if image:
            _cut_image(Path(src), targets)
        else:
            _cut_video(Path(src), targets, max_seconds)
    return dsts


def _cut_image(src: Path, targets: list[tuple[Path, Crop]]) -> None:
    from PIL import Image

    with Image.open(src) as im:
        for dst, crop in targets:
            im.crop(crop.rect(*im.size)).save(dst, format="PNG")


def _cut_video(src: Path, targets: list[tuple[Path, Crop]], max_seconds: float | None) -> None:
    """Decode every frame once, encode each crop with H.264 (CRF ``CUT_CRF``), copy the first audio
    stream's packets into each output."""
    import av

    with contextlib.ExitStack() as stack:
        inp = stack.enter_context(av.open(str(src)))
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        width, height = vin.codec_context.width, vin.codec_context.height
        outs = []
        for dst, crop in targets:
            out = stack.enter_context(av.open(str(dst), "w", format="mp4"))
            rect = crop.rect(width, height)
            outs.append(
                (out, _video_stream(out, vin, rect), out.add_stream_from_template(ain) if ain else None, rect)
            )
        end = float("inf") if max_seconds is None else max_seconds
        for packet in inp.demux(*([vin] + ([ain] if ain is not None else []))):
            if packet.stream is ain:
                _copy_audio(packet, outs, end)
                continue
            for frame in packet.decode():
                if frame.time is not None and frame.time >= end:
                    continue
                rgb = frame.to_ndarray(format="rgb24")  # [H, W, 3]
                for out, vout, _, rect in outs:
                    out.mux(vout.encode(_cropped(rgb, rect, frame)))
        for out, vout, _, _ in outs:
            out.mux(vout.encode(None))


def _video_stream(out, vin, rect: tuple[int, int, int, int]):  # noqa: ANN001, ANN202  (av streams)

    x0, y0, x1, y1 = rect
    vout = out.add_stream("libx264", rate=vin.average_rate or vin.guessed_rate or Fraction(25))
    vout.width, vout.height, vout.pix_fmt = x1 - x0, y1 - y0, "yuv420p"
    vout.time_base = vout.codec_context.time_base = vin.time_base  # frames keep their own timestamps
    vout.options = {"crf": str(CUT_CRF), "preset": "ultrafast"}
    return vout


def _copy_audio(packet, outs: list, end: float) -> None:  # noqa: ANN001  (av.Packet)
    """Mux one audio packet into every output (packets past ``end`` seconds and flush packets dropped)."""
    if packet.dts is None or (packet.pts is not None and float(packet.pts * packet.time_base) >= end):
        return
    for out, _, aout, _ in outs:
        packet.stream = aout
        out.mux(packet)


def _cropped(rgb, rect: tuple[int, int, int, int], frame):  # noqa: ANN001, ANN202  (av.VideoFrame)
    """The ``rect`` of a decoded RGB frame as a new yuv420p frame with ``frame``'s timestamp."""
    import av

    x0, y0, x1, y1 = rect
    out = av.VideoFrame.from_ndarray(rgb[y0:y1, x0:x1].copy(), format="rgb24").reformat(format="yuv420p")
    out.pts, out.time_base = frame.pts, frame.time_base
    return out
