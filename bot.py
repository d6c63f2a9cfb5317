"""tanya: answers questions about news articles with exact quotes, in Telegram or a terminal."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from chat.telegram.app import TOKEN_ENV, run_bot
from chat.telegram.logs import protect_token_in_crashes, redact
from retrieval.answering.answer import Answerer
from retrieval.config import load_config
from retrieval.errors import TanyaError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tanya", description=__doc__)
    parser.add_argument("--config", help="config file (default: config.yaml)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--console", action="store_true", help="ask questions in this terminal")
    mode.add_argument("--ask", metavar="QUESTION", help="answer one question and exit")
    mode.add_argument("--check", action="store_true", help="health check: load, answer, exit 0/1")
    parser.add_argument("--json", action="store_true", help="with --ask: print the answer as JSON")
    parser.add_argument(
        "--history",
        metavar="FILE",
        help="with --ask: the chat's earlier turns, a JSON array or JSON lines of questions "
        "and of answers as --json prints them, so a follow-up is read in context",
    )
    args = parser.parse_args(argv)
    if args.json and args.ask is None:
        parser.error("--json goes with --ask")
    if args.history and args.ask is None:
        parser.error("--history goes with --ask")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tanya` command."""
    args = parse_args(argv)
    token = ""
    try:
        config = load_config(args.config, os.environ)
        logging.basicConfig(
            level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        token = os.environ.get(TOKEN_ENV, "").strip()
        if token:
            protect_token_in_crashes(token)
        if not (args.console or args.ask is not None or args.check) and not token:
            print(
                f"tanya: set {TOKEN_ENV} to run the Telegram bot "
                "(see the README), or use console mode: python bot.py --console",
                file=sys.stderr,
            )
            return 2
        from chat import console

        # A bad history file is said before the models load.
        history = console.read_history(args.history) if args.history else ()
        answerer = Answerer(config)
        if args.ask is not None:
            return console.ask_once(answerer, args.ask, args.json, history=history)
        if args.console:
            return console.run_console(answerer, config.telegram.history_size)
        if args.check:
            return console.health_check(answerer)
        return run_bot(config, answerer, token)
    except TanyaError as exc:
        print(redact(f"tanya: {exc}", token), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (a pager, `head`) went away: nothing left to say, and nobody to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
