"""The direction of imports (../shared/DESIGN.md): no module imports a layer above its own, no cycles.

Every ``import`` of every module under ``src/dfdetect`` is read from its source (module level and
inside functions alike: a lazy import is still a dependency). Layers, lowest first:

0. ``_version, constants, types, config, registry, metrics, hub``: plain data, shared maths, weight files
1. ``io``                         2. ``faces``, ``models`` (models: torch/timm + layer 0 only)
3. ``checkpoint`` (rebuilds models), ``data``
4. ``train``, ``infer`` (siblings: neither imports the other)
5. ``eval``                       6. ``serve``, ``batch``, ``cli``, the package root

A module may import its own package and any lower layer (layer 0 modules may import each other); the
command modules of ``cli`` that train (``cli/train.py``) may import ``train``; ``serve``, ``batch`` and
``cli`` may import the package root (its public API).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dfdetect"
LAYERS = {
    "_version": 0, "constants": 0, "types": 0, "config": 0, "registry": 0, "metrics": 0, "hub": 0,
    "io": 1, "faces": 2, "models": 2, "checkpoint": 3, "data": 3,
    "train": 4, "infer": 4, "eval": 5, "serve": 6, "batch": 6, "cli": 6, "__init__": 6, "__main__": 6,
}  # fmt: skip
ALLOWED = {("cli.train", "train")}  # (importing module, imported part): the commands that train
CLIENTS = {"serve", "batch", "cli"}  # may import the package root: they use the public API
# Cycles known and not yet fixed; the test fails if a listed cycle is gone, to keep this honest.
KNOWN_CYCLES: set[tuple[str, str]] = set()
MODELS_MAY_IMPORT = {"models", "types", "constants", "registry", "config", "hub"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__") or "__init__"] = path
    return out


def _part(module: str) -> str:
    """The top-level part of a dotted module name inside dfdetect ("__init__" for the root)."""
    return module.split(".")[0] if module else "__init__"


def _imports(path: Path, module: str) -> set[str]:
    """dfdetect modules imported by the file at ``path`` (relative imports resolved)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                names = [".".join(["dfdetect", *base, *([node.module] if node.module else [])])]
            else:
                names = [node.module or ""]
            names += [f"{names[0]}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n.removeprefix("dfdetect.") for n in names if n == "dfdetect" or n.startswith("dfdetect.")}
    return {"" if n == "dfdetect" else n for n in found}


def _layer(module: str) -> int:
    part = _part(module)
    assert part in LAYERS, f"{part!r} has no layer: add it to LAYERS (and to DESIGN.md)"
    return LAYERS[part]


def _violations() -> list[str]:
    modules = _modules()
    bad = []
    for module, path in modules.items():
        own, level = _part(module), _layer(module)
        for target in _imports(path, module):
            part = _part(target)
            if part == own or (module, part) in ALLOWED or part not in LAYERS:
                continue
            if part == "__init__" and own in CLIENTS:
                continue
            if own == "models" and part not in MODELS_MAY_IMPORT:
                bad.append(f"{module} imports {target} (models import only torch/timm and layer 0)")
            elif (LAYERS[part] > level or (LAYERS[part] == level > 0)) and own not in (
                "__init__",
                "__main__",
                "cli",
            ):
                bad.append(f"{module} (layer {level}) imports {target} (layer {LAYERS[part]})")
            elif own in ("__init__", "__main__") and part not in ("_version", "infer", "cli", "checkpoint"):
                bad.append(f"the package root imports {target}: it holds the public API only")
    return bad


def test_no_module_imports_a_layer_above_it() -> None:
    assert _violations() == []


@pytest.mark.parametrize("part", ["infer", "eval", "__init__"])
def test_scanning_and_evaluating_never_import_train(part: str) -> None:
    for module, path in _modules().items():
        if _part(module) == part:
            assert not any(_part(t) == "train" for t in _imports(path, module)), f"{module} imports train"


def test_no_import_cycles() -> None:
    """No cycle among modules (through module-level imports or lazy ones)."""
    modules = _modules()
    graph = {m: {t for t in _imports(p, m) if t in modules} - {m} for m, p in modules.items()}
    for m in list(graph):  # "from dfdetect.x import y" names y: keep the module part only
        graph[m] = {t if t in modules else t.rpartition(".")[0] for t in graph[m]} & set(modules)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    package_inits = {m for m in modules if (SRC / Path(*m.split("."))).is_dir()}
    real = [c for c in cycles if not set(c) & package_inits]  # a package importing its own submodules
    known = {tuple(sorted(set(c))) for c in real} & KNOWN_CYCLES
    assert known == KNOWN_CYCLES, f"fixed: {KNOWN_CYCLES - known}; remove it from KNOWN_CYCLES"
    assert [c for c in real if tuple(sorted(set(c))) not in KNOWN_CYCLES] == [], f"import cycles: {real[:5]}"


def test_importing_the_package_is_light() -> None:
    """``import dfdetect`` and the CLI parser load neither torch, timm, PyAV nor scikit-learn."""
    import subprocess
    import sys

    code = (
        "import sys, dfdetect, dfdetect.cli; dfdetect.cli.build_parser();"
        "heavy = [m for m in ('torch', 'timm', 'av', 'sklearn', 'cv2') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded at import time: {out.stdout.strip()}"


def test_a_speech_model_loads_without_timm() -> None:
    """Loading the packaged speech model (AASIST-L, plain torch) imports no timm: ~2.5 s of start-up an
    audio-only scan does not need."""
    import subprocess
    import sys

    code = (
        "import sys, dfdetect; dfdetect.load_detector('aasist-l', device='cpu');print('timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
