"""Article text that tries to drive the terminal is shown, not obeyed."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from chat import console
from retrieval.answering.answer import Answerer
from retrieval.index.reindex import main as reindex_main
from retrieval.index.reindex import reindex
from tests.conftest import FakeEmbedder, make_config

HOSTILE = (
    "Judul \x1b]0;pwned\x07Berita\n\n"
    "Harga cabai \x1b[2J\x1b[31mnaik\x1b[0m di pasar\r tiba-tiba \u202egnirts\u202c. "
    "Pedagang \x9b31m mengeluh\x08\x08 soal cabai.\n"
)
# What a terminal would act on: every escape, control and bidi character but newline and tab.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
OWN_STYLES = re.compile(r"\x1b\[[013]m")  # the bold/italic/reset the console adds itself


@pytest.fixture
def hostile_answerer(tmp_path) -> Answerer:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "jahat.txt").write_text(HOSTILE, encoding="utf-8")
    config = make_config(corpus, tmp_path / "ix" / ".index", search={"decline_threshold": 0.0})
    reindex(config, embedder=FakeEmbedder())
    return Answerer(config, embedder=FakeEmbedder())


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("out", [io.StringIO(), Terminal()], ids=["pipe", "terminal"])
def test_quotes_reach_the_terminal_without_control_characters(hostile_answerer, out):
    assert console.ask_once(hostile_answerer, "harga cabai pasar", as_json=False, out=out) == 0
    shown = out.getvalue()
    assert "naik" in shown and "gnirts" in shown
    assert ACTIVE.findall(OWN_STYLES.sub("", shown)) == []


def test_json_carries_the_exact_text_with_every_control_escaped(hostile_answerer):
    out = io.StringIO()
    console.ask_once(hostile_answerer, "harga cabai pasar", as_json=True, out=out)
    raw = out.getvalue()
    assert ACTIVE.findall(raw.rstrip("\n")) == []
    quote = json.loads(raw)["quotes"][0]
    assert "\x1b[2J" in quote["text"] and "\u202e" in quote["text"]  # the data is unchanged


def test_interactive_console_and_sources_are_safe(hostile_answerer, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("harga cabai pasar\n/sources\n"))
    assert console.run_console(hostile_answerer) == 0
    shown = capsys.readouterr().out
    assert "naik" in shown and "Berita" in shown
    assert ACTIVE.findall(shown) == []


def test_safe_text_keeps_offsets():
    text = "a\x1b[31mb\u202ec\r\n\td"
    safe = console.terminal_safe(text)
    assert len(safe) == len(text) and safe.endswith("\n\td")
    assert ACTIVE.findall(safe) == []


def test_reindex_names_hostile_file_names_safely(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "baik.txt").write_text("Judul\n\nIsi.", "utf-8")
    (corpus / "\x1b]0;pwned\x07.txt").write_text("", "utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"corpus: {{path: '{corpus}'}}\nindex: {{path: '{tmp_path / 'ix'}'}}\n")
    monkeypatch.setattr("retrieval.index.reindex.make_embedder", lambda config: FakeEmbedder())
    assert reindex_main(["--config", str(config), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "]0;pwned" in err and ACTIVE.findall(err) == []
