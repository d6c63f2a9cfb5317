"""Console mode: the bot's answers in a terminal (interactive loop, one-shot, JSON)."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from chat.formatting import marked_parts, source_line
from chat.texts import DEFAULT_LANGUAGE, TEXTS, Texts, for_question, for_user
from retrieval.answering.answer import Answer, Answerer, Quote
from retrieval.answering.conversation import Turn, parse_history
from retrieval.corpus.articles import terminal_safe
from retrieval.errors import QuestionError, TanyaError
from retrieval.index.reindex import stale_documents

BOLD, ITALIC, RESET = "\033[1m", "\033[3m", "\033[0m"
PROMPT = "tanya> "


def format_quote(quote: Quote, color: bool, texts: Texts | None = None, sure: bool = True) -> str:
    """The quote's text with its answer in bold, the rest of its sentence in italics (on
    a terminal), then its source; in a reply that is not `sure`, nothing is bold."""
    if color:
        styles = {"plain": "", "sentence": ITALIC, "answer": BOLD}
        text = "".join(
            f"{styles[style]}{part}{RESET}" if styles[style] else part
            for part, style in marked_parts(quote, sure)
        )
    else:
        text = quote.text
    body = textwrap.indent(text, "  ")
    source = source_line(quote, texts) + (f" <{quote.url}>" if quote.url else "")
    return f"{body}\n  {source}"


def format_answer(answer: Answer, color: bool, texts: Texts | None = None) -> str:
    """The whole answer as terminal text (by default in the language of its question)."""
    texts = texts or for_question("auto", answer.question)
    # A follow-up says how it was read, so a wrong reading shows.
    head = [texts.read_as.format(question=answer.read_as)] if answer.read_as else []
    if answer.kind == "declined":
        lines = [*head, texts.decline]
        if answer.quotes:
            lines += [texts.closest, format_quote(answer.quotes[0], color, texts, sure=False)]
        return "\n".join(lines)
    if answer.kind == "passage":
        quotes = [format_quote(q, color, texts, sure=False) for q in answer.quotes]
        return "\n".join([*head, texts.passage, *quotes])
    return "\n\n".join([*head, *(format_quote(q, color, texts) for q in answer.quotes)])


def format_sources(answerer: Answerer, texts: Texts | None = None) -> str:
    """The indexed articles, one per line."""
    texts = texts or TEXTS[DEFAULT_LANGUAGE]
    lines = [f"{texts.articles(len(answerer.articles()))}:"]
    for info in answerer.articles():
        extra = f" <{info.url}>" if info.url else ""
        lines.append(f"  - {info.title or info.doc_id} [{info.doc_id}]{extra}")
    return terminal_safe("\n".join(lines))


def ask_once(
    answerer: Answerer,
    question: str,
    as_json: bool,
    out: TextIO = sys.stdout,
    history: Sequence[Turn | str] = (),
) -> int:
    """`bot.py --ask`: print one answer (after the chat's earlier turns, `history`); exit code
    0, or 1 for a question that cannot be asked."""
    texts = for_question(answerer.config.ui.language, question)
    try:
        answer = answerer.ask(question, history)
    except QuestionError as exc:
        print(f"tanya: {texts.cannot_ask(exc)}", file=sys.stderr)
        return 1
    if as_json:
        out.write(json_safe(json.dumps(answer.to_dict(), ensure_ascii=False)) + "\n")
    else:
        shown = terminal_safe_answer(answer)
        out.write(format_answer(shown, color=_is_terminal(out), texts=texts) + "\n")
    return 0


def read_history(path: str) -> list[Turn | str]:
    """`--history FILE`: the chat's earlier turns (see conversation.parse_history)."""
    try:
        return parse_history(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TanyaError(f"cannot read the history file {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise TanyaError(
            f"{path} is no chat history: {exc}. It holds a JSON array (or JSON lines) of "
            "earlier questions and of answers as `--ask … --json` prints them"
        ) from exc


def _is_terminal(stream: TextIO | None) -> bool:
    return stream is not None and stream.isatty()


def plural(n: int, word: str) -> str:
    """'1 article', '2 articles'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _read_line(prompt: str, interactive: bool) -> str | None:
    if interactive:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\n") if line else None


def run_console(answerer: Answerer, history_size: int = 5) -> int:
    """The interactive loop: line editing and history on a terminal; :q or Ctrl-D exits."""
    interactive = _is_terminal(sys.stdin) and _is_terminal(sys.stdout)
    setting = answerer.config.ui.language
    # The console knows no user's language: its commands speak ui.language, else Indonesian.
    commands = for_user(setting, None)
    if interactive:
        try:
            import readline  # noqa: F401 - input() gains line editing and history
        except ImportError:
            pass
        print(commands.console_help)
    color = _is_terminal(sys.stdout)
    turns: list[Turn] = []
    while True:
        try:
            line = _read_line(PROMPT, interactive)
        except KeyboardInterrupt:
            print()
            continue
        if line is None:
            if interactive:
                print()
            return 0
        line = line.strip()
        if not line:
            continue
        if line in (":q", ":quit", "/quit", "/exit"):
            return 0
        if line in ("/sources", ":sources"):
            print(format_sources(answerer, commands))
            continue
        if line in ("/help", ":help", "?"):
            print(commands.console_help)
            continue
        texts = for_question(setting, line)
        try:
            answer = answerer.ask(line, turns)
        except QuestionError as exc:
            print(f"tanya: {texts.cannot_ask(exc)}")
            continue
        except KeyboardInterrupt:
            print("\n(interrupted)")
            continue
        print(format_answer(terminal_safe_answer(answer), color, texts) + "\n", flush=True)
        turns = [*turns, answer.turn()][-history_size:] if history_size else []


def health_check(answerer: Answerer, question: str = "Apa isi artikel ini?") -> int:
    """`bot.py --check`: the index loads, every part of it reads, and a question gets an
    answer; exit 0 or 1."""
    index = answerer.index
    try:
        index.check()
    except TanyaError as exc:
        print(f"FAIL: {exc}")
        return 1
    try:
        answer = answerer.ask(question)
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure
        print(f"FAIL: answering a test question raised {exc.__class__.__name__}: {exc}")
        return 1
    print(
        f"OK: {plural(len(index.articles), 'article')}, {plural(index.count, 'chunk')}, "
        f"index {index.version}, "
        f"model {index.manifest.get('model')}; test question gave {len(answer.quotes)} quote(s)"
    )
    stale = stale_documents(answerer.config, index)
    if stale:
        changed = plural(len(stale), "document")
        command = answerer.config.reindex_command()
        print(f"WARNING: the index is stale ({changed} changed since it was built): run {command}")
    return 0


# In JSON, the characters json.dumps leaves raw (it escapes C0 controls itself) that a terminal
# acts on instead of showing.
_JSON_RAW = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe_answer(answer: Answer) -> Answer:
    """The answer with article text, titles, links and the follow-up's reading (which may
    quote an article) terminal_safe; offsets stay valid."""
    quotes = tuple(
        dataclasses.replace(
            q,
            text=terminal_safe(q.text),
            title=terminal_safe(q.title),
            doc_id=terminal_safe(q.doc_id),
            url=terminal_safe(q.url) if q.url else q.url,
        )
        for q in answer.quotes
    )
    return dataclasses.replace(answer, quotes=quotes, read_as=terminal_safe(answer.read_as))


def json_safe(text: str) -> str:
    """JSON text with the characters json.dumps leaves raw written as \\u escapes (same data)."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
