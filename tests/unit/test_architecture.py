"""The architecture contract (``[tool.importlinter]`` in pyproject.toml), run as CI runs it.

``fastws`` never imports ``exchanges``; ``exchanges.binance`` and ``exchanges.mexc``
never import each other. The real tree keeps both contracts, and a copy of the tree
with one forbidden import breaks the contract that forbids it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the packages under ``root`` with ``root``'s pyproject.toml."""
    assert LINT_IMPORTS is not None, "lint-imports is not installed (the test extra has import-linter)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_tree_keeps_the_contracts() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def _copy_tree(tmp_path: Path) -> Path:
    # The packages as imported: the checkout's, or an installed wheel's (CI
    # runs the suite against both; the tests' copy holds no package).
    import exchanges
    import fastws
    for package in (fastws, exchanges):
        source = Path(package.__file__).parent
        shutil.copytree(source, tmp_path / package.__name__, ignore=shutil.ignore_patterns(
            "*.so", "*.c", "*.pyx", "*.pxd", "__pycache__", "build"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


# A fastws module importing an exchange also joins the two exchanges through fastws
# (the independence contract counts indirect imports): both contracts break.
@pytest.mark.parametrize("module, line, contract, summary", [
    ("fastws/recording.py", "import exchanges.binance.streams", "fastws names no exchange", "0 kept, 2 broken"),
    ("exchanges/binance/control.py", "from exchanges.mexc import channels", "an exchange never imports another",
     "1 kept, 1 broken"),
])
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, contract: str,
                                                summary: str) -> None:
    root = _copy_tree(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n{line}  # the violation under test\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
    assert f"Contracts: {summary}." in result.stdout
    assert module.replace("/", ".")[:-3] in result.stdout
