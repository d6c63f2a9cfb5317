"""The console's commands, its length message and how it wraps quotes to the terminal."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import sys

import pytest

from chat import console
from retrieval.answering.answer import MAX_QUESTION_CHARS, Answerer, Quote
from retrieval.config import UiConfig

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def asked(tiny_answerer, monkeypatch) -> list[str]:
    """The questions the console asked the answerer (a command is never one of them)."""
    questions: list[str] = []
    real = tiny_answerer.ask

    def ask(question, history=()):
        questions.append(question)
        return real(question, history)

    monkeypatch.setattr(tiny_answerer, "ask", ask)
    return questions


def in_english(answerer: Answerer) -> Answerer:
    answerer.config = dataclasses.replace(answerer.config, ui=UiConfig(language="en"))
    return answerer


def type_lines(monkeypatch, capsys, answerer: Answerer, *lines: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    code = console.run_console(answerer)
    return code, capsys.readouterr().out


def test_help_lists_the_commands(tiny_answerer, asked, monkeypatch, capsys):
    code, out = type_lines(monkeypatch, capsys, in_english(tiny_answerer), "/help")
    assert code == 0 and asked == []
    assert "Commands:" in out
    for command in ("/sources", "/help", ":q, exit, quit", "Ctrl-D"):
        assert command in out
    assert "do not seem to cover" not in out


def test_help_in_indonesian(tiny_answerer, asked, monkeypatch, capsys):
    _, out = type_lines(monkeypatch, capsys, tiny_answerer, "/help")
    assert "Perintah:" in out and "/sources" in out and "keluar" in out


@pytest.mark.parametrize("line", ["/foo", "/FOO bar", ":sumber", "/sourcess"])
def test_an_unknown_command_is_not_asked(line, tiny_answerer, asked, monkeypatch, capsys):
    _, out = type_lines(monkeypatch, capsys, in_english(tiny_answerer), line, "harga cabai")
    assert asked == ["harga cabai"]
    assert f"unknown command {line.split()[0]}, see /help" in out


def test_an_unknown_command_in_indonesian(tiny_answerer, asked, monkeypatch, capsys):
    _, out = type_lines(monkeypatch, capsys, tiny_answerer, "/foo")
    assert asked == [] and "perintah /foo tidak dikenal, lihat /help" in out


@pytest.mark.parametrize("word", ["exit", "quit", "EXIT", " quit ", ":q", "/quit", "/exit"])
def test_exit_and_quit_leave(word, tiny_answerer, asked, monkeypatch, capsys):
    code, _ = type_lines(monkeypatch, capsys, tiny_answerer, word, "harga cabai")
    assert code == 0
    assert asked == []  # the line after it was never read


def test_a_question_that_starts_with_exit_is_asked(tiny_answerer, asked, monkeypatch, capsys):
    type_lines(monkeypatch, capsys, tiny_answerer, "exit poll pilkada", "quit rokok?")
    assert asked == ["exit poll pilkada", "quit rokok?"]


@pytest.mark.parametrize(
    "language, expected",
    [
        ("en", f"too long ({MAX_QUESTION_CHARS + 1} characters); at most {MAX_QUESTION_CHARS} "),
        ("id", f"({MAX_QUESTION_CHARS + 1} karakter); paling banyak {MAX_QUESTION_CHARS} karakter"),
    ],
)
def test_the_length_message_names_the_limit(language, expected, tiny_answerer, monkeypatch, capsys):
    tiny_answerer.config = dataclasses.replace(tiny_answerer.config, ui=UiConfig(language))
    just_right = "k" * MAX_QUESTION_CHARS
    too_long = "k" * (MAX_QUESTION_CHARS + 1)
    _, out = type_lines(monkeypatch, capsys, tiny_answerer, just_right, too_long)
    assert out.count("characters") + out.count("karakter") == 2  # the message, said once
    assert expected in out


# Wrapping

WORDS = (
    "Harga cabai rawit di Pasar Minggu naik menjadi Rp80.000 per kilogram pada Senin "
    "sementara pedagang menyebut pasokan dari Jawa Tengah berkurang karena hujan deras "
    "yang mengguyur sentra produksi ekonomi selama sepekan terakhir."
)


def long_quote(url: str | None = None) -> Quote:
    answer = WORDS.index("Rp80.000")
    return Quote(
        text=WORDS,
        doc_id="pasar",
        title="Harga Cabai Naik di Pasar Minggu",
        paragraph=2,
        start=0,
        end=len(WORDS),
        highlight_start=0,
        highlight_end=len(WORDS),
        score=0.9,
        url=url,
        answer_start=answer,
        answer_end=answer + len("Rp80.000 per kilogram"),
    )


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("width", [30, 44, 79])
def test_quotes_wrap_at_word_boundaries_with_a_hanging_indent(color, width):
    shown = console.format_quote(long_quote("https://example.org/pasar"), color, width=width)
    lines = ANSI.sub("", shown).splitlines()
    *body, source_start = [i for i, line in enumerate(lines) if not line.startswith("    ")]
    assert body == [0]  # one quote line, continued at the hanging indent
    assert all(len(line) <= width for line in lines if "https://" not in line)
    assert all(line.startswith("    ") and line[4] != " " for line in lines[1:source_start])
    words = " ".join(line.strip() for line in lines[:source_start]).split(" ")
    assert words == WORDS.split()  # no word cut ("eko / nomi"), none lost
    assert lines[source_start].startswith("  — Harga Cabai Naik")
    assert lines[-1].strip().endswith("<https://example.org/pasar>")  # the address whole


def test_wrapping_keeps_the_bold_answer_and_resets_at_each_line_end():
    shown = console.format_quote(long_quote(), color=True, width=30)
    bold = re.findall(r"\x1b\[1m(.*?)\x1b\[0m", shown)
    assert " ".join(bold) == "Rp80.000 per kilogram"
    for line in shown.splitlines():
        assert line.count("\x1b[0m") == len(re.findall(r"\x1b\[[13]m", line))


def test_no_width_means_no_wrapping():
    shown = console.format_quote(long_quote(), color=False)
    assert shown.splitlines()[0] == "  " + WORDS


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_answers_wrap_to_the_terminal_width_and_not_in_a_pipe(tiny_answerer, monkeypatch):
    monkeypatch.setattr(console.shutil, "get_terminal_size", lambda: os.terminal_size((40, 24)))
    question = "Berapa harga cabai rawit di Pasar Minggu?"
    terminal, pipe = Terminal(), io.StringIO()
    console.ask_once(tiny_answerer, question, as_json=False, out=terminal)
    console.ask_once(tiny_answerer, question, as_json=False, out=pipe)
    wrapped = ANSI.sub("", terminal.getvalue()).splitlines()
    assert max(map(len, wrapped)) <= 39
    assert any(line.startswith("    ") for line in wrapped)
    assert max(map(len, pipe.getvalue().splitlines())) > 40
    assert " ".join(pipe.getvalue().split()) == " ".join(ANSI.sub("", terminal.getvalue()).split())
