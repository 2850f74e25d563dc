"""Pooled frozen-encoder features of speech files, cached once per (file content, variant).

A head on a frozen encoder trains in seconds once the encoder has run; the encoder is the cost. So every
speech file is decoded once (16 kHz mono, the first ``max_seconds``), each requested variant made
(:func:`dfdetect.data.speech.variant`: codec round trips, telephone band, room; the same for both classes),
cut into the windows a scan cuts (:func:`dfdetect.data.speech.feature_windows`) and pooled by the encoder
(:func:`dfdetect.models.whisper_speech.window_features`): ``[W, 2D]`` float16 per file and variant, in
``<root>/<key[:2]>/<key>.npz``. The key is the sha1 of the file's bytes and of every setting that changes
the features (encoder, window, seconds read, variant, :data:`FEATURE_VERSION`), so an entry is never
stale and a renamed or copied file is not computed twice. Writes are atomic; an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dfdetect.constants import SAMPLE_RATE
from dfdetect.io.files import atomic_write

log = logging.getLogger(__name__)

FEATURE_VERSION = 1  # bump when the front end, pooling or variants change


def content_hash(path: str | os.PathLike) -> str:
    """sha1 of the file's bytes (hex)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


class FeatureCache:
    """Pooled encoder features per (file, variant), computed on first request (see the module docstring).

    Args:
        root: cache folder.
        encoder: Whisper encoder name (:data:`dfdetect.models.whisper_speech.ENCODER_WIDTH`).
        seconds: window length (the model's scan window).
        max_seconds: seconds decoded from each file.
        threads: encoder threads.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        encoder: str = "whisper-tiny-en",
        seconds: float = 10.0,
        max_seconds: float = 30.0,
        threads: int | None = None,
    ) -> None:
        self.root, self.encoder_name = Path(root), encoder
        self.seconds, self.max_seconds, self.threads = float(seconds), float(max_seconds), threads
        self._hashes: dict[str, str] = {}

    def key(self, path: str | os.PathLike, variant: str) -> str:
        """The entry's key: content hash + settings + variant."""
        path = os.fspath(path)
        if path not in self._hashes:
            self._hashes[path] = content_hash(path)
        text = f"{self._hashes[path]}|{self.encoder_name}|{self.seconds}|{self.max_seconds}|{variant}"
        return hashlib.sha1(f"{text}|v{FEATURE_VERSION}".encode()).hexdigest()

    def entry(self, path: str | os.PathLike, variant: str) -> Path:
        key = self.key(path, variant)
        return self.root / key[:2] / f"{key}.npz"

    def get(self, path: str | os.PathLike, variant: str = "clean", compute: bool = True) -> np.ndarray | None:
        """``[W, 2D]`` float32 features of ``path``'s ``variant``; None when not cached and ``compute`` is
        False. Raises what decoding raises (``UnreadableMediaError``) for a bad file."""
        entry = self.entry(path, variant)
        if entry.is_file():
            with np.load(entry) as data:
                return data["features"].astype(np.float32)
        if not compute:
            return None
        feats = self.compute(path, variant)
        atomic_write(entry, lambda tmp: np.savez(tmp, features=feats.astype(np.float16)), suffix=".npz")
        return feats

    def compute(self, path: str | os.PathLike, variant: str) -> np.ndarray:
        """Decode, make the variant, cut the windows, encode and pool (no caching)."""
        from dfdetect.data.speech import feature_windows
        from dfdetect.data.speech import variant as make_variant
        from dfdetect.io.audio import load_audio
        from dfdetect.models.whisper_speech import get_encoder, window_features

        audio, _ = load_audio(path, SAMPLE_RATE, max_duration=self.max_seconds)
        seed = int(self.key(path, variant)[:8], 16)
        audio = make_variant(audio, variant, seed) if audio.size else audio
        encoder = get_encoder(self.encoder_name, self.threads)
        windows = feature_windows(audio, self.seconds) if audio.size else [np.zeros(SAMPLE_RATE, np.float32)]
        return np.stack([window_features(w, encoder) for w in windows])


def extract_features(
    cache: FeatureCache, jobs: Iterable[tuple[str, str]], progress: bool = True
) -> dict[tuple[str, str], np.ndarray]:
    """Features of every ``(path, variant)`` job (computed where not cached; a bad file is logged and left
    out). A tqdm bar counts the jobs; returns ``{(path, variant): [W, 2D]}``."""
    from tqdm import tqdm

    jobs = list(dict.fromkeys(jobs))
    out, failed = {}, 0
    for path, name in tqdm(
        jobs, desc="speech features", unit="clip", disable=not progress, dynamic_ncols=True
    ):
        try:
            out[(path, name)] = cache.get(path, name)
        except Exception as e:  # noqa: BLE001 - a bad file never stops a run
            failed += 1
            log.warning("no features for %s (%s): %s: %s", path, name, type(e).__name__, e)
    log.info("speech features: %d done, %d failed", len(out), failed)
    return out
