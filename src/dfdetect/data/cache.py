"""The prepared cache: one ``.npz`` file per video holding a :class:`~dfdetect.types.Clip`.

Entries are written atomically (temporary file + rename), so a half-written entry is never read.
Arrays are stored uncompressed so that reading a clip is a memory copy, not a decode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dfdetect.io.files import atomic_write
from dfdetect.types import AudioStatus, Clip, FaceCrops, FaceTrack, MediaKind, VideoInfo

CACHE_VERSION = 1
_TRACK_ARRAYS = ("timestamps", "boxes", "landmarks", "scores", "detected")
_CROP_ARRAYS = ("crops", "crop_boxes", "crop_landmarks", "blur")


class CacheError(RuntimeError):
    """A cache entry is missing, unreadable or from an incompatible version."""


def cache_key(video_path: str | os.PathLike) -> str:
    """Stable key of a video: sha1 of its full path (paths are the manifest's unique key)."""
    return hashlib.sha1(str(video_path).encode("utf-8")).hexdigest()[:20]


def entry_path(cache_dir: str | os.PathLike, video_path: str | os.PathLike) -> Path:
    key = cache_key(video_path)
    return Path(cache_dir) / key[:2] / f"{key}.npz"


def has_entry(cache_dir: str | os.PathLike, video_path: str | os.PathLike) -> bool:
    return entry_path(cache_dir, video_path).is_file()


def _arrays(clip: Clip, labels: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"audio": np.asarray(clip.audio, dtype=np.float32)}
    for i, face in enumerate(clip.faces):
        for name in _TRACK_ARRAYS:
            arrays[f"f{i}_{name}"] = np.asarray(getattr(face.track, name))
        for name in _CROP_ARRAYS:
            arrays[f"f{i}_{name}"] = np.asarray(getattr(face, name))
    meta = {
        "version": CACHE_VERSION,
        "path": clip.path,
        "info": dataclasses.asdict(clip.info),
        "n_faces": len(clip.faces),
        "track_ids": [face.track.track_id for face in clip.faces],
        "sample_rate": clip.sample_rate,
        "audio_status": str(clip.audio_status),
        "speech": [list(s) for s in clip.speech],
        "params": clip.params,
        "kind": str(clip.kind),
    }
    if labels:
        meta["labels"] = labels
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return arrays


def write_entry(cache_dir: str | os.PathLike, clip: Clip, labels: dict[str, Any] | None = None) -> Path:
    """Write ``clip`` to its entry in ``cache_dir`` atomically; returns the entry path.

    ``labels`` (JSON-ready) go into the entry's metadata: the manifest's ``segments`` (manipulated spans in
    seconds) of datasets that localise their fakes, so an entry keeps them beside its frames.
    """
    path = entry_path(cache_dir, clip.path)
    arrays = _arrays(clip, labels)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write, suffix=".npz")


def read_entry(cache_dir: str | os.PathLike, video_path: str | os.PathLike) -> Clip:
    """Read the entry of ``video_path``. Raises :class:`CacheError` if absent or unreadable."""
    path = entry_path(cache_dir, video_path)
    if not path.is_file():
        raise CacheError(f"no cache entry for {video_path} in {cache_dir}: run `dfdetect prepare` first")
    return read_entry_file(path)


def read_entry_file(path: str | os.PathLike, mmap: bool = False) -> Clip:
    """Read the cache entry at ``path``.

    With ``mmap=True`` the face crops are memory-mapped in place (entries are uncompressed ``.npz``
    files, so each array is a plain ``.npy`` inside the zip): only the frames used are read from disk.
    An entry that cannot be mapped is read in full.
    """
    if mmap:
        try:
            return _read(Path(path), mapped=True)
        except Exception:  # compressed, truncated or old entry: the full read says what is wrong
            pass
    try:
        return _read(Path(path), mapped=False)
    except CacheError:
        raise
    except Exception as e:  # corrupt zip, truncated file, ...
        raise CacheError(f"unreadable cache entry {path}: {e}; delete it and run prepare again") from e


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of the cache entry file at ``path`` (path, info, n_faces, track_ids, sample_rate,
    audio_status, speech, params, kind, and ``labels`` when prepare had some), reading only its small
    ``meta`` array.

    Raises:
        CacheError: missing, unreadable, or from another cache version.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return _meta(z, path)
    except CacheError:
        raise
    except Exception as e:  # missing, corrupt zip, truncated file, ...
        raise CacheError(f"unreadable cache entry {path}: {e}; delete it and run prepare again") from e


def _meta(z: Any, path: Path) -> dict[str, Any]:
    meta = json.loads(bytes(z["meta"]).decode("utf-8"))
    if meta.get("version") != CACHE_VERSION:
        raise CacheError(
            f"cache entry {path} has version {meta.get('version')}, expected {CACHE_VERSION}; "
            "run prepare again"
        )
    return meta


def _read(path: Path, mapped: bool) -> Clip:
    with np.load(path, allow_pickle=False) as z:
        meta = _meta(z, path)
        data = {k: z[k] for k in z.files if k != "meta" and not (mapped and k.endswith("_crops"))}
    if mapped:
        with zipfile.ZipFile(path) as zf:
            members = {
                i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith("_crops.npy")
            }
        data.update({name: _npy_memmap(path, info) for name, info in members.items()})
    faces = []
    for i, track_id in enumerate(meta["track_ids"]):
        track = FaceTrack(track_id=track_id, **{n: data[f"f{i}_{n}"] for n in _TRACK_ARRAYS})
        faces.append(FaceCrops(track=track, **{n: data[f"f{i}_{n}"] for n in _CROP_ARRAYS}))
    return Clip(
        path=meta["path"],
        info=VideoInfo(**meta["info"]),
        faces=faces,
        audio=data["audio"],
        sample_rate=meta["sample_rate"],
        audio_status=AudioStatus(meta["audio_status"]),
        speech=[tuple(s) for s in meta["speech"]],
        params=meta["params"],
        kind=MediaKind(meta.get("kind", MediaKind.VIDEO)),
    )


def _npy_memmap(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """Map the ``.npy`` member ``info`` of the (stored, uncompressed) zip at ``path`` read-only."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{info.filename} is compressed")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    if dtype.hasobject or int(np.prod(shape)) == 0:
        raise ValueError("not mappable")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
