"""Multipart uploads streamed straight to disk, with size limits and content sniffing on the way.

Nothing is held whole in memory: each chunk of the request body goes to a ``.part`` file (mode 0600)
in the uploads folder as it arrives. A file over the limit stops the upload at once (413); a file whose
first bytes are not a media container is refused (415). Non-file fields are bounded in number, name and
size (only ``explain`` and ``uncertainty`` exist), the whole request in bytes and in time (408 when the
client stalls or trickles). Stored names are made by the server (``<job id><extension of the sniffed
type>``); the client's file name is kept for display only. On any error every file of the request is
removed.

The parser is python-multipart's streaming ``MultipartParser`` (also what Starlette's ``request.form``
runs on, with its limits of 8 headers of 4 KiB per part); ``request.form`` itself is not used because it
spools files to the system temporary folder with no per-file limit and cannot refuse a non-media file
from its first bytes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dfdetect.serve.errors import ApiError
from dfdetect.serve.jobs import new_job_id
from dfdetect.serve.sniff import SNIFF_BYTES, sniff

FILE_FIELDS = ("file", "files")
FORM_FIELDS = ("explain", "uncertainty")  # the only non-file fields an upload may send
_FIELDS = "'file' or 'files'"
_FORMATS = (
    "video MP4, MOV, MKV, WebM, AVI, FLV, WMV, MPEG-TS; audio WAV, MP3, M4A, FLAC, Ogg; "
    "images JPEG, PNG, WebP"
)


@dataclass(frozen=True)
class UploadLimits:
    """Bounds of one upload request (defaults are the CLI's)."""

    max_file_bytes: int = 200 * 1024 * 1024
    max_files: int = 20
    max_request_bytes: int = 512 * 1024 * 1024  # the whole body, all files and fields together
    max_fields: int = 8  # non-file fields
    max_field_bytes: int = 1024
    idle_timeout_s: float = 30.0  # longest wait for the next chunk of the body
    upload_timeout_s: float = 600.0  # longest time to receive the whole body


@dataclass
class ReceivedFile:
    id: str
    filename: str  # the client's name, cleaned, for display
    kind: str = ""
    ext: str = ""
    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    handle: IO[bytes] | None = None

    @property
    def stored(self) -> str:
        return f"{self.id}{self.ext}"


@dataclass
class Received:
    files: list[ReceivedFile]
    fields: dict[str, str]


def display_name(name: str, limit: int = 200) -> str:
    """The last path component of a client's file name, without control characters, at most ``limit``."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:limit] or "upload"


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB"


class _Receiver:
    """python-multipart callbacks writing file parts to ``folder``."""

    def __init__(self, folder: Path, limits: UploadLimits) -> None:
        self.folder, self.limits = folder, limits
        self.files: list[ReceivedFile] = []
        self.fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._hname, self._hvalue = b"", b""
        self._file: ReceivedFile | None = None
        self._field: tuple[str, bytearray] | None = None
        self._n_fields = 0

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_hname", self._hname + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_hvalue", self._hvalue + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._file, self._field = {}, None, None

    def _header_end(self) -> None:
        self._headers[self._hname.strip().lower()] = self._hvalue.strip()
        self._hname, self._hvalue = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            self._begin_field(name)
            return
        if name not in FILE_FIELDS:
            raise ApiError(400, "bad_field", f"send files in fields named 'file' or 'files', not {name!r}")
        if len(self.files) >= self.limits.max_files:
            raise ApiError(
                413,
                "too_many_files",
                f"at most {self.limits.max_files} files per request; send the rest after",
            )
        filename = display_name(options[b"filename"].decode("utf-8", "replace"))
        self._file = ReceivedFile(id=new_job_id(), filename=filename)
        fd = os.open(self.folder / f".{self._file.id}.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file.handle = os.fdopen(fd, "wb")
        self.files.append(self._file)

    def _begin_field(self, name: str) -> None:
        if name not in FORM_FIELDS:
            known = ", ".join(repr(f) for f in FORM_FIELDS)
            raise ApiError(
                400, "bad_field", f"unknown form field {name[:40]!r}; send files in {_FIELDS}, and {known}"
            )
        self._n_fields += 1
        if self._n_fields > self.limits.max_fields:
            raise ApiError(
                413, "too_many_fields", f"at most {self.limits.max_fields} form fields per request"
            )
        self._field = (name, bytearray())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._field is not None:
            self._field[1].extend(chunk)
            if len(self._field[1]) > self.limits.max_field_bytes:
                raise ApiError(400, "field_too_large", f"form field {self._field[0]!r} is too long")
            return
        f = self._file
        if f is None or f.handle is None:
            return
        f.size += len(chunk)
        if f.size > self.limits.max_file_bytes:
            raise ApiError(
                413,
                "too_large",
                f"{f.filename!r} is larger than the limit of {_mib(self.limits.max_file_bytes)} per file",
            )
        if not f.kind:
            f.head.extend(chunk)
            if len(f.head) >= SNIFF_BYTES:
                self._check(f)
            return
        f.handle.write(chunk)

    def _check(self, f: ReceivedFile) -> None:
        """Sniff the buffered head, then write it out."""
        found = sniff(bytes(f.head[:SNIFF_BYTES]))
        if found is None:
            what = "is empty" if not f.head else "is not a video, audio or image file dfdetect can read"
            raise ApiError(
                415,
                "unsupported_media",
                f"{f.filename!r} {what} (its content was checked, not its name); send one of: {_FORMATS}",
            )
        f.kind, f.ext = found
        assert f.handle is not None
        f.handle.write(f.head)
        f.head = bytearray()

    def _part_end(self) -> None:
        if self._field is not None:
            self.fields[self._field[0]] = self._field[1].decode("utf-8", "replace")
            self._field = None
            return
        f = self._file
        if f is not None and f.handle is not None:
            if not f.kind:
                self._check(f)
            f.handle.close()
            f.handle = None
        self._file = None

    def cleanup(self) -> None:
        for f in self.files:
            if f.handle is not None:
                f.handle.close()
            (self.folder / f".{f.id}.part").unlink(missing_ok=True)
            if f.ext:
                (self.folder / f.stored).unlink(missing_ok=True)


def _boundary(content_type: str) -> bytes:
    from python_multipart.multipart import parse_options_header

    ctype, options = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(
            415,
            "not_multipart",
            "upload files as multipart/form-data (fields named 'file' or 'files'), "
            f"not {content_type or 'an empty body'!r}",
        )
    return options[b"boundary"]


def check_request(headers: Any, folder: Path, limits: UploadLimits) -> bytes:
    """Refuse before reading the body: wrong content type (415), declared size too large (413),
    disk nearly full (507). Returns the multipart boundary."""
    boundary = _boundary(headers.get("content-type", ""))
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_request_bytes:
        raise ApiError(
            413,
            "too_large",
            f"the request ({_mib(int(length))}) is larger than the limit of {_mib(limits.max_request_bytes)}",
        )
    if shutil.disk_usage(folder).free < limits.max_file_bytes + 256 * 1024 * 1024:
        raise ApiError(507, "disk_full", "the server's data folder is almost full; retry later")
    return boundary


async def _timed(chunks: AsyncIterator[bytes], limits: UploadLimits) -> AsyncIterator[bytes]:
    """The body's chunks; 408 when the next one takes over ``idle_timeout_s`` or the whole body over
    ``upload_timeout_s`` (a client that stalls or trickles cannot hold a connection and a ``.part`` file)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.upload_timeout_s
    it = aiter(chunks)
    while True:
        left = deadline - loop.time()
        try:
            async with asyncio.timeout(max(0.0, min(limits.idle_timeout_s, left))):
                chunk = await anext(it)
        except StopAsyncIteration:
            return
        except TimeoutError:
            why = (
                f"no data for {limits.idle_timeout_s:g} s"
                if left > limits.idle_timeout_s
                else f"the upload took longer than {limits.upload_timeout_s:g} s"
            )
            raise ApiError(408, "timeout", f"{why}; the upload was dropped") from None
        yield chunk


async def receive(request: Any, folder: Path, limits: UploadLimits) -> Received:
    """Stream the multipart body of ``request`` (a Starlette request) into ``folder``.

    Raises:
        ApiError: 400 malformed, no file or a bad field, 408 too slow, 413 too large / too many files or
            fields, 415 not multipart or not media, 507 disk full. Files already written are removed first.
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser
    from starlette.requests import ClientDisconnect

    boundary = check_request(request.headers, folder, limits)
    receiver = _Receiver(folder, limits)
    parser = MultipartParser(boundary, receiver.callbacks())
    total = 0
    try:
        async for chunk in _timed(request.stream(), limits):
            total += len(chunk)
            if total > limits.max_request_bytes:
                limit = _mib(limits.max_request_bytes)
                raise ApiError(413, "too_large", f"the request is larger than {limit}")
            if chunk:
                parser.write(chunk)
        parser.finalize()
        if receiver._file is not None or receiver._field is not None:
            raise ApiError(400, "bad_multipart", "the multipart body ended in the middle of a part")
        if not receiver.files:
            raise ApiError(400, "no_files", f"send one or more files in multipart fields named {_FIELDS}")
        for f in receiver.files:
            os.replace(folder / f".{f.id}.part", folder / f.stored)
    except ApiError:
        receiver.cleanup()
        raise
    except MultipartParseError as e:
        receiver.cleanup()
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {e}") from None
    except ClientDisconnect:
        receiver.cleanup()
        raise ApiError(400, "disconnected", "the client closed the connection during the upload") from None
    except BaseException:
        receiver.cleanup()
        raise
    return Received(files=receiver.files, fields=receiver.fields)
