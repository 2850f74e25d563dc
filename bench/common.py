"""What every bench script shares: where the repository and the shared media are, and one timer.

Imported by the bench scripts (run as ``python bench/<name>.py``, so this folder is on sys.path).
``$DFDETECT_SHARED`` moves the shared folder (default ``../shared`` next to the repository),
``$DFDETECT_MEDIA`` its media folder alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFDETECT_SHARED", ROOT.parent / "shared"))
MEDIA = Path(os.environ.get("DFDETECT_MEDIA", SHARED / "media"))
DATA = SHARED / "data"
WEIGHTS = ROOT / "src" / "dfdetect" / "weights"


class Timing(NamedTuple):
    """The best (least wall time) of one or more runs: its wall and CPU seconds and what it returned."""

    wall: float
    cpu: float
    result: Any


def measure(fn: Callable[[], Any], repeats: int = 1) -> Timing:
    """Call ``fn()`` ``repeats`` times (at least once); the run with the least wall time (the first of
    equals), with the CPU seconds (``time.process_time``, this process only) of that run."""
    best = Timing(float("inf"), float("inf"), None)
    for _ in range(max(1, repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best.wall:
            best = Timing(wall, cpu, result)
    return best
