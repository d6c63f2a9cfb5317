"""The package layout: imports go one way (pyproject's import-linter contracts), every module is
in a layer, and nothing imports the bot.py command line."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tests.conftest import ROOT

CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]
# In a process of its own: lint_imports changes sys.path and the logging set-up.
LINT = "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))"


def test_imports_go_one_way():
    proc = subprocess.run(
        [sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_module_is_in_a_layer():
    for contract in CONTRACTS["contracts"]:
        if contract["type"] != "layers" or "containers" not in contract:
            continue
        named = {name for layer in contract["layers"] for name in re.split(r"[|:]", layer)}
        (container,) = contract["containers"]
        folder = ROOT.joinpath(*container.split("."))
        present = {p.stem for p in folder.glob("*.py") if p.name != "__init__.py"}
        present |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        missing = present - {name.strip() for name in named}
        assert not missing, f"{container}: add {sorted(missing)} to a layer in pyproject.toml"


def test_nothing_imports_the_command_line():
    for path in [*ROOT.joinpath("retrieval").rglob("*.py"), *ROOT.joinpath("chat").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert "bot" not in {name.split(".")[0] for name in names}, path
