"""House rules that keep the code easy to change (../shared/DESIGN.md): no function longer than 60 lines,
no module longer than 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dfdetect"
MAX_FUNCTION_LINES, MAX_FILE_LINES = 60, 500


def test_no_function_grows_past_60_lines_nor_a_module_past_500():
    long_files, long_functions = [], []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(SRC)
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long_files, f"split these modules (≤ {MAX_FILE_LINES} lines): {long_files}"
    assert not long_functions, f"split these functions (≤ {MAX_FUNCTION_LINES} lines): {long_functions}"
