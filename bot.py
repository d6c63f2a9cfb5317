"""tanya: answers questions about news articles with exact quotes, in Telegram or a terminal."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from chat.telegram.app import TOKEN_ENV, run_bot
from chat.telegram.logs import protect_token_in_crashes, redact
from retrieval.answering.answer import Answerer
from retrieval.config import load_config
from retrieval.errors import TanyaError

# What BotFather gives: the bot's id, a colon and 35 characters (123456789:AAE...).
TOKEN_SHAPE = re.compile(r"[0-9]+:[A-Za-z0-9_-]{35}")


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


def token_problem(token: str) -> str:
    """What is wrong with the token's shape ("" when it looks like a bot token); the token
    itself is never repeated (a real one with a typo is still a secret)."""
    if TOKEN_SHAPE.fullmatch(token):
        return ""
    return (
        f"{TOKEN_ENV} does not look like a bot token: BotFather's tokens are the bot's id "
        "(digits), a colon and 35 letters, digits, '-' or '_' (123456789:AAE...). "
        "Copy it again from BotFather (/token), without quotes or spaces"
    )


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
        if not (args.console or args.ask is not None or args.check):
            # Said here, before the models load and before the Bot API is asked (which
            # retries for about 20 s before it gives up on a token it cannot use).
            problem = token_problem(token)
            if problem:
                print(f"tanya: {problem}", file=sys.stderr)
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
