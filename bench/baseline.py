"""The scan core as it was before the speed work of issues 9 and 10, for before/after timings in one process.

Imported by ``bench/speech.py`` and ``bench/scan.py`` (run as ``python bench/<name>.py``, so this folder is
on sys.path). "Before" is rebuilt from the current tree, in the same process, so that both are timed on the
same machine load:

- AASIST(-L): the model module of the baseline commit (``git show REV:src/dfdetect/models/aasist.py``),
  loaded under another name with the same weights;
- VAD: silero-vad's per-frame TorchScript loop (what ``io.audio`` ran before) instead of the batched ONNX
  model;
- torch threads: 1 (importing silero-vad used to set 1 thread for the whole process, so every scan after
  the first ran its models on one thread);
- the frame model's weights in the default (NCHW) memory order.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import ROOT

BASELINE = "049f034"  # the last commit before the speed work


def old_aasist(name: str, rev: str = BASELINE) -> Any:
    """The ``name`` model (``aasist`` / ``aasist-l``) built by the AASIST module of ``rev``, official
    weights loaded strictly, eval mode."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/dfdetect/models/aasist.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="dfdetect-baseline-"))
    path = folder / f"aasist_{rev}.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(f"_aasist_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    from dfdetect.models import aasist

    module.WEIGHTS_DIR = aasist.WEIGHTS_DIR
    return module.build_aasist(name, pretrained=True)


def nchw(model: Any) -> Any:
    """A copy of ``model`` with its weights in the default (NCHW) memory order."""
    import copy

    import torch

    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def before(models: dict[Any, Any]) -> Iterator[None]:
    """Within the block: ``obj.model = old`` for each ``{obj: old}``, the TorchScript VAD, 1 torch thread."""
    import torch

    from dfdetect.io import audio as io_audio

    saved = {obj: obj.model for obj in models}
    threads, has_ort = torch.get_num_threads(), io_audio._has_onnxruntime
    try:
        for obj, old in models.items():
            obj.model = old
        io_audio._has_onnxruntime = lambda: False
        torch.set_num_threads(1)
        yield
    finally:
        for obj, model in saved.items():
            obj.model = model
        io_audio._has_onnxruntime = has_ort
        torch.set_num_threads(threads)
