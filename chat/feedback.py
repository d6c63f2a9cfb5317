"""tanya-feedback: what Telegram users said about the answers, for whoever runs the bot.

`tanya-feedback export FILE` writes every question whose answer got a 👎 as a question file
that the evaluation command reads (one JSON object a line, ../shared/eval/README.md). Each
line's "answer" is null, which the evaluation reads as "the right reply is to decline": the
likeliest fix for a wrong answer until someone writes the right span there. What the bot
answered, and how it read the question, ride along in fields the evaluation ignores.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from chat.state import VotedAnswer, voted_down
from retrieval.config import load_config
from retrieval.errors import TanyaError


def question_record(voted: VotedAnswer) -> dict:
    """One line of the question file for an answer voted down."""
    record: dict = {"id": f"feedback-{voted.id}", "question": voted.question, "answer": None}
    if voted.history:
        record["history"] = list(voted.history)
    record["review"] = {
        "read_as": voted.read_as,
        "replied": voted.kind,
        "answered": voted.answer,
        "quotes": [
            {"title": q.get("title"), "paragraph": q.get("paragraph"), "text": q.get("text")}
            for q in voted.quotes
        ],
        "votes": {"up": voted.up, "down": voted.down},
    }
    return record


def export(state_path: Path, target: Path) -> int:
    """Write the 👎 questions of the state file to target; how many there were."""
    if not state_path.is_file():
        raise TanyaError(
            f"there is no state database at {state_path} yet: the bot writes it "
            "(state.path in config.yaml) once it has answered in Telegram"
        )
    try:
        answers = voted_down(state_path)
    except sqlite3.Error as exc:
        raise TanyaError(f"cannot read the state database {state_path}: {exc}") from exc
    lines = "".join(json.dumps(question_record(a), ensure_ascii=False) + "\n" for a in answers)
    try:
        target.write_text(lines, encoding="utf-8")
    except OSError as exc:
        raise TanyaError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return len(answers)


def main(argv: list[str] | None = None) -> int:
    """tanya-feedback: the 👍/👎 votes Telegram users gave the bot's answers."""
    parser = argparse.ArgumentParser(prog="tanya-feedback", description=main.__doc__)
    parser.add_argument("--config", help="config file (default: config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser(
        "export",
        help="write the questions whose answers got a 👎 as a question file (JSON lines) "
        "that the evaluation command reads",
    )
    exporting.add_argument("file", type=Path, help="the question file to write")
    # Also after the command; SUPPRESS keeps one given before it.
    exporting.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        count = export(config.state_path, args.file)
    except TanyaError as exc:
        print(f"tanya-feedback: {exc}", file=sys.stderr)
        return 1
    print(f"{count} question{'s' if count != 1 else ''} voted down written to {args.file}")
    if count:
        print(
            'Each has "answer": null (the right reply would be to decline); write the right '
            "span there where the articles do answer it, then run the evaluation with "
            f"--questions {args.file}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
