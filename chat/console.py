"""Console mode: the bot's answers in a terminal (interactive loop, one-shot, JSON)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
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


# A quote's lines start at INDENT; a line too long for the terminal goes on at HANGING.
INDENT, HANGING = "  ", "    "
# Never wrap narrower than this (a terminal a few columns wide still gets whole words).
MIN_WIDTH = 24


def format_quote(
    quote: Quote,
    color: bool,
    texts: Texts | None = None,
    sure: bool = True,
    width: int | None = None,
) -> str:
    """The quote's text with its answer in bold, the rest of its sentence in italics (on
    a terminal), then its source; in a reply that is not `sure`, nothing is bold. With a
    width, each line wraps at word boundaries with a hanging indent."""
    parts = marked_parts(quote, sure) if color else [(quote.text, "plain")]
    source = source_line(quote, texts) + (f" <{quote.url}>" if quote.url else "")
    return "\n".join([*_indented(parts, width), *_indented([(source, "plain")], width)])


_STYLES = {"plain": "", "sentence": ITALIC, "answer": BOLD}


def _indented(parts: Sequence[tuple[str, str]], width: int | None) -> list[str]:
    """The styled runs as lines: each line of the text at INDENT (a blank one stays blank);
    with a width, wrapped at word boundaries, its further lines at HANGING."""
    text = "".join(part for part, _ in parts)
    styles = [style for part, style in parts for _ in part]
    lines, start = [], 0
    for line in text.split("\n"):
        for indent, row in _rows(line, width):
            lines.append(indent + _styled(text, styles, [start + i for i in row]) if row else "")
        start += len(line) + 1
    return lines


def _rows(line: str, width: int | None) -> list[tuple[str, list[int]]]:
    """The line cut into rows at word boundaries: each its indent and the positions (in the
    line) of the characters it shows. A word longer than a row (an address) stays whole."""
    if not line.strip():
        return [("", [])]
    if width is None or len(INDENT) + len(line) <= width:
        return [(INDENT, list(range(len(line))))]
    width = max(width, MIN_WIDTH)
    rows, indent, start, end = [], INDENT, None, 0
    for word in re.finditer(r"\S+", line):
        if start is not None and len(indent) + word.end() - start > width:
            rows.append((indent, list(range(start, end))))
            indent, start = HANGING, None
        start = word.start() if start is None else start
        end = word.end()
    rows.append((indent, list(range(start, end))))
    return rows


def _styled(text: str, styles: Sequence[str], positions: Sequence[int]) -> str:
    """The characters at positions, each run of one style wrapped in its terminal codes."""
    out, run, current = [], [], None
    for position in positions:
        style = _STYLES[styles[position]]
        if style != current and run:
            out.append(f"{current}{''.join(run)}{RESET}" if current else "".join(run))
            run = []
        current = style
        run.append(text[position])
    if run:
        out.append(f"{current}{''.join(run)}{RESET}" if current else "".join(run))
    return "".join(out)


def format_answer(
    answer: Answer, color: bool, texts: Texts | None = None, width: int | None = None
) -> str:
    """The whole answer as terminal text (by default in the language of its question); with
    a width, every line wraps at word boundaries to it."""
    texts = texts or for_question("auto", answer.question)

    def said(line: str) -> str:
        if width is None or len(line) <= width:
            return line
        return textwrap.fill(line, max(width, MIN_WIDTH), subsequent_indent=INDENT)

    def quote(q: Quote, sure: bool) -> str:
        return format_quote(q, color, texts, sure=sure, width=width)

    # A follow-up says how it was read, so a wrong reading shows.
    head = [said(texts.read_as.format(question=answer.read_as))] if answer.read_as else []
    if answer.kind == "declined":
        lines = [*head, said(texts.decline)]
        if answer.quotes:
            lines += [said(texts.closest), quote(answer.quotes[0], sure=False)]
        return "\n".join(lines)
    if answer.kind == "passage":
        quotes = [quote(q, sure=False) for q in answer.quotes]
        return "\n".join([*head, said(texts.passage), *quotes])
    return "\n\n".join([*head, *(quote(q, sure=True) for q in answer.quotes)])


def terminal_width(stream: TextIO | None) -> int | None:
    """The width to wrap to when stream is a terminal (None: a pipe or a file, not wrapped)."""
    if not _is_terminal(stream):
        return None
    # One column spare: a line that fills the last column makes some terminals add a blank.
    return shutil.get_terminal_size().columns - 1


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
        width = terminal_width(out)
        out.write(format_answer(shown, color=_is_terminal(out), texts=texts, width=width) + "\n")
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


# The console's commands; a line that starts like a command but is none of them is not
# asked as a question.
COMMANDS = {
    "quit": (":q", ":quit", ":exit", "/q", "/quit", "/exit", "exit", "quit"),
    "sources": ("/sources", ":sources"),
    "help": ("/help", ":help", "?", "/start"),
}
LOOKS_LIKE_A_COMMAND = re.compile(r"[/:][^\W\d_]")


def console_command(line: str) -> str | None:
    """The command a console line gives ("quit", "sources", "help", or "unknown" for a
    /word or :word that is none of them); None for a question."""
    words = line.split()
    first = words[0].lower() if words else ""
    for command, spellings in COMMANDS.items():
        if first in spellings and (first.startswith(("/", ":")) or len(words) == 1):
            return command  # `exit` alone leaves; "exit polls ..." is a question
    return "unknown" if LOOKS_LIKE_A_COMMAND.match(first) else None


def run_console(answerer: Answerer, history_size: int = 5) -> int:
    """The interactive loop: line editing and history on a terminal; :q, exit, quit or
    Ctrl-D exits."""
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
        command = console_command(line)
        if command == "quit":
            return 0
        if command == "sources":
            print(format_sources(answerer, commands))
            continue
        if command == "help":
            print(commands.console_help)
            continue
        if command is not None:
            print(commands.unknown_command.format(command=terminal_safe(line.split()[0])))
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
        shown = format_answer(
            terminal_safe_answer(answer), color, texts, terminal_width(sys.stdout)
        )
        print(shown + "\n", flush=True)
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
