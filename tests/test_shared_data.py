"""Tests that need ../shared: one skip line without it, a failure when CI requires it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

CONFTEST = """
from pathlib import Path

from tests.shared_data import SharedData


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_shared(*paths): reads ../shared")
    config.pluginmanager.register(SharedData(Path(__file__).parent / "shared"), "shared-data")
"""

TESTS = """
from pathlib import Path

import pytest

QUESTIONS = Path(__file__).parent / "shared" / "eval" / "q.jsonl"


@pytest.fixture(scope="module")
def questions():
    return QUESTIONS.read_text()  # a module fixture reading the data: never reached without it


@pytest.mark.needs_shared("eval/q.jsonl")
def test_one(questions):
    assert questions == "x"


@pytest.mark.needs_shared("eval/q.jsonl")
def test_two(questions):
    assert questions


@pytest.mark.slow
@pytest.mark.needs_shared
def test_three():
    assert (QUESTIONS.parent).is_dir()


def test_plain():
    pass
"""


def run_pytest(folder: Path, require: bool) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("TANYA_REQUIRE_SHARED", "PYTEST_ADDOPTS")
    }
    env["PYTHONPATH"] = str(ROOT)
    if require:
        env["TANYA_REQUIRE_SHARED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n", "utf-8")
    (tmp_path / "conftest.py").write_text(CONFTEST, "utf-8")
    (tmp_path / "test_uses_shared.py").write_text(TESTS, "utf-8")
    return tmp_path


def test_without_shared_the_tests_that_need_it_skip_under_one_reason_line(suite):
    result = run_pytest(suite, require=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "1 passed, 3 skipped" in out
    skip_lines = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skip_lines) == 1, out
    assert skip_lines[0].startswith("SKIPPED [3] ")
    assert f"{suite / 'shared'} is missing" in skip_lines[0]
    assert "needs the evaluation data in ../shared beside the checkout" in skip_lines[0]
    assert "tests marked needs_shared skip" in out  # the header says so before the run


def test_with_the_ci_variable_a_missing_shared_fails_the_run(suite):
    result = run_pytest(suite, require=True)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "1 passed, 3 errors" in out
    assert "skipped" not in out
    assert "TANYA_REQUIRE_SHARED is set" in out
    assert "fail (TANYA_REQUIRE_SHARED is set)" in out


@pytest.mark.parametrize("require", [False, True])
def test_with_shared_the_tests_run(suite, require):
    (suite / "shared" / "eval").mkdir(parents=True)
    (suite / "shared" / "eval" / "q.jsonl").write_text("x", "utf-8")
    result = run_pytest(suite, require=require)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout and "skipped" not in result.stdout


def test_a_missing_file_is_named(suite):
    (suite / "shared" / "eval").mkdir(parents=True)
    result = run_pytest(suite, require=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 2 skipped" in result.stdout  # test_three needs the folder only
    missing = suite / "shared" / "eval" / "q.jsonl"
    assert "SKIPPED [2] " in result.stdout and f"{missing} is missing" in result.stdout


def test_the_tests_that_read_shared_are_marked():
    """Every test module that names the evaluation data marks its tests (a test reading it
    unmarked would error, not skip, without ../shared)."""
    unmarked = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        text = path.read_text("utf-8")
        if path.name == "test_shared_data.py":
            continue
        reads = any(name in text for name in ("EVAL_DIR /", "FACQA /", "IDKMRC /"))
        if reads and "needs_shared" not in text:
            unmarked.append(path.name)
    assert unmarked == []
