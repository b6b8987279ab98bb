"""The Hub remote-code files may import only the standard library, torch, transformers and each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modeling_agqg"
REMOTE_CODE_FILES = ["configuration_agqg.py", "modeling_agqg.py", "pipeline_agqg.py", "prompt_learning_agqg.py"]
ALLOWED_THIRD_PARTY = {"torch", "transformers"}


def imported_modules(source: str) -> list[tuple[str, int]]:
    """Top-level names of every absolute import (`None`-level relative imports excluded), with line numbers."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def disallowed(source: str) -> list[str]:
    allowed = ALLOWED_THIRD_PARTY | set(sys.stdlib_module_names) | {"__future__"}
    return [f"line {line}: {name}" for name, line in imported_modules(source) if name not in allowed]


@pytest.mark.parametrize("filename", REMOTE_CODE_FILES)
def test_remote_code_imports_only_torch_transformers_stdlib(filename: str) -> None:
    assert disallowed((PACKAGE / filename).read_text()) == []


def test_relative_imports_stay_inside_the_flat_folder() -> None:
    for filename in REMOTE_CODE_FILES:
        for node in ast.walk(ast.parse((PACKAGE / filename).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and f"{node.module}.py" in REMOTE_CODE_FILES, (filename, node.module)


def test_the_check_catches_foreign_imports() -> None:
    source = "import numpy as np\nfrom PIL import Image\nimport os\nfrom torch import nn\nfrom . import x\n"
    assert disallowed(source) == ["line 1: numpy", "line 2: PIL"]
