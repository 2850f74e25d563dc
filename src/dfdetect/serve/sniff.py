"""Recognise media files by their first bytes (magic numbers), never by the name the client sent."""

from __future__ import annotations

SNIFF_BYTES = 4096  # what :func:`sniff` needs at most (MPEG-TS looks at two 188-byte packets)

_MP4_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_MP4_IMAGE_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def _mp3_frame(head: bytes) -> bool:
    """A valid MPEG audio frame header (sync, version, layer, bitrate and rate indices) at offset 0."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def _iso(head: bytes) -> tuple[str, str] | None:
    """ISO base media (MP4, MOV, 3GP, M4A): an ``ftyp`` box, or a bare QuickTime atom."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _MP4_IMAGE_BRANDS:
            return None  # HEIF/AVIF stills: not decoded by the pipeline
        if brand in _MP4_AUDIO_BRANDS:
            return "audio", ".m4a"
        if brand == b"qt  ":
            return "video", ".mov"
        if brand.startswith(b"3g"):
            return "video", ".3gp"
        return "video", ".mp4"
    if head[4:8] in _QT_ATOMS:
        return "video", ".mov"
    return None


def sniff(head: bytes) -> tuple[str, str] | None:
    """What a file is, from its first bytes.

    Args:
        head: the first :data:`SNIFF_BYTES` bytes of the file (fewer if the file is shorter).

    Returns:
        ``(kind, extension)`` with kind ``video``, ``audio`` or ``image``, or None when the bytes are
        not a media container dfdetect can read (text, archives, executables, empty files...).
    """
    if len(head) < 4:
        return None
    iso = _iso(head)
    if iso is not None:
        return iso
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ("video", ".webm") if b"webm" in head[:64] else ("video", ".mkv")
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"AVI ": ("video", ".avi"), b"WAVE": ("audio", ".wav"), b"WEBP": ("image", ".webp")}.get(
            head[8:12]
        )
    if head.startswith(b"FLV\x01"):
        return "video", ".flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video", ".wmv"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "video", ".mpg"
    if head[0] == 0x47 and len(head) > 376 and head[188] == 0x47 and head[376] == 0x47:
        return "video", ".ts"
    if head.startswith(b"YUV4MPEG2"):
        return "video", ".y4m"
    if head.startswith(b"OggS"):
        return "audio", ".ogg"
    if head.startswith(b"fLaC"):
        return "audio", ".flac"
    if head.startswith(b"ID3") or _mp3_frame(head):
        return "audio", ".mp3"
    if head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS AAC
        return "audio", ".aac"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", ".jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", ".png"
    return None
