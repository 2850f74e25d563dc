"""The training/evaluation dataset: manifest rows + cache entries -> Sample dicts (DESIGN.md).

The window machinery lives in :mod:`dfdetect.data.windows` and is re-exported here
(``Window``, ``clip_windows``, ``window_tensors``, ...), so callers import everything from this module.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfdetect.config import AugmentConfig, PreprocessConfig, PseudoFakeConfig
from dfdetect.data.cache import CacheError, entry_path, read_meta
from dfdetect.data.manifest import REAL, UNKNOWN, ManifestRow
from dfdetect.data.windows import (
    FLIP_ORDER,
    TENSOR_KEYS,
    Window,
    cache_fps,
    clip_audio,
    clip_windows,
    cut_audio,
    frame_edges,
    open_entry,
    resample_indices,
    segment_labels,
    span_segment_labels,
    track_indices,
    track_window,
    window_mouths,
    window_starts,
    window_tensors,
)
from dfdetect.types import Clip

__all__ = [
    "FLIP_ORDER",
    "TENSOR_KEYS",
    "VideoDataset",
    "Window",
    "cache_fps",
    "clip_audio",
    "clip_windows",
    "collate",
    "cut_audio",
    "frame_edges",
    "open_entry",
    "resample_indices",
    "segment_labels",
    "span_segment_labels",
    "track_indices",
    "track_window",
    "window_mouths",
    "window_starts",
    "window_tensors",
]

log = logging.getLogger(__name__)


Spans = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class _Item:
    row: ManifestRow
    entry: Path
    segments: Spans | None = None  # manipulated spans (seconds): the row's, else its cache entry's


class VideoDataset(torch.utils.data.Dataset):
    """Manifest rows + cache entries -> Sample dicts (DESIGN.md), one window per draw.

    Rows without a cache entry or without a face track are skipped (logged once, with the reasons);
    rows labelled -1 (unknown) are skipped in training. In training a face track is drawn with
    probability proportional to its length and a window start uniformly inside it; real windows are
    turned into pseudo-fakes (``pseudofake``) and then augmented (``augment``). In evaluation the centre
    window of the largest track is used (``windows_per_video`` evenly spaced windows when > 1).

    Every random choice comes from ``np.random.default_rng([seed, epoch, index])``: the same
    (seed, epoch, index) always gives the same sample, so a resumed run sees the same data.

    Args:
        rows: manifest rows (already filtered to one split).
        cache_dir: the cache folder written by ``prepare`` (``out_dir/cache``).
        pre: preprocessing of the model.
        train: training mode (random windows, pseudo-fakes, augmentations).
        augment: augmentations (training only; None = off).
        pseudofake: pseudo-fake settings (training only; None = off).
        seed: base seed.
        windows_per_video: samples drawn per video and epoch (the dataset's length is rows x this).
        lru_size: cache entries kept open per process (their crops are memory-mapped, so this is cheap).
    """

    def __init__(
        self,
        rows: list[ManifestRow],
        cache_dir: str | os.PathLike,
        pre: PreprocessConfig,
        train: bool = False,
        augment: AugmentConfig | None = None,
        pseudofake: PseudoFakeConfig | None = None,
        seed: int = 0,
        windows_per_video: int = 1,
        lru_size: int = 8,
    ) -> None:
        if windows_per_video < 1:
            raise ValueError(f"windows_per_video must be >= 1, got {windows_per_video}")
        self.cache_dir = Path(cache_dir)
        self.pre = pre
        self.train = train
        self.augment = augment if train else None
        self.pseudofake = pseudofake if train else None
        self.seed = seed
        self.epoch = 0
        self.windows_per_video = windows_per_video
        self.items = self._select(rows)
        self._lru: OrderedDict[Path, Clip] = OrderedDict()
        self._lru_size = lru_size
        self._faker = None
        self._audio_donors = [i for i, it in enumerate(self.items) if it.row.label == REAL]

    def _select(self, rows: list[ManifestRow]) -> list[_Item]:
        skipped = {"no cache entry": 0, "no face track": 0, "unlabelled": 0, "fake (only_real)": 0}
        only_real = self.pseudofake is not None and self.pseudofake.only_real
        items = []
        for row in rows:
            entry = entry_path(self.cache_dir, row.path)
            if self.train and row.label == UNKNOWN:
                skipped["unlabelled"] += 1
            elif only_real and row.label != REAL:
                skipped["fake (only_real)"] += 1
            elif not entry.is_file():
                skipped["no cache entry"] += 1
            elif (meta := _entry_meta(entry)) is None or int(meta["n_faces"]) == 0:
                skipped["no face track"] += 1
            else:
                items.append(_Item(row, entry, _segments(row, meta)))
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
        if reasons:
            log.info("dataset: using %d of %d videos (skipped %s)", len(items), len(rows), reasons)
        return items

    @property
    def labels(self) -> np.ndarray:
        """``[len(self)]`` manifest labels of the samples (for balanced samplers)."""
        return np.repeat([it.row.label for it in self.items], self.windows_per_video)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the next samples use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) * self.windows_per_video

    def clip(self, item_index: int) -> Clip:
        """The cached clip of item ``item_index`` (kept in a small per-process LRU)."""
        entry = self.items[item_index].entry
        clip = self._lru.pop(entry, None) or open_entry(entry)
        self._lru[entry] = clip
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)
        return clip

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        item_index, draw = divmod(index, self.windows_per_video)
        row = self.items[item_index].row
        clip = self.clip(item_index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        window = self._train_window(clip, rng) if self.train else self._eval_window(clip, draw)
        labels = _row_labels(row, window.audio_mask)
        pseudo, spans = "", self.items[item_index].segments
        if self.pseudofake is not None and row.label == REAL and rng.random() < self.pseudofake.p_fake:
            window, labels, pseudo = self._fake(window, rng, item_index)
            spans = labels.pop("segments", None)  # a partial pseudo-fake knows its blended span
        if self.augment is not None:
            from dfdetect.data.augment import augment_window

            window = augment_window(window, self.augment, rng, self.pre.sample_rate)
        if self.train:
            window = window.replace(
                mouths=window_mouths(window.frames, window.landmarks, self.pre.mouth_size)
            )
        return self._sample(window, row, labels, pseudo, spans)

    def _train_window(self, clip: Clip, rng: np.random.Generator) -> Window:
        lengths = np.array([len(f.track.timestamps) for f in clip.faces], dtype=np.float64)
        face_index = int(rng.choice(len(lengths), p=lengths / lengths.sum()))
        indices = track_indices(clip, clip.faces[face_index], self.pre)
        start = int(rng.integers(0, max(len(indices) - self.pre.clip_frames, 0) + 1))
        return track_window(clip, face_index, start, self.pre, indices, mouths=False)

    def _eval_window(self, clip: Clip, draw: int) -> Window:
        indices = track_indices(clip, clip.faces[0], self.pre)  # faces are ranked, largest first
        last = max(len(indices) - self.pre.clip_frames, 0)
        start = round(last * (draw + 1) / (self.windows_per_video + 1))
        return track_window(clip, 0, start, self.pre, indices)

    def _fake(
        self, window: Window, rng: np.random.Generator, item_index: int
    ) -> tuple[Window, dict[str, int], str]:
        from dfdetect.data.pseudofake import PseudoFaker

        if self._faker is None:
            self._faker = PseudoFaker(self.pseudofake, self.pre.sample_rate)

        def other_audio() -> np.ndarray | None:
            donors = [i for i in self._audio_donors if i != item_index]
            for i in rng.permutation(donors)[:4]:
                audio = clip_audio(self.clip(int(i)), self.pre.sample_rate)
                if audio is not None:
                    return audio
            return None

        source = clip_audio(self.clip(item_index), self.pre.sample_rate)
        faked, labels, kind = self._faker(window, rng, other_audio, source)
        return faked, labels, kind

    def _sample(
        self, window: Window, row: ManifestRow, labels: dict[str, int], pseudo: str, spans: Spans | None
    ) -> dict[str, Any]:
        sample: dict[str, Any] = window_tensors(window, self.pre)
        if spans is not None and labels["label"] != UNKNOWN:
            seg = span_segment_labels(window, spans, self.pre)  # where the manipulation is
            if not (seg == 1).any():  # the window misses every manipulated span: it is real footage
                audio = REAL if labels["audio_label"] != UNKNOWN else UNKNOWN
                labels = {"label": REAL, "video_label": REAL, "audio_label": audio}
        else:
            seg = segment_labels(labels["label"], window.n_real, self.pre)
        sample["label"] = torch.tensor(float(labels["label"]), dtype=torch.float32)
        sample["segment_labels"] = torch.from_numpy(seg)  # [K]
        sample["video_label"] = torch.tensor(float(labels["video_label"]), dtype=torch.float32)
        sample["audio_label"] = torch.tensor(float(labels["audio_label"]), dtype=torch.float32)
        sample["meta"] = {
            "path": row.path,
            "dataset": row.dataset,
            "method": pseudo or row.method,
            "pseudo": pseudo,
            "track_id": window.track_id,
            "t0": window.t0,
            "n_real": window.n_real,
        }
        return sample


def _entry_meta(entry: Path) -> dict[str, Any] | None:
    """The metadata of a cache entry (None when unreadable), reading only its small meta array."""
    try:
        return read_meta(entry)
    except CacheError as e:  # a corrupt or stale entry is reported and skipped, never fatal for a batch
        log.warning("%s (skipped)", e)
        return None


def _segments(row: ManifestRow, meta: dict[str, Any]) -> Spans | None:
    """Manipulated spans of a video: the manifest row's, else those its cache entry was prepared with."""
    if row.segments is not None:
        return row.segments
    stored = (meta.get("labels") or {}).get("segments")
    return None if stored is None else tuple((float(a), float(b)) for a, b in stored)


def _row_labels(row: ManifestRow, has_audio: bool) -> dict[str, int]:
    """label / video_label / audio_label of a row; -1 where unknown (a real video is real in both)."""
    video = row.video_label if row.video_label is not None else (0 if row.label == REAL else UNKNOWN)
    audio = row.audio_label if row.audio_label is not None else (0 if row.label == REAL else UNKNOWN)
    return {"label": row.label, "video_label": video, "audio_label": audio if has_audio else UNKNOWN}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch: tensors get a leading ``B`` axis, ``meta`` becomes a list of dicts."""
    if not samples:
        raise ValueError("collate got an empty list of samples")
    batch: dict[str, Any] = {k: torch.stack([s[k] for s in samples]) for k in TENSOR_KEYS if k in samples[0]}
    batch["meta"] = [s["meta"] for s in samples]
    return batch
