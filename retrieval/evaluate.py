"""Measure answer quality on a question file: recall, MRR, highlights, declining, speed.

    python -m retrieval.evaluate --questions FILE [--corpus PATH] [--config PATH]
                                 [--split NAME] [--json] [--hide-answers]

The corpus is indexed into a throwaway folder under `.cache/eval/` (one per corpus path and
index settings) with the same code as the live index, which is never touched; a second run on
the same corpus re-embeds nothing, since the incremental reindex reuses unchanged documents.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .answer import Answer, Answerer
from .config import Config, load_config
from .embedding import Embedder, make_embedder
from .errors import TanyaError
from .index import expected_settings
from .reindex import reindex

K_MAX = 10


@dataclass(frozen=True)
class EvalQuestion:
    """One question of an evaluation file; no answers means the corpus cannot answer it."""

    question: str
    answers: tuple[str, ...]
    doc_id: str | None = None
    history: tuple[str, ...] = ()
    split: str | None = None
    id: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class Report:
    """The measured figures; `to_dict` gives the keys of `--json`."""

    r1: float
    r5: float
    r10: float
    mrr10: float
    highlight1: float
    decline_rate_unanswerable: float
    false_decline_rate: float
    n: int
    qps: float
    n_answerable: int = 0
    n_unanswerable: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What happened to one question: the rank it was found at (0 = not in the top 10)."""

    question: EvalQuestion
    rank: int
    highlighted: bool
    declined: bool


def fold(text: str) -> str:
    """Case and whitespace folded, as the found rule compares texts."""
    return " ".join(text.casefold().split())


def load_questions(path: str | Path, split: str | None = None) -> list[EvalQuestion]:
    """Questions of a JSONL file (see ../shared/eval/README.md), optionally of one split."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TanyaError(f"cannot read the question file {path}: {exc.strerror or exc}") from exc
    questions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record["question"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TanyaError(
                f"{path}:{number}: expected a JSON object with a 'question' ({exc})"
            ) from exc
        if split is not None and record.get("split") != split:
            continue
        answers = [record["answer"]] if record.get("answer") else []
        answers += [a for a in record.get("answers") or [] if a and a not in answers]
        questions.append(
            EvalQuestion(
                text,
                tuple(answers),
                record.get("doc_id"),
                tuple(record.get("history") or ()),
                record.get("split"),
                record.get("id"),
            )
        )
    if not questions:
        where = f" of split {split!r}" if split else ""
        raise TanyaError(f"{path} has no questions{where}")
    return questions


def is_found(text: str, doc_id: str, question: EvalQuestion) -> bool:
    """The README's rule: the passage holds an answer span, from the gold document if given."""
    if question.doc_id is not None and doc_id != question.doc_id:
        return False
    folded = fold(text)
    return any(fold(answer) in folded for answer in question.answers)


def judge(question: EvalQuestion, answer: Answer) -> Outcome:
    """Where the answer's ranking first holds a gold passage, and whether its highlight does."""
    rank = 0
    for position, chunk in enumerate(answer.ranking[:K_MAX], 1):
        if is_found(chunk.text, chunk.doc_id, question):
            rank = position
            break
    first = answer.quotes[0] if answer.quotes else None
    highlighted = bool(
        question.answerable
        and first is not None
        and is_found(first.highlight, first.doc_id, question)
    )
    return Outcome(question, rank, highlighted, answer.declined)


def summarise(outcomes: Sequence[Outcome], seconds: float) -> Report:
    """The figures over all outcomes; recall and MRR over answerable questions only."""
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]

    def share(items: Sequence[Outcome], test) -> float:
        return round(sum(1 for o in items if test(o)) / len(items), 4) if items else 0.0

    mrr = sum(1 / o.rank for o in answerable if o.rank) / len(answerable) if answerable else 0.0
    return Report(
        r1=share(answerable, lambda o: o.rank == 1),
        r5=share(answerable, lambda o: 0 < o.rank <= 5),
        r10=share(answerable, lambda o: 0 < o.rank <= 10),
        mrr10=round(mrr, 4),
        highlight1=share(answerable, lambda o: o.highlighted),
        decline_rate_unanswerable=share(unanswerable, lambda o: o.declined),
        false_decline_rate=share(answerable, lambda o: o.declined),
        n=len(outcomes),
        qps=round(len(outcomes) / seconds, 1) if seconds > 0 else 0.0,
        n_answerable=len(answerable),
        n_unanswerable=len(unanswerable),
    )


def run_questions(
    answerer: Answerer, questions: Sequence[EvalQuestion], hide_answers: bool = False
) -> list[Outcome]:
    """Ask every question the way the bot does, history included.

    With `hide_answers`, every passage that holds an answer to a question (from any document)
    is left out of its search, so the question becomes one the corpus cannot answer and the
    right result is to decline: this measures declining on questions about a covered topic.
    """
    if not hide_answers:
        return [judge(q, answerer.ask(q.question, q.history)) for q in questions]
    texts = [fold(chunk.text) for chunk in answerer.index.chunks]
    outcomes = []
    for q in questions:
        answers = [fold(a) for a in q.answers]
        hidden = [row for row, text in enumerate(texts) if any(a in text for a in answers)]
        unanswerable = dataclasses.replace(q, answers=(), doc_id=None)
        outcomes.append(judge(unanswerable, answerer.ask(q.question, q.history, hidden)))
    return outcomes


def evaluate(
    answerer: Answerer, questions: Sequence[EvalQuestion], hide_answers: bool = False
) -> Report:
    """Ask every question and summarise the outcomes."""
    # The first question pays for warming up the model and the stemmer: keep that out of qps.
    answerer.ask("warm up")
    started = time.perf_counter()
    outcomes = run_questions(answerer, questions, hide_answers)
    return summarise(outcomes, time.perf_counter() - started)


def eval_config(config: Config, corpus: str | Path | None, cache_root: Path) -> Config:
    """The config with corpus and index moved to a throwaway folder keyed by corpus and settings."""
    corpus_path = Path(corpus).resolve() if corpus else config.corpus_path.resolve()
    key = json.dumps([str(corpus_path), expected_settings(config)], sort_keys=True)
    folder = cache_root / hashlib.sha256(key.encode()).hexdigest()[:16]
    return dataclasses.replace(
        config,
        corpus=dataclasses.replace(config.corpus, path=str(corpus_path)),
        # absolute(), not resolve(): the index path is a link that must not be followed here.
        index=dataclasses.replace(config.index, path=str((folder / "index").absolute())),
        # Every question is asked once; a cache would only hide repeated ones.
        search=dataclasses.replace(config.search, cache_size=0),
    )


def prepare(
    config: Config,
    corpus: str | Path | None = None,
    cache_root: Path | None = None,
    embedder: Embedder | None = None,
) -> Answerer:
    """Index the corpus into the evaluation cache (incrementally) and return its Answerer."""
    cache_root = cache_root or config.resolve(".cache/eval")
    local = eval_config(config, corpus, Path(cache_root))
    embedder = embedder or make_embedder(local.embedding)
    reindex(local, embedder=embedder)
    return Answerer(local, embedder=embedder)


def format_report(report: Report) -> str:
    """The figures as a few readable lines."""
    return "\n".join(
        [
            f"questions: {report.n} ({report.n_answerable} answerable, "
            f"{report.n_unanswerable} not)",
            f"R@1 {report.r1:.3f}  R@5 {report.r5:.3f}  R@10 {report.r10:.3f}  "
            f"MRR@10 {report.mrr10:.3f}  highlight@1 {report.highlight1:.3f}",
            f"declined when unanswerable: {report.decline_rate_unanswerable:.3f}  "
            f"false declines: {report.false_decline_rate:.3f}",
            f"speed: {report.qps:.1f} questions per second",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Measure answer quality on a question file."""
    parser = argparse.ArgumentParser(prog="python -m retrieval.evaluate", description=main.__doc__)
    parser.add_argument("--questions", required=True, help="question file (JSONL)")
    parser.add_argument("--corpus", help="folder or JSONL file to index (default: the config's)")
    parser.add_argument("--config", help="config file (default: config.yaml)")
    parser.add_argument("--split", help="only questions of this split (e.g. train, test)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--hide-answers",
        action="store_true",
        help="leave out every passage holding a question's answer: all should be declined",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config)
        questions = load_questions(args.questions, args.split)
        answerer = prepare(config, args.corpus)
        report = evaluate(answerer, questions, args.hide_answers)
    except TanyaError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        keys = (
            "r1 r5 r10 mrr10 highlight1 decline_rate_unanswerable false_decline_rate n qps"
        ).split()
        print(json.dumps({k: report.to_dict()[k] for k in keys}))
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
