"""Held-back pseudo-fakes for evaluation: one deterministic fake copy of each real video per kind.

Users with real videos only (and the demo media, with a single real fake) still get an honest number:
``evaluate(..., pseudofakes=["sbi", "desync", "swap"])`` adds, for every real video of the scored split,

* ``sbi``: every crop of every face track self-blended (``data.pseudofake.self_blend``) with **one** set of
  SBI parameters per track: a temporally consistent video fake;
* ``desync``: the clip's audio shifted by ``MIN_DESYNC_SECONDS`` or more (``data.pseudofake.desync``);
* ``swap``: the audio of another real video of the split (``data.pseudofake.swap_audio``);
* ``sbi_partial`` (only when named): the crops of one contiguous span of the video (a quarter to a half of
  the time its faces are seen, at least one second) self-blended, one set of parameters per track; its row
  has that span as ``segments``, so the report scores temporal localization on any real dataset.

Each copy is made from the cached :class:`~dfdetect.types.Clip` with a random generator seeded by the
video's path and the kind, so a given video always gets the same fake. Rows are keyed ``"<path>#<kind>"``.
Audio kinds are made only for clips with usable audio; nothing is made for a clip without a face track.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfdetect.data.cache import CacheError, read_entry
from dfdetect.data.manifest import REAL, ManifestRow
from dfdetect.data.pseudofake import desync, self_blend, swap_audio
from dfdetect.data.windows import Window
from dfdetect.types import Clip

KINDS = ("sbi", "desync", "swap")
EXTRA_KINDS = ("sbi_partial",)  # made only when asked for by name
AUDIO_KINDS = ("desync", "swap")
PARTIAL_SHARE = (0.25, 0.5)  # span of a sbi_partial fake: share of the time its faces are seen
MIN_PARTIAL_SECONDS = 1.0
SEPARATOR = "#"
MIN_DESYNC_SECONDS = 1.0
MAX_DESYNC_SECONDS = 2.0


def check_kinds(kinds: Sequence[str] | bool | None) -> tuple[str, ...]:
    """Normalise a kinds argument: True or an empty list = every kind, None/False = none.

    Raises:
        ValueError: an unknown kind.
    """
    if kinds is None or kinds is False:
        return ()
    if kinds is True or len(kinds) == 0:
        return KINDS
    unknown = [k for k in kinds if k not in KINDS + EXTRA_KINDS]
    if unknown:
        raise ValueError(f"unknown pseudo-fake kind(s) {unknown}: choose among {list(KINDS + EXTRA_KINDS)}")
    return tuple(dict.fromkeys(kinds))


def pseudofake_key(path: str, kind: str) -> str:
    """Row key of the ``kind`` pseudo-fake of the video at ``path``: ``"<path>#<kind>"``."""
    return f"{path}{SEPARATOR}{kind}"


def path_rng(path: str, kind: str) -> np.random.Generator:
    """Random generator seeded by a video path and a purpose (stable across runs and machines)."""
    digest = hashlib.sha256(pseudofake_key(str(path), kind).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def sbi_clip(clip: Clip, rng: np.random.Generator) -> Clip:
    """Self-blend every crop of every face track, with one set of SBI parameters per track.

    Tracks whose landmarks are not all finite are kept as they are.
    """
    faces = []
    for face in clip.faces:
        if len(face.crops) and np.isfinite(face.crop_landmarks).all():
            fakes, _, _ = self_blend(np.asarray(face.crops), np.asarray(face.crop_landmarks), rng)
            face = dataclasses.replace(face, crops=fakes)  # [T, H, W, 3] uint8
        faces.append(face)
    return dataclasses.replace(clip, faces=faces)


def partial_span(clip: Clip, seed: str) -> tuple[float, float] | None:
    """The manipulated span (seconds) of the ``sbi_partial`` fake of a clip, seeded by ``seed`` (its path):
    a quarter to a half of the time its faces are seen, at least :data:`MIN_PARTIAL_SECONDS`; None when
    the faces are seen for less than twice that."""
    stamps = [np.asarray(f.track.timestamps) for f in clip.faces if len(f.track.timestamps)]
    if not stamps:
        return None
    start, end = min(float(t[0]) for t in stamps), max(float(t[-1]) for t in stamps)
    period = 1.0 / float(clip.params.get("fps") or 5.0)
    seen = end + period - start
    if seen < 2 * MIN_PARTIAL_SECONDS:
        return None
    rng = path_rng(seed, "sbi_partial-span")
    length = max(MIN_PARTIAL_SECONDS, float(rng.uniform(*PARTIAL_SHARE)) * seen)
    a = start + float(rng.uniform(0, seen - length))
    return round(a, 3), round(a + length, 3)


def sbi_partial_clip(clip: Clip, span: tuple[float, float], rng: np.random.Generator) -> Clip:
    """Self-blend the crops whose timestamps fall in ``span`` (one set of SBI parameters per track)."""
    faces = []
    for face in clip.faces:
        t = np.asarray(face.track.timestamps)
        inside = (t >= span[0]) & (t < span[1])  # [T]
        if inside.any() and np.isfinite(face.crop_landmarks).all():
            crops = np.array(face.crops)  # [T, H, W, 3] uint8, a copy
            blended, _, _ = self_blend(crops[inside], np.asarray(face.crop_landmarks)[inside], rng)
            crops[inside] = blended
            face = dataclasses.replace(face, crops=crops)
        faces.append(face)
    return dataclasses.replace(clip, faces=faces)


def desync_clip(
    clip: Clip,
    rng: np.random.Generator,
    min_shift: float = MIN_DESYNC_SECONDS,
    max_shift: float = MAX_DESYNC_SECONDS,
) -> Clip | None:
    """The clip with its audio shifted (circularly) by ``min_shift`` s or more, or None without audio.

    The shift ``s`` is drawn in ``[min_shift, min(max_shift, duration - min_shift)]`` with a random sign, so
    every sample is moved by ``s`` or by ``s -/+ duration`` (the wrapped part): at least ``min_shift`` either
    way. None as well when the audio is shorter than ``2 * min_shift``.
    """
    if not clip.has_usable_audio:
        return None
    duration = len(clip.audio) / clip.sample_rate
    high = min(max_shift, duration - min_shift)
    if high < min_shift:
        return None
    shift = float(rng.uniform(min_shift, high)) * float(rng.choice([-1.0, 1.0]))
    audio = desync(np.asarray(clip.audio, dtype=np.float32), shift, clip.sample_rate)
    params = {**clip.params, "desync_seconds": shift}
    return dataclasses.replace(clip, audio=audio, params=params)


def swap_clip(clip: Clip, other_audio: np.ndarray, rng: np.random.Generator) -> Clip | None:
    """The clip with audio cut from ``other_audio`` (another real video), or None without audio."""
    if not clip.has_usable_audio or np.asarray(other_audio).size == 0:
        return None
    n = len(clip.audio)
    # swap_audio works on windows: carry the clip's whole audio span in a frameless one
    carrier = Window(
        frames=np.zeros((0, 1, 1, 3), np.uint8),
        timestamps=np.zeros(0),
        audio=np.asarray(clip.audio, dtype=np.float32),
        audio_mask=True,
        mouths=np.zeros((0, 1, 1, 3), np.uint8),
        landmarks=np.zeros((0, 5, 2), np.float32),
        track_id=-1,
        t0=0.0,
        t1=n / clip.sample_rate,
        n_real=0,
    )
    audio = swap_audio(carrier, other_audio, rng).audio  # [S] float32, zero-padded if the other is short
    return dataclasses.replace(clip, audio=audio)


class PseudoFakeSet:
    """The pseudo-fake rows of a list of manifest rows, and the loader that makes their clips.

    Args:
        rows: manifest rows (one split); pseudo-fakes are made from the real ones (``label == 0``).
        cache_dir: the prepared cache holding their entries.
        kinds: kinds to make (see :data:`KINDS`).

    Attributes:
        rows: the pseudo-fake rows, grouped after their source video, in ``rows`` order.
        partners: swap partner (a real video path with audio) of each video with a ``swap`` row.
    """

    def __init__(
        self, rows: Sequence[ManifestRow], cache_dir: str | os.PathLike, kinds: Sequence[str] = KINDS
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.kinds = check_kinds(list(kinds))
        self.sources: dict[str, tuple[str, str]] = {}  # key -> (source path, kind)
        self.partners: dict[str, str] = {}
        facts = {}  # path -> (has faces, seconds of usable audio, group, partial span) of every readable real
        for row in rows:
            if row.label == REAL and row.path not in facts:
                try:
                    clip = read_entry(self.cache_dir, row.path)
                except CacheError:
                    continue  # reported as not scored by the source row itself
                seconds = len(clip.audio) / clip.sample_rate if clip.has_usable_audio else 0.0
                span = partial_span(clip, row.path) if "sbi_partial" in self.kinds else None
                facts[row.path] = (bool(clip.faces), seconds, row.group, span)
        with_audio = [p for p, (_, seconds, _, _) in facts.items() if seconds > 0]
        self.rows: list[ManifestRow] = []
        for row in rows:
            if row.path not in facts or not facts[row.path][0]:
                continue
            seconds = facts[row.path][1]
            for kind in self.kinds:
                if kind == "desync" and seconds < 2 * MIN_DESYNC_SECONDS:
                    continue  # no audio, or too short to shift by MIN_DESYNC_SECONDS both ways
                if kind == "swap" and not (seconds > 0 and self._pick_partner(row, with_audio, facts)):
                    continue
                if kind == "sbi_partial" and facts[row.path][3] is None:
                    continue  # faces seen too briefly for a span that leaves real time around it
                self.rows.append(self._row(row, kind, audio=seconds > 0, span=facts[row.path][3]))

    def _pick_partner(self, row: ManifestRow, with_audio: list[str], facts: dict) -> bool:
        others = [p for p in with_audio if p != row.path]
        strangers = [p for p in others if facts[p][2] != row.group]  # another identity when possible
        pool = strangers or others
        if pool:
            self.partners[row.path] = pool[int(path_rng(row.path, "swap-partner").integers(len(pool)))]
        return bool(pool)

    def _row(self, row: ManifestRow, kind: str, audio: bool, span: tuple[float, float] | None) -> ManifestRow:
        """Labels as ``data.pseudofake.PseudoFaker`` sets them (``None`` = no audio, the manifest's -1);
        a ``sbi_partial`` row knows its manipulated span (``segments``)."""
        key = pseudofake_key(row.path, kind)
        self.sources[key] = (row.path, kind)
        return dataclasses.replace(
            row,
            path=key,
            label=1,
            method=kind,
            video_label=int(kind.startswith("sbi")),
            audio_label=0 if audio else None,
            category="",
            segments=(span,) if kind == "sbi_partial" and span is not None else row.segments,
        )

    def counts(self) -> dict[str, int]:
        """Number of pseudo-fake rows per kind."""
        return {k: sum(kind == k for _, kind in self.sources.values()) for k in self.kinds}

    def load(self, row: ManifestRow) -> Clip:
        """The clip of a row: its cache entry, or the pseudo-fake made from its source's entry.

        Raises:
            CacheError: the entry (of the row, its source or its swap partner) is missing or unreadable.
        """
        if row.path not in self.sources:
            return read_entry(self.cache_dir, row.path)
        path, kind = self.sources[row.path]
        clip = read_entry(self.cache_dir, path)
        other = read_entry(self.cache_dir, self.partners[path]).audio if kind == "swap" else None
        fake = make_pseudofake(clip, kind, seed=path, other_audio=other)
        if fake is None:
            raise CacheError(f"cannot make the {kind} pseudo-fake of {path}: its cache entry changed")
        return dataclasses.replace(fake, path=row.path)


def make_pseudofake(
    clip: Clip, kind: str, seed: str | None = None, other_audio: np.ndarray | None = None
) -> Clip | None:
    """The ``kind`` pseudo-fake of a real clip, made with a generator seeded by ``seed`` (default its path).

    Args:
        clip: a real clip (from the cache).
        kind: ``sbi``, ``desync``, ``swap`` or ``sbi_partial``.
        seed: the path that seeds the generator (the manifest key of the video).
        other_audio: for ``swap``, the audio of another real video.

    Returns:
        The fake clip, or None where the kind does not apply (no audio, no other audio).
    """
    rng = path_rng(seed if seed is not None else clip.path, kind)
    if kind == "sbi":
        return sbi_clip(clip, rng)
    if kind == "desync":
        return desync_clip(clip, rng)
    if kind == "swap":
        return swap_clip(clip, other_audio if other_audio is not None else np.zeros(0, np.float32), rng)
    if kind == "sbi_partial":
        span = partial_span(clip, seed if seed is not None else clip.path)
        return None if span is None else sbi_partial_clip(clip, span, rng)
    raise ValueError(f"unknown pseudo-fake kind {kind!r}: choose among {list(KINDS + EXTRA_KINDS)}")
