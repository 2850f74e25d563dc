"""Content sniffing: real media is recognised by its bytes, whatever its name; the rest is refused."""

from __future__ import annotations

from dfdetect.serve.sniff import SNIFF_BYTES, sniff
from tests.conftest import MEDIA
from tests.malformed import make_malformed_corpus


def _head(path) -> bytes:
    with open(path, "rb") as f:
        return f.read(SNIFF_BYTES)


def test_real_media_is_recognised() -> None:
    videos = sorted((MEDIA / "real").glob("*.mp4")) + sorted((MEDIA / "fake").glob("*.mp4"))
    assert videos and all(sniff(_head(p)) == ("video", ".mp4") for p in videos)
    assert {sniff(_head(p))[0] for p in (MEDIA / "images").iterdir()} == {"image"}
    assert sniff(_head(MEDIA / "videoretalking_audio_1.wav")) == ("audio", ".wav")


def test_non_media_is_refused(tmp_path) -> None:
    corpus = make_malformed_corpus(tmp_path)
    for name in ("zero_byte", "random_bytes", "text"):
        assert sniff(_head(corpus[name])) is None, name
    assert sniff(_head(corpus["truncated"])) == ("video", ".mp4"), "a cut MP4 is media; the scan says why"
    assert sniff(_head(corpus["audio_only"]))[1] in (".mp4", ".m4a")
    for blob in (
        b"%PDF-1.7\n",
        b"PK\x03\x04zip",
        b"\x7fELF\x02\x01",
        b"<html><body>",
        b"GIF89a",
        b"MZ\x90\x00",
    ):
        assert sniff(blob + bytes(64)) is None, blob
    assert sniff(b"\x1a\x45\xdf\xa3" + b"\x00" * 20 + b"webm") == ("video", ".webm")
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == ("video", ".avi")
    assert sniff(b"ID3\x04\x00" + bytes(20)) == ("audio", ".mp3")
    assert sniff(b"\x00\x00\x00\x1cftypheic" + bytes(20)) is None, "HEIF stills are not decoded"
