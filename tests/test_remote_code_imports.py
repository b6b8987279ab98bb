"""The Hub remote-code files may import only the standard library, torch, transformers and each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from modeling_agqg.modeling_agqg import REMOTE_CODE_FILES

PACKAGE = Path(__file__).resolve().parents[1] / "modeling_agqg"
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


def test_the_package_folder_holds_only_remote_code() -> None:
    """The top level of `modeling_agqg/` is what travels with the weights (plus the package's own `__init__` and
    `__main__`); the local library lives in `modeling_agqg/tools/`."""
    top_level = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}
    assert top_level == set(REMOTE_CODE_FILES)


def _modules_after(code: str) -> set[str]:
    import json
    import subprocess

    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(completed.stdout.strip().splitlines()[-1]))


def test_import_and_help_stay_light() -> None:
    """`import modeling_agqg` and `agqg --help` import neither torch nor the scoring stack; the model classes
    do not pull in scoring, PIL-heavy tools or pandas."""
    bare = _modules_after("import modeling_agqg")
    assert not {"torch", "transformers", "PIL", "modeling_agqg.tools.scoring"} & bare
    help_modules = _modules_after(
        "import contextlib, io\nfrom modeling_agqg.tools.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])"
    )
    assert not {"torch", "transformers", "modeling_agqg.tools.scoring", "hub_cards.publish"} & help_modules
    model_modules = _modules_after("from modeling_agqg import AGQGForImageQualityAssessment")
    assert "modeling_agqg.modeling_agqg" in model_modules
    assert not {"modeling_agqg.tools.scoring", "pandas", "matplotlib"} & model_modules
