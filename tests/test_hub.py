"""dfdetect.hub: one file out of a registry wheel, verified by the wheel's sha256, cached atomically."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from dfdetect.hub import HubError, WheelFile, hub_dir, wheel_file

MEMBER = "tinypkg/models/weights.bin"
PAYLOAD = bytes(range(256)) * 64


def _make_wheel(folder: Path) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tinypkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, PAYLOAD)
        archive.writestr("tinypkg/__init__.py", "")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DFDETECT_HUB", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_a_placed_wheel_gives_its_member_once_verified(hub):
    _, sha = _make_wheel(hub / "wheels")
    ref = WheelFile(package="tinypkg", version="0.1", sha256=sha, member=MEMBER)
    path = wheel_file(ref, download=False)
    assert path == hub_dir() / "tinypkg-0.1" / MEMBER
    assert path.read_bytes() == PAYLOAD
    (hub / "wheels" / "tinypkg-0.1-py3-none-any.whl").unlink()  # the cache alone answers now
    assert wheel_file(ref, download=False).read_bytes() == PAYLOAD
    assert not list(path.parent.glob(".*.tmp"))


def test_a_wheel_with_another_sha256_is_refused_and_nothing_is_written(hub):
    _make_wheel(hub / "wheels")
    ref = WheelFile(package="tinypkg", version="0.1", sha256="0" * 64, member=MEMBER)
    with pytest.raises(HubError, match="expected 0000"):
        wheel_file(ref, download=False)
    assert not (hub / "tinypkg-0.1").exists()


def test_a_missing_member_and_a_missing_wheel_say_what_to_do(hub):
    _, sha = _make_wheel(hub / "wheels")
    with pytest.raises(HubError, match="holds no tinypkg/other.bin"):
        wheel_file(WheelFile("tinypkg", "0.1", sha, "tinypkg/other.bin"), download=False)
    with pytest.raises(HubError, match=r"pip download otherpkg==2\.0 --no-deps"):
        wheel_file(WheelFile("otherpkg", "2.0", sha, MEMBER), download=False)


def test_an_installed_distribution_of_that_version_is_used_in_place(hub):
    import numpy

    member = "numpy/__init__.py"
    path = wheel_file(WheelFile("numpy", numpy.__version__, "unused", member), download=False)
    assert path.samefile(Path(numpy.__file__))
    with pytest.raises(HubError):  # another version is not the installed one
        wheel_file(WheelFile("numpy", "0.0.1", "unused", member), download=False)
