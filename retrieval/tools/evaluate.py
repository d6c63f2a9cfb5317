"""Measure answer quality on a question file: recall, MRR, highlights, declining, speed.

    python -m retrieval.tools.evaluate --questions FILE [--corpus PATH] [--config PATH]
                                 [--split NAME] [--json] [--hide-answers]
                                 [--per-question FILE]

The corpus is indexed into a throwaway folder under `.cache/eval/` (one per corpus path and
index settings) with the same code as the live index, which is never touched; a second run on
the same corpus re-embeds nothing, since the incremental reindex reuses unchanged documents.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import string
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..answering.answer import KINDS, Answer, Answerer
from ..answering.query import question_language
from ..config import Config, is_server_uri, load_config
from ..errors import TanyaError
from ..index.folder import expected_settings
from ..index.reindex import progress_factory, reindex
from ..models.embedding import Embedder, make_embedder

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
    """The measured figures; `to_dict` gives the keys of `--json` (None: nothing to measure)."""

    r1: float | None
    r5: float | None
    r10: float | None
    mrr10: float | None
    r1_any: float | None
    highlight1: float | None
    highlight1_any: float | None
    exact_match: float | None
    f1: float | None
    decline_rate_unanswerable: float | None
    false_decline_rate: float | None
    n: int
    n_answerable: int
    n_unanswerable: int
    qps: float
    # Answerable questions answered right: not declined, the first quote's highlighted
    # sentence holds an answer (from any document).
    right: float | None = None
    # Of the answerable questions, the share given an answer in bold (the reader's span), and
    # of those the share whose bold span overlaps a gold answer (token F1 > 0) or equals one.
    answer_rate: float | None = None
    bold_precision: float | None = None
    bold_exact: float | None = None
    # Unanswerable questions given the "declined" reply itself (decline_rate_unanswerable also
    # counts a passage shown without any answer marked).
    declined_strict_unanswerable: float | None = None
    # How many replies of each kind: answer, passage, declined.
    replies: dict = dataclasses.field(default_factory=dict)
    # The same figures by question language (id, en) and for follow-ups (questions with a
    # history) apart from stand-alone questions.
    groups: dict = dataclasses.field(default_factory=dict)
    answer_p50_ms: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What happened to one question: the rank it was found at (0 = not in the top 10), by the
    strict rule and counting any document, and how its first quote's answer span scored."""

    question: EvalQuestion
    rank: int
    rank_any: int
    highlighted: bool
    kind: str  # the reply's kind: answer, passage or declined
    exact: float = 0.0
    f1: float = 0.0
    answer: Answer | None = None
    highlighted_any: bool = False
    marked: bool = False  # an answer span is marked in bold
    seconds: float = 0.0  # how long the answer took

    @property
    def declined(self) -> bool:
        return self.kind == "declined"

    @property
    def right(self) -> bool:
        """Answerable: answered, with an answer in the first highlighted sentence (any
        document). Unanswerable: no answer marked (declined, or a passage without a mark)."""
        if self.question.answerable:
            return not self.declined and self.highlighted_any
        return self.kind != "answer"


def fold(text: str) -> str:
    """Case and whitespace folded, as the found rule compares texts."""
    return " ".join(text.casefold().split())


def holds(text: str, answers: Sequence[str]) -> bool:
    """The text holds one of the answers as whole words (case and whitespace folded):
    "10" is not found inside "2010"."""
    folded = fold(text)
    return any(_whole(answer).search(folded) for answer in answers)


@functools.lru_cache(maxsize=65536)
def _whole(answer: str) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(fold(answer)) + r"(?!\w)")


def normalise_answer(text: str) -> list[str]:
    """Words of an answer for exact match and F1: case folded, punctuation dropped."""
    text = text.casefold().translate(str.maketrans("", "", string.punctuation + "“”‘’"))
    return text.split()


def span_scores(predicted: str | None, answers: Sequence[str]) -> tuple[float, float]:
    """Exact match and token F1 of a predicted span against the best gold answer."""
    if not predicted or not answers:
        return 0.0, 0.0
    words = normalise_answer(predicted)
    best_em, best_f1 = 0.0, 0.0
    for answer in answers:
        gold = normalise_answer(answer)
        best_em = max(best_em, float(words == gold))
        common = sum((Counter(words) & Counter(gold)).values())
        if common:
            precision, recall = common / len(words), common / len(gold)
            best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
    return best_em, best_f1


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


def is_found(text: str, doc_id: str, question: EvalQuestion, any_document: bool = False) -> bool:
    """The README's rule: the passage holds an answer span as whole words, from the gold
    document if given (unless any document counts)."""
    if question.doc_id is not None and doc_id != question.doc_id and not any_document:
        return False
    return holds(text, question.answers)


def judge(question: EvalQuestion, answer: Answer, seconds: float = 0.0) -> Outcome:
    """Where the answer's ranking first holds a gold passage, whether its highlight does, and
    how the first quote's answer span compares with the gold answers."""

    def rank(any_document: bool) -> int:
        for position, chunk in enumerate(answer.ranking[:K_MAX], 1):
            if is_found(chunk.text, chunk.doc_id, question, any_document):
                return position
        return 0

    first = answer.quotes[0] if answer.quotes else None

    def highlighted(any_document: bool) -> bool:
        return bool(
            question.answerable
            and first is not None
            and is_found(first.highlight, first.doc_id, question, any_document)
        )

    exact, f1 = 0.0, 0.0
    marked = answer.kind == "answer" and first is not None and first.answer is not None
    if question.answerable and marked:
        exact, f1 = span_scores(first.answer, question.answers)
    return Outcome(
        question,
        rank(False),
        rank(True),
        highlighted(False),
        answer.kind,
        exact,
        f1,
        answer,
        highlighted(True),
        marked,
        seconds,
    )


# The figures reported for each group of questions (by language, follow-up or not).
GROUP_FIGURES = (
    "right",
    "answer_rate",
    "bold_precision",
    "decline_rate_unanswerable",
    "false_decline_rate",
)


def _figures(outcomes: Sequence[Outcome], spans: bool) -> dict:
    """The figures of Report that are shares of these outcomes."""
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]
    marked = [o for o in answerable if o.marked]

    def share(items: Sequence[Outcome], value) -> float | None:
        return round(sum(value(o) for o in items) / len(items), 4) if items else None

    return {
        "r1": share(answerable, lambda o: o.rank == 1),
        "r5": share(answerable, lambda o: 0 < o.rank <= 5),
        "r10": share(answerable, lambda o: 0 < o.rank <= 10),
        "mrr10": share(answerable, lambda o: 1 / o.rank if o.rank else 0.0),
        "r1_any": share(answerable, lambda o: o.rank_any == 1),
        "highlight1": share(answerable, lambda o: o.highlighted),
        "highlight1_any": share(answerable, lambda o: o.highlighted_any),
        "exact_match": share(answerable, lambda o: o.exact) if spans else None,
        "f1": share(answerable, lambda o: o.f1) if spans else None,
        "decline_rate_unanswerable": share(unanswerable, lambda o: o.kind != "answer"),
        "false_decline_rate": share(answerable, lambda o: o.declined),
        "right": share(answerable, lambda o: o.right),
        "answer_rate": share(answerable, lambda o: o.marked) if spans else None,
        "bold_precision": share(marked, lambda o: o.f1 > 0) if spans else None,
        "bold_exact": share(marked, lambda o: o.exact == 1.0) if spans else None,
        "declined_strict_unanswerable": share(unanswerable, lambda o: o.declined),
    }


def summarise(outcomes: Sequence[Outcome], seconds: float, spans: bool = True) -> Report:
    """The figures over all outcomes, and by group; recall, MRR and spans over answerable
    questions only (no span figures when nothing marks spans: the reader is off)."""
    groups = {}
    for name, members in (
        ("id", [o for o in outcomes if question_language(o.question.question) == "id"]),
        ("en", [o for o in outcomes if question_language(o.question.question) == "en"]),
        ("stand-alone", [o for o in outcomes if not o.question.history]),
        ("follow-up", [o for o in outcomes if o.question.history]),
    ):
        if members:
            figures = _figures(members, spans)
            groups[name] = {
                "n_answerable": sum(o.question.answerable for o in members),
                "n_unanswerable": sum(not o.question.answerable for o in members),
                **{key: figures[key] for key in GROUP_FIGURES},
            }
    return Report(
        **_figures(outcomes, spans),
        n=len(outcomes),
        n_answerable=sum(o.question.answerable for o in outcomes),
        n_unanswerable=sum(not o.question.answerable for o in outcomes),
        qps=round(len(outcomes) / seconds, 1) if seconds > 0 else 0.0,
        replies={kind: sum(o.kind == kind for o in outcomes) for kind in KINDS},
        groups=groups,
        answer_p50_ms=round(float(np.median([o.seconds for o in outcomes])) * 1000, 1)
        if outcomes
        else None,
    )


def outcome_record(outcome: Outcome) -> dict:
    """One line of `--per-question`: enough to see a failure without writing code."""
    q, answer = outcome.question, outcome.answer
    first = answer.quotes[0] if answer and answer.quotes else None
    return {
        "id": q.id,
        "question": q.question,
        "history": list(q.history),
        "read_as": answer.reading if answer else q.question,
        "kind": answer.kind if answer else None,
        "answers": list(q.answers),
        "doc_id": q.doc_id,
        "rank": outcome.rank,
        "rank_any": outcome.rank_any,
        "declined": outcome.declined,
        "marked": outcome.marked,
        "right": outcome.right,
        "highlighted": outcome.highlighted,
        "highlighted_any": outcome.highlighted_any,
        "exact_match": outcome.exact,
        "f1": round(outcome.f1, 4),
        "scores": answer.scores if answer else {},
        "first_quote": None
        if first is None
        else {
            "doc_id": first.doc_id,
            "paragraph": first.paragraph,
            "text": first.text,
            "highlight": first.highlight,
            "answer": first.answer,
            "answer_score": None if first.answer_score is None else round(first.answer_score, 4),
            "score": round(first.score, 4),
        },
        "ranking": [f"{c.doc_id}#{c.start}-{c.end}" for c in (answer.ranking if answer else ())][
            :5
        ],
    }


def run_questions(
    answerer: Answerer, questions: Sequence[EvalQuestion], hide_answers: bool = False
) -> list[Outcome]:
    """Ask every question the way the bot does, history included.

    With `hide_answers`, every passage that holds an answer to a question (from any document)
    is left out of its search, so the question becomes one the corpus cannot answer and the
    right result is to decline: this measures declining on questions about a covered topic.
    """
    if not hide_answers:
        return [judge(q, *_timed(answerer, q.question, q.history)) for q in _progress(questions)]
    without = sum(1 for q in questions if not q.answerable)
    if without:
        raise TanyaError(
            f"--hide-answers needs answerable questions, and {without} of these have no "
            "answer: they are unanswerable already. Measure them without --hide-answers"
        )
    rows = answerer.index.live_rows().tolist()
    texts = [fold(chunk.text) for chunk in answerer.index.chunks]
    outcomes = []
    for q in _progress(questions):
        patterns = [_whole(a) for a in q.answers]
        hidden = [
            row
            for row, text in zip(rows, texts, strict=True)
            if any(p.search(text) for p in patterns)
        ]
        unanswerable = dataclasses.replace(q, answers=(), doc_id=None)
        outcomes.append(judge(unanswerable, *_timed(answerer, q.question, q.history, hidden)))
    return outcomes


def _timed(answerer: Answerer, *question) -> tuple[Answer, float]:
    """The answer to a question, and the seconds it took."""
    started = time.perf_counter()
    answer = answerer.ask(*question)
    return answer, time.perf_counter() - started


def _progress(questions: Sequence[EvalQuestion]):
    """The questions, with a progress bar on a terminal."""
    if not sys.stderr.isatty():
        return questions
    from tqdm import tqdm

    return tqdm(questions, desc="asking", unit="q", file=sys.stderr)


def evaluate(
    answerer: Answerer,
    questions: Sequence[EvalQuestion],
    hide_answers: bool = False,
    per_question: Path | None = None,
) -> Report:
    """Ask every question and summarise the outcomes (one JSON line each to `per_question`)."""
    # The first question pays for warming up the model and the stemmer: keep that out of qps.
    answerer.ask("warm up")
    started = time.perf_counter()
    outcomes = run_questions(answerer, questions, hide_answers)
    report = summarise(outcomes, time.perf_counter() - started, answerer.reader is not None)
    if per_question is not None:
        try:
            with open(per_question, "w", encoding="utf-8") as sink:
                for outcome in outcomes:
                    sink.write(json.dumps(outcome_record(outcome), ensure_ascii=False) + "\n")
        except OSError as exc:
            raise TanyaError(f"cannot write {per_question}: {exc.strerror or exc}") from exc
    return report


def eval_config(config: Config, corpus: str | Path | None, cache_root: Path) -> Config:
    """The config with corpus and index moved to a throwaway folder keyed by corpus and settings."""
    corpus_path = Path(corpus).resolve() if corpus else config.corpus_path.resolve()
    key = json.dumps([str(corpus_path), expected_settings(config)], sort_keys=True)
    folder = cache_root / hashlib.sha256(key.encode()).hexdigest()[:16]
    # absolute(), not resolve(): the index path is a link that must not be followed here.
    index = dataclasses.replace(config.index, path=str((folder / "index").absolute()))
    if config.index.backend == "milvus":
        # A collection of its own: in a Milvus Lite file in the same folder, or on the server.
        milvus = config.index.milvus
        uri = milvus.uri if is_server_uri(milvus.uri) else str((folder / "milvus.db").absolute())
        collection = f"tanya_eval_{folder.name}"
        index = dataclasses.replace(
            index, milvus=dataclasses.replace(milvus, uri=uri, collection=collection)
        )
    return dataclasses.replace(
        config,
        corpus=dataclasses.replace(config.corpus, path=str(corpus_path)),
        index=index,
        # Every question is asked once; a cache would only hide repeated ones.
        search=dataclasses.replace(config.search, cache_size=0),
    )


def prepare(
    config: Config,
    corpus: str | Path | None = None,
    cache_root: Path | None = None,
    embedder: Embedder | None = None,
    progress: bool = False,
) -> Answerer:
    """Index the corpus into the evaluation cache (incrementally) and return its Answerer."""
    cache_root = cache_root or config.resolve(".cache/eval")
    local = eval_config(config, corpus, Path(cache_root))
    embedder = embedder or make_embedder(local.embedding)
    reindex(local, embedder=embedder, progress_factory=progress_factory(progress))
    return Answerer(local, embedder=embedder)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_report(report: Report) -> str:
    """The figures as a few readable lines."""
    f = _figure
    return "\n".join(
        [
            f"questions: {report.n} ({report.n_answerable} answerable, "
            f"{report.n_unanswerable} not)",
            f"R@1 {f(report.r1)}  R@5 {f(report.r5)}  R@10 {f(report.r10)}  "
            f"MRR@10 {f(report.mrr10)}  R@1 (any document) {f(report.r1_any)}",
            f"highlight@1 {f(report.highlight1)} (any document {f(report.highlight1_any)})  "
            f"answer span: exact match "
            f"{f(report.exact_match)}  F1 {f(report.f1)}",
            f"right {f(report.right)}  answered in bold {f(report.answer_rate)}  "
            f"bold precision {f(report.bold_precision)} (exact {f(report.bold_exact)})",
            f"unanswerable given no answer: {f(report.decline_rate_unanswerable)} (declined "
            f"{f(report.declined_strict_unanswerable)})  "
            f"false declines: {f(report.false_decline_rate)}",
            "replies: " + ", ".join(f"{k} {n}" for k, n in report.replies.items()),
            *(
                f"  {name} ({g['n_answerable']} answerable, {g['n_unanswerable']} not): right "
                f"{f(g['right'])}  in bold {f(g['answer_rate'])}  bold precision "
                f"{f(g['bold_precision'])}  no answer when unanswerable "
                f"{f(g['decline_rate_unanswerable'])}  false declines "
                f"{f(g['false_decline_rate'])}"
                for name, g in report.groups.items()
            ),
            f"speed: {report.qps:.1f} questions per second, answer p50 "
            f"{'n/a' if report.answer_p50_ms is None else f'{report.answer_p50_ms:.1f} ms'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Measure answer quality on a question file."""
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.tools.evaluate", description=main.__doc__
    )
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
    parser.add_argument(
        "--per-question", metavar="FILE", help="write one JSON line per question to FILE"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config, os.environ)
        questions = load_questions(args.questions, args.split)
        answerer = prepare(config, args.corpus, progress=True)
        per_question = Path(args.per_question) if args.per_question else None
        report = evaluate(answerer, questions, args.hide_answers, per_question)
    except TanyaError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
