"""Training examples for the reader beyond the data sets' own: follow-ups, and passages about
another event.

**Follow-ups.** At answer time the reader never sees a chat: it reads the question as
`read_in_context` rewrote it ("Di kota mana?" after "Siapa yang berjabat tangan dengan Kim?"
is read as "Di kota mana Sergei Shoigu berjabat tangan dengan Kim?"). So a conversational
example is made as a chat would make it and then read the same way. From two questions on
one passage, the first (with its answer) becomes the earlier turn and the second is asked in a
shorter form made by rule:

- *pronoun*: a name the earlier turn mentioned becomes "dia", "di sana", or the possessive
  "-nya" on the word before it ("istri James Hepburn" -> "istrinya");
- *fragment*: when the rest of the second question is the earlier turn's event, only its
  question phrase is left ("Kapan Shoigu berjabat tangan dengan Kim?" -> "Kapan?").

The example's input is `read_in_context(form, [earlier turn])`, kept only when a rule
rewrote it, the reading names what the form left out, holds no answer of its own and says
little the full question does not. *Topic switches* put a question
about another passage first: a second question asked in full that the rules still rewrite
(a "-nya", "tersebut" or pronoun of its own picks up the other topic) keeps its answer, so
the reader learns to answer the last question; a short form, read as being about the other
passage's event, is labelled "no answer" on its own passage.

**Passages about another event** (hard negatives): for a question asking for a date, number,
person or place, a passage of the same article (the set's neighbouring paragraphs, or one
sharing its names) that holds a span of that kind but none of the answer's words is labelled
"no answer": the "20/9" of a politburo briefing is no answer to when Kim visited Russia.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..answering.conversation import (
    AUXILIARIES,
    FUNCTION_WORDS,
    Turn,
    is_fragment,
    is_place,
    is_someone,
    name_runs,
    read_in_context,
    split_question,
)
from ..answering.entities import (
    ACRONYM,
    DATE,
    MONTHS_AND_DAYS,
    NUMBER_WORDS,
    ORGANISATION_WORDS,
    asked_kind,
    fits,
    is_region,
    kinds,
    words,
)
from ..answering.query import stop_words


@dataclass(frozen=True)
class Example:
    """A question, a passage, and where the answer is in it (None: it does not answer)."""

    question: str
    passage: str
    answer_start: int | None
    answer_end: int | None
    source: str


@dataclass(frozen=True)
class Question:
    """An answerable question of a data set, on its passage (`doc_id` in `passages`)."""

    question: str
    answers: tuple[str, ...]
    start: int
    end: int
    doc_id: str


# Kinds of made example, as counted in the pack's provenance.
PRONOUN, FRAGMENT = "pronoun", "fragment"
SWITCH, SWITCH_NO_ANSWER = "topic switch", "topic switch, no answer"
# The share of the second question's own words (besides its question phrase) that the
# earlier turn must hold for its fragment to stand for it.
FRAGMENT_OVERLAP = 0.75
# The words a follow-up's reading may hold that its question asked in full does not.
EXTRA_WORDS = 3
# Neighbouring paragraphs, in a corpus kept in article order, and the names a passage must
# share with the question's own passage to count as the same article elsewhere.
NEIGHBOURS = 3
SHARED_NAMES = 2
# The question's words a passage about another event of its article holds at least.
TOPIC_WORDS = 2


def content(text: str) -> set[str]:
    """The text's words that say what it is about, case folded."""
    return {
        w
        for w in (w.casefold() for w in words(text))
        if (len(w) > 2 or w.isdigit()) and w not in stop_words() and w not in FUNCTION_WORDS
    }


def _replace(text: str, start: int, end: int, by: str) -> str:
    return re.sub(r"\s+", " ", text[:start] + by + text[end:]).strip()


def pronoun_form(question: str, earlier: Turn) -> tuple[str, str] | None:
    """The question with a name the earlier turn mentioned said as a pronoun, and that name;
    None when it names none of them, or none a pronoun can stand for."""
    mentioned = f"{earlier.read_as} {earlier.answer or ''}".casefold()
    for run in name_runs(question):
        at = question.find(run)
        if at < 0 or run.casefold() not in mentioned:
            continue
        end = at + len(run)
        ahead = words(question[:at])
        previous = ahead[-1] if ahead else ""
        lower = previous.casefold()
        if lower in ("di", "ke", "dari") and is_place(run, question):
            return _replace(question, at, end, "sana"), run
        if (
            previous.isalpha()
            and previous.islower()
            and len(previous) > 2
            and lower not in FUNCTION_WORDS
            and not lower.endswith("nya")
            and question[:at].rstrip().endswith(previous)
        ):
            # "istri James Hepburn" -> "istrinya"
            cut = question[:at].rstrip()
            return _replace(question, len(cut), end, "nya"), run
        if is_someone(run) and not is_place(run, question):
            return _replace(question, at, end, "dia"), run
    return None


def fragment_form(question: str, earlier: Turn) -> str | None:
    """The question's question phrase alone ("Di kota mana?"), when the rest of it is the
    earlier turn's event: most of its words and all its names are the earlier question's or
    answer's, most of the earlier question's are in it, and it asks for another kind of
    thing; else None."""
    before, phrase, after, _ = split_question(question)
    if before or not phrase or not is_fragment(words(phrase)):
        return None
    if asked_kind(question) == earlier.asked:
        return None  # the same question about another name: "Partai apakah yang mencalonkan X?"
    rest = content(after)
    _, _, earlier_after, _ = split_question(earlier.read_as)
    event = content(earlier_after) or content(earlier.read_as)
    told = event | content(earlier.answer or "")
    if not rest or not event:
        return None
    if len(rest & told) < FRAGMENT_OVERLAP * len(rest):
        return None
    if len(event & rest) < FRAGMENT_OVERLAP * len(event):
        return None
    names = {w.casefold() for w in words(after) if w[:1].isupper()}
    if not names <= {w.casefold() for w in words(f"{earlier.read_as} {earlier.answer or ''}")}:
        return None  # another name: another event
    kept = words(phrase)
    while len(kept) > 1 and kept[-1].casefold() in AUXILIARIES:
        kept.pop()  # "Siapa yang" -> "Siapa"
    short = phrase[: phrase.rfind(kept[-1]) + len(kept[-1])]
    return f"{short[:1].upper()}{short[1:]}?"


def reading(
    form: str, turns: Sequence[Turn], left_out: str | None, answers: Sequence[str] = ()
) -> str | None:
    """How the reader reads the form after these turns, when a rule rewrote it, the reading
    names what a pronoun stood for (`left_out`) and holds none of the `answers`; else None."""
    follow = read_in_context(form, turns)
    if not follow.depends:
        return None
    text = follow.text.casefold()
    if left_out and words(left_out)[-1].casefold() not in text:
        return None
    if any(a.casefold() in text for a in answers):
        return None
    return follow.text


def turn(question: Question) -> Turn:
    """A question as an earlier turn of a chat, answered with its (first) answer."""
    return Turn(question.question, question.question, "answer", question.answers[0])


def short_forms(second: Question, earlier: Turn) -> list[tuple[str, str, str | None]]:
    """(kind, form, what the form left out) of the second question after the earlier turn."""
    forms = []
    pronoun = pronoun_form(second.question, earlier)
    if pronoun:
        forms.append((PRONOUN, pronoun[0], pronoun[1]))
    fragment = fragment_form(second.question, earlier)
    if fragment:
        forms.append((FRAGMENT, fragment, None))
    return forms


def conversational(
    questions: Sequence[Question],
    passages: dict[str, str],
    source: str,
    limit: int,
    rng: random.Random,
) -> tuple[list[Example], dict[str, int]]:
    """At most `limit` follow-up examples from pairs of questions on one passage, and topic
    switches after a question on another passage; with the count of each kind."""
    by_passage: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        by_passage[q.doc_id].append(q)
    pairs = [
        (first, second)
        for group in by_passage.values()
        for first in group
        for second in group
        if first is not second
        and {a.casefold() for a in first.answers}.isdisjoint(a.casefold() for a in second.answers)
    ]
    rng.shuffle(pairs)
    made: dict[str, list[Example]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()

    def add(kind: str, text: str, second: Question, answers: bool) -> None:
        passage = passages[second.doc_id]
        if (text, passage) not in seen:
            seen.add((text, passage))
            span = (second.start, second.end) if answers else (None, None)
            made[kind].append(Example(text, passage, *span, source))

    for first, second in pairs:
        earlier = turn(first)
        forms = short_forms(second, earlier)
        for kind, form, left_out in forms:
            text = reading(form, [earlier], left_out, second.answers)
            # A reading that says much the question did not (a topic spliced in for a "-nya"
            # on a verb) asks something else.
            if text and len(content(text) - content(second.question)) <= EXTRA_WORDS:
                add(kind, text, second, True)
        # A topic switch: the last question is about this passage, the one before is not.
        other = rng.choice(questions)
        if other.doc_id == second.doc_id:
            continue
        switched = [turn(other)]
        text = reading(second.question, switched, None, second.answers)
        if text:
            add(SWITCH, text, second, True)
        for kind, form, _ in forms:
            # A fragment is read as the other passage's event, which this one does not tell.
            text = reading(form, switched, None) if kind == FRAGMENT else None
            if text:
                add(SWITCH_NO_ANSWER, text, second, False)
    # Taken in turn from each kind, so that the limit leaves a rare kind whole.
    chosen: dict[str, list[Example]] = {kind: [] for kind in made}
    queues = {kind: deque(examples) for kind, examples in made.items()}
    total = 0
    while total < limit and any(queues.values()):
        for kind, queue in queues.items():
            if queue and total < limit:
                chosen[kind].append(queue.popleft())
                total += 1
    return (
        [e for examples in chosen.values() for e in examples],
        {kind: len(examples) for kind, examples in chosen.items() if examples},
    )


# ----------------------------------------------------------------------------- hard negatives

MONTH_OR_DAY = re.compile(
    r"\b(?:\d{1,2} )?(?:" + "|".join(sorted(MONTHS_AND_DAYS, key=len, reverse=True)) + r")\b"
    r"(?: \d{4})?",
    re.IGNORECASE,
)
NUMBER = re.compile(
    r"\b\d+(?:[.,]\d+)*\b|\b(?:" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


# Capitalised words in a row, as a name is written: "Menteri Pertahanan Rusia Sergei Shoigu".
NAME_RUN = re.compile(r"\b[A-Z][\w'’.-]*(?: (?:[A-Z][\w'’.-]*|bin|binti|al|de|van|von))*")


def typed_span(text: str, asked: str, question: str = "") -> str | None:
    """A span of the text that is of the kind asked for (date, number, person, organisation,
    place), and not only words of the question; None when it holds none."""
    asked_words = {w.casefold() for w in words(question)}

    def new(span: str) -> bool:
        return any(w.casefold() not in asked_words for w in words(span))

    if asked == "date":
        for pattern in (MONTH_OR_DAY, DATE):
            for match in pattern.finditer(text):
                if kinds(match.group()).time and new(match.group()):
                    return match.group()
        return None
    if asked == "number":
        for match in NUMBER.finditer(text):
            if not DATE.fullmatch(match.group()) and new(match.group()):
                return match.group()
        return None
    if asked not in ("person", "organisation", "place"):
        return None
    for match in NAME_RUN.finditer(text):
        run = match.group().rstrip(".")
        ahead = text[: match.start()].rstrip()
        if (not ahead or ahead.endswith((".", "!", "?", '"'))) and " " not in run:
            continue  # a sentence's first word is capitalised anyway
        if not new(run):
            continue
        before = text[max(0, match.start() - 40) : match.start()]
        found = kinds(run, before)
        first = words(run)[0].casefold()
        if asked == "place":
            if found.place or is_region(run):
                return run
        elif asked == "organisation":
            if first in ORGANISATION_WORDS or ACRONYM.match(words(run)[0]):
                return run
        elif found.person and fits(asked, run, before) and not is_region(run):
            if not is_place(run, text):
                return run
    return None


def mentions(text: str, answers: Sequence[str]) -> bool:
    """Whether the text holds any word of the answers that says something ("1945" of "24
    Oktober 1945", "Hepburn" of "James Hepburn"): such a passage may tell the same event."""
    told = {w.casefold() for w in words(text)}
    return any(w in told for answer in answers for w in content(answer))


def neighbours(order: Sequence[str], passages: dict[str, str], in_order: bool) -> dict:
    """For each passage, the passages of the same article: the paragraphs around it when the
    corpus keeps its articles' order (`in_order`), else those sharing names with it."""
    if in_order:
        at = {doc: n for n, doc in enumerate(order)}
        return {
            doc: [
                order[m]
                for m in sorted(
                    range(max(0, at[doc] - NEIGHBOURS), min(len(order), at[doc] + NEIGHBOURS + 1)),
                    key=lambda m: abs(m - at[doc]),
                )
                if m != at[doc]
            ]
            for doc in order
        }
    names = {doc: _names(passages[doc]) for doc in order}
    holding: dict[str, list[str]] = defaultdict(list)
    for doc in order:
        for name in names[doc]:
            holding[name].append(doc)
    found = {}
    for doc in order:
        shared: dict[str, int] = defaultdict(int)
        for name in names[doc]:
            if len(holding[name]) > 50:
                continue  # a name everywhere says nothing of the article
            for other in holding[name]:
                if other != doc:
                    shared[other] += 1
        found[doc] = sorted(
            (o for o, n in shared.items() if n >= SHARED_NAMES), key=lambda o: -shared[o]
        )
    return found


def _names(text: str) -> set[str]:
    """The capitalised words of a text past each sentence's first, case folded."""
    out = set()
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        for w in words(sentence)[1:]:
            if w[:1].isupper() and w.casefold() not in stop_words():
                out.add(w.casefold())
    return out


def hard_negatives(
    questions: Sequence[Question],
    passages: dict[str, str],
    order: Sequence[str],
    in_order: bool,
    source: str,
    limit: int,
    rng: random.Random,
) -> tuple[list[Example], list[Question]]:
    """At most `limit` "no answer" examples, one per question: a passage of the same article
    that holds a span of the asked kind, some of the question's words (a name of it, if it
    has one) and none of the answer's. Also the questions they are for."""
    around = neighbours(order, passages, in_order)
    made: list[Example] = []
    used: list[Question] = []
    questions = list(questions)
    rng.shuffle(questions)
    for q in questions:
        if len(made) >= limit:
            break
        asked = asked_kind(q.question)
        if asked == "other":
            continue
        topic = content(q.question)
        names = {w.casefold() for w in words(q.question)[1:] if w[:1].isupper()}
        candidates = sorted(
            around.get(q.doc_id, []),
            key=lambda doc: -len(topic & content(passages[doc])),
        )
        for doc in candidates:
            text = passages[doc]
            shared = len(topic & content(text))
            if shared < min(TOPIC_WORDS, len(topic)) or mentions(text, q.answers):
                continue
            if names and not names & {w.casefold() for w in words(text)}:
                continue  # about something else the question does not name
            if typed_span(text, asked, q.question):
                made.append(Example(q.question, text, None, None, source))
                used.append(q)
                break
    return made, used
