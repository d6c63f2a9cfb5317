"""Every command the README shows exists and takes the flags it is shown with."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Commands of the system, not of this project, that the README may show.
OUTSIDE = {"git", "cd", "export", "source"}


class _Parsed(Exception):
    """Raised in place of running a command once its arguments parsed."""


def _readme_commands() -> list[str]:
    """Each line of the README's sh blocks, and each inline `make …` or `.venv/bin/…`."""
    text = README.read_text("utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                commands.append(line.strip())
    commands += re.findall(r"`((?:make [a-z]|\.venv/bin/[a-z])[^`]*)`", text)
    return commands


def _scripts() -> dict[str, str]:
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?:^\[|\Z)", pyproject, re.M | re.S)
    return dict(re.findall(r'^([\w-]+) = "([\w.:]+)"', section.group(1), re.M))


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text("utf-8")
    return set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))


def _entry_point(words: list[str]):
    """The function a `.venv/bin/…` command runs, and the arguments it gets."""
    name, args = Path(words[0]).name, words[1:]
    if name in ("python", "python3"):
        if args[:1] == ["-m"]:
            return importlib.import_module(args[1]).main, args[2:]
        if args[:1] == ["bot.py"]:
            return importlib.import_module("bot").main, args[1:]
        pytest.fail(f"{' '.join(words)}: not a module or bot.py")
    scripts = _scripts()
    if name not in scripts:
        pytest.fail(f"{name} is not a command of this project (pyproject.toml's [project.scripts])")
    module, function = scripts[name].split(":")
    return getattr(importlib.import_module(module), function), args


def _check_parses(words: list[str], monkeypatch) -> None:
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    function, args = _entry_point(words)
    try:
        function(args)
    except _Parsed:
        return
    except SystemExit as exc:
        pytest.fail(f"{shlex.join(words)}: its arguments are refused (exit {exc.code})")
    pytest.fail(f"{shlex.join(words)}: ran without parsing arguments")


def _make_recipe(words: list[str]) -> list[list[str]]:
    """The project's commands `make -n` would run for a make command line."""
    target = next((w for w in words[1:] if "=" not in w), "")
    assert target in _make_targets(), f"{shlex.join(words)}: no target {target!r} in the Makefile"
    shown = subprocess.run(
        [*words, "-n"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, f"{shlex.join(words)} -n: {shown.stderr}"
    return [
        shlex.split(line) for line in shown.stdout.splitlines() if line.startswith(".venv/bin/t")
    ]


SHELL = {">", ">>", "<", "|", "&&", "||", ";", "2>", "2>&1"}


def _command_words(command: str) -> list[str]:
    """The command's own words: a redirection or pipe (written apart) and what follows are
    the shell's."""
    words = shlex.split(command, comments=True)
    ends = [i for i, word in enumerate(words) if word in SHELL]
    return words[: ends[0]] if ends else words


@pytest.mark.parametrize("command", _readme_commands())
def test_every_readme_command_exists_and_parses_its_flags(command, monkeypatch):
    words = _command_words(command)
    if words[0] in OUTSIDE:
        return
    if words[0] == "make":
        for recipe in _make_recipe(words):
            _check_parses(recipe, monkeypatch)
        return
    assert words[0].startswith(".venv/bin/"), f"{command}: write .venv/bin/ or a make target"
    _check_parses(words, monkeypatch)


def test_the_readme_shows_commands():
    commands = _readme_commands()
    assert any(c.startswith("make ask") for c in commands)
    assert any(c.startswith(".venv/bin/tanya-add") for c in commands)


def test_a_wrong_flag_is_caught(monkeypatch):
    with pytest.raises(pytest.fail.Exception, match="refused"):
        _check_parses([".venv/bin/tanya-add", "--no-such-flag"], monkeypatch)
    with pytest.raises(pytest.fail.Exception, match="not a command"):
        _check_parses([".venv/bin/tanya-nothing"], monkeypatch)
    with pytest.raises(AssertionError, match="no target"):
        _make_recipe(["make", "no-such-target"])
