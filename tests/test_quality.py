"""Answer quality with the real model: the evaluation on seed_dev.jsonl and a FacQA slice,
follow-ups, cross-lingual questions, declining, and the pieces they are built from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.answering.answer import Answerer
from retrieval.answering.query import make_query, question_type
from retrieval.answering.search import fuse, search, sentence_scores
from retrieval.index.keyword import tokenize
from retrieval.index.reindex import reindex
from retrieval.index.terms import TermTable
from retrieval.tools.evaluate import evaluate, is_found, load_questions

from .conftest import make_config, slice_answerer

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT.parent / "shared" / "eval"
FACQA = EVAL_DIR / "facqa"

# Floors from measured figures (docs/quality.md), a little below them so noise does not trip.
# Measured with the reader: R@1 1.0, R@5 1.0, highlight@1 1.0, all 3 out-of-scope questions
# declined (retrieval alone: R@1 0.9, highlight@1 0.9).
SEED_FLOORS = {"r1": 1.0, "highlight1": 1.0, "decline_rate_unanswerable": 1.0}
# Measured on the slice with the reader: R@1 0.967, R@5 0.983, MRR@10 0.975, highlight@1
# 0.950, answer exact match 0.667, false declines 0.017 (retrieval alone: R@1 0.917, MRR@10
# 0.950, highlight@1 0.850, false declines 0.033).
FACQA_SLICE_FLOORS = {"r1": 0.93, "r5": 0.95, "mrr10": 0.95, "highlight1": 0.9, "exact_match": 0.6}
FACQA_SLICE_QUESTIONS = 60
# The slice's questions with every passage holding their answer hidden, all to be declined:
# measured 0.683 with the reader (retrieval alone: 0.750 here; on all of FacQA test the
# reader declines more, docs/quality.md).
HIDDEN_ANSWER_FLOOR = 0.65


@pytest.mark.needs_shared("eval/seed_dev.jsonl")
def test_seed_dev_evaluation_meets_its_floors(seed_answerer):
    report = evaluate(seed_answerer, load_questions(EVAL_DIR / "seed_dev.jsonl"))
    for key, floor in SEED_FLOORS.items():
        assert getattr(report, key) >= floor, (key, report)
    # One of the ten is declined: "Apa yang dikatakan Yoon Suk Yeol di PBB?" (margin -6.8).
    assert report.false_decline_rate <= 0.1
    assert report.r5 == 1.0


@pytest.fixture(scope="module")
def facqa_slice(tmp_path_factory, real_embedder):
    """Test-split questions against their gold passages and the passages next to them.

    Neighbouring passages come from the same news story: the hard distractors.
    """
    docs = [json.loads(line) for line in (FACQA / "corpus.jsonl").read_text("utf-8").splitlines()]
    where = {d["id"]: i for i, d in enumerate(docs)}
    questions = load_questions(FACQA / "questions.jsonl", "test")[:FACQA_SLICE_QUESTIONS]
    keep = sorted(
        {j for q in questions for j in range(where[q.doc_id] - 1, where[q.doc_id] + 2)}
        & set(range(len(docs)))
    )
    root = tmp_path_factory.mktemp("facqa")
    return slice_answerer([docs[j] for j in keep], root, real_embedder), questions


@pytest.mark.slow
@pytest.mark.needs_shared("eval/facqa")
def test_facqa_slice_evaluation_meets_its_floors(facqa_slice):
    answerer, questions = facqa_slice
    report = evaluate(answerer, questions)
    for key, floor in FACQA_SLICE_FLOORS.items():
        assert getattr(report, key) >= floor, (key, report)
    assert report.false_decline_rate <= 0.05, report


@pytest.mark.slow
@pytest.mark.needs_shared("eval/facqa")
def test_reranking_beats_fusion_alone_on_the_facqa_slice(facqa_slice):
    answerer, questions = facqa_slice
    vectors = answerer.embedder.encode_queries([q.question for q in questions])
    config = answerer.config.search

    def reciprocal_ranks(settings) -> float:
        total = 0.0
        for question, vector in zip(questions, vectors, strict=True):
            query = make_query(question.question, vector, answerer.index.keyword.stemming)
            hits = search(answerer.index, query, settings)[:10]
            found = [is_found(h.chunk.text, h.chunk.doc_id, question) for h in hits]
            total += 1 / (found.index(True) + 1) if any(found) else 0.0
        return total / len(questions)

    assert reciprocal_ranks(config) > reciprocal_ranks(dataclasses.replace(config, rerank=False))


@pytest.mark.parametrize(
    ("history", "question", "read_as", "answer"),
    [
        (
            ["Siapa Presiden Korea Selatan?"],
            "Di mana dia berpidato?",
            "Di mana Yoon Suk Yeol berpidato?",
            "Majelis Umum",
        ),
        (
            ["Siapa yang berjabat tangan dengan Kim?"],
            "Apa jabatannya?",
            "Apa jabatan Sergei Shoigu?",
            "Menteri Pertahanan Rusia",
        ),
        (
            ["Siapa yang berjabat tangan dengan Kim?"],
            "Di kota mana?",
            "Di kota mana Sergei Shoigu berjabat tangan dengan Kim?",
            "Vladivostok",
        ),
        (
            ["Apa kesepakatan Kim dan Putin?"],
            "Kapan dia kembali?",
            "Kapan Kim kembali?",
            "pekan lalu",
        ),
    ],
)
def test_a_follow_up_is_read_as_a_question_of_its_own(
    seed_answerer, history, question, read_as, answer
):
    reply = seed_answerer.ask(question, history)
    assert reply.read_as == read_as
    assert not reply.declined
    assert answer in reply.quotes[0].highlight


def test_the_earlier_turns_as_values_need_no_asking_again(seed_index, real_embedder):
    counting = CountingEmbedder(real_embedder)
    answerer = Answerer(seed_index, embedder=counting)
    first = answerer.ask("Siapa yang berjabat tangan dengan Kim?")
    assert counting.queries == 1
    follow = answerer.ask("Apa jabatannya?", [first.turn()])
    assert counting.queries == 2 and follow.read_as == "Apa jabatan Sergei Shoigu?"
    # Given as text, an earlier question is asked again to learn its answer.
    answerer.ask("Tanggal berapa?", ["Siapa Menteri Pertahanan Rusia?"])
    assert counting.queries == 4


def test_each_kind_of_reply(seed_answerer):
    sure = seed_answerer.ask("Siapa yang berjabat tangan dengan Kim Jong Un?")
    assert sure.kind == "answer" and sure.quotes[0].answer == "Sergei Shoigu"
    # The right passage, but no span the reader is sure of: shown without a mark.
    unsure = seed_answerer.ask("Apa yang dicari Pyongyang?")
    assert unsure.kind == "passage" and len(unsure.quotes) == 1
    assert unsure.quotes[0].answer is None and "bantuan teknologi" in unsure.quotes[0].highlight
    assert seed_answerer.ask("Berapa kurs dolar hari ini?").kind == "declined"


def test_a_span_of_the_wrong_kind_is_not_the_answer(seed_answerer):
    # "Vladivostok, Rusia" is where, not whom: the who-question gets a person.
    reply = seed_answerer.ask("Siapa yang dia temui di sana?", ["Kapan Kim mengunjungi Rusia?"])
    assert reply.read_as == "Siapa yang Kim temui di Rusia?"
    assert reply.quotes[0].answer not in ("Vladivostok", "Vladivostok, Rusia", "Rusia")


def test_self_contained_question_is_not_dragged_to_the_old_topic(seed_answerer):
    history = ["Siapa Presiden Korea Selatan?"]
    reply = seed_answerer.ask("Apa yang dicari Pyongyang?", history)
    assert "bantuan teknologi" in reply.quotes[0].highlight
    assert seed_answerer.ask("Berapa kurs dolar hari ini?", history).declined


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("What does Russia want from North Korea?", "pasokan amunisi"),
        ("Who is the president of South Korea?", "Yoon Suk Yeol"),
        ("Who did Kim Jong Un shake hands with?", "Sergei Shoigu"),
        ("Where did Kim meet Shoigu?", "Vladivostok"),
    ],
)
def test_english_question_finds_the_indonesian_passage(seed_answerer, question, answer):
    reply = seed_answerer.ask(question)
    assert not reply.declined
    assert answer in reply.quotes[0].highlight


@pytest.mark.parametrize(
    "question",
    [
        "Siapa juara Liga Inggris musim lalu?",
        "Berapa harga beras di Jakarta hari ini?",
        "What is the boiling point of water?",
        "Kapan Piala Dunia 2026 dimulai?",
    ],
)
def test_out_of_scope_questions_decline(seed_answerer, question):
    assert seed_answerer.ask(question).declined


class CountingEmbedder:
    """Wraps an embedder and counts query encodes."""

    def __init__(self, inner):
        self.inner, self.queries = inner, 0
        self.dim, self.name = inner.dim, inner.name

    def encode_queries(self, texts):
        self.queries += len(texts)
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts):
        return self.inner.encode_passages(texts)

    def count_tokens(self, text):
        return self.inner.count_tokens(text)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Kapankah Kejuaraan Nasional Sepak Takraw XVII berakhir?", "date"),
        ("Tahun berapa Yayasan Kanker Wisnuwardhana didirikan?", "date"),
        ("Berapa tonkah UE mengenakan kuota?", "number"),
        ("Siapakah nama Wali Kota Padang?", "person"),
        ("Di kota manakah letak kantor pusat WHO?", "place"),
        ("Dimanakah Snuppy dikloning?", "place"),
        ("Apa nama latin dari badak Sumatera?", "other"),
        ("Who reported on the meeting?", "person"),
    ],
)
def test_question_type(question, kind):
    assert question_type(question) == kind


def test_answer_type_features_count_only_what_the_question_lacks():
    question = frozenset(tokenize("Kapan Kim tiba di Vladivostok pada 2023?"))
    table = TermTable.build(
        [
            "Kim tiba di Vladivostok pada 2023.",
            "Kim tiba di Vladivostok pada Rabu (13/9) 2023 bersama Lavrov.",
        ]
    )
    typed, covered = table.features(np.array([0, 1]), question)
    assert typed[0].tolist() == [0, 0, 0, 0, 0]
    numbers, years, dates, number_words, names = typed[1]
    assert numbers > 0 and dates == 1.0 and names > 0
    assert years == 0 and number_words == 0
    assert covered[0] == covered[1] == 6 / 7  # all but "kapan"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Jumat (22/9)", ["jumat", "22/9", "22", "9"]),
        ("langkah-langkah", ["langkah"]),
        ("Bangsa-Bangsa", ["bangsa"]),
        ("Rp80.000, KCNA!", ["rp80", "000", "kcna"]),
    ],
)
def test_indonesian_tokens(text, expected):
    assert tokenize(text) == expected


def test_keyword_side_fades_when_the_index_knows_no_query_word(tiny_config):
    dense = np.array([0.9, 0.8, 0.7])
    keyword = np.array([0.0, 5.0, 1.0])
    config = tiny_config.search
    assert np.argmax(fuse(dense, keyword, config, known=1.0)) == 1
    assert np.argmax(fuse(dense, keyword, config, known=0.0)) == 0


def test_sentence_scores_are_the_best_sentence_cosine(seed_answerer):
    index = seed_answerer.index
    vector = seed_answerer.embedder.encode_queries(["Siapa yang berjabat tangan?"])[0]
    rows = np.arange(index.count)
    expected = [
        float((index.sentence_vectors[index.sentence_offsets[r] : index.sentence_offsets[r + 1]]
               @ vector).max())
        for r in rows
    ]  # fmt: skip
    assert np.allclose(sentence_scores(index, rows, vector), expected)


def prepared(text: str):
    return make_query(text, np.zeros(4, dtype=np.float32), stemming=True)


def test_language_detection():
    assert prepared("Who reported on the politburo meeting?").english
    assert not prepared("Siapa yang melaporkan rapat politbiro?").english


def test_ranking_is_reported_for_the_evaluation(seed_answerer):
    reply = seed_answerer.ask("Apa yang dicari Pyongyang?")
    assert 1 <= len(reply.ranking) <= 10
    assert reply.ranking[0].text == reply.quotes[0].text


def test_rerank_off_keeps_the_fused_order(seed_answerer):
    index, config = seed_answerer.index, seed_answerer.config.search
    query = seed_answerer.query("Apa yang dicari Pyongyang?", index)
    plain = search(index, query, dataclasses.replace(config, rerank=False))
    scores = [h.score for h in plain]
    assert scores == sorted(scores, reverse=True)


def test_content_words_leave_out_stop_and_question_words():
    assert prepared("Apa yang dikatakan Yoon Suk Yeol di PBB?").content == {
        "yoon", "suk", "yeol", "pbb",
    }  # fmt: skip
    assert prepared("Kapan itu terjadi?").content == frozenset()
    assert prepared("Who reported on the politburo meeting?").content == {
        "reported", "politburo", "meeting",
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.needs_shared("eval/facqa")
def test_facqa_slice_declines_when_the_answer_is_hidden(facqa_slice):
    answerer, questions = facqa_slice
    report = evaluate(answerer, questions, hide_answers=True)
    assert report.decline_rate_unanswerable >= HIDDEN_ANSWER_FLOOR, report


def test_follow_up_chats_about_the_seed_article(seed_answerer):
    # tests/fixtures/seed_followups.jsonl: 20 follow-ups written for the seed article, each
    # after one earlier question; 14 answerable, 6 asking what the article does not say.
    questions = load_questions(ROOT / "tests" / "fixtures" / "seed_followups.jsonl")
    assert all(q.history for q in questions)
    report = evaluate(seed_answerer, questions)
    assert (report.n_answerable, report.n_unanswerable) == (14, 6)
    # Measured: 11 of 14 right (R@1 0.857), 1 falsely declined; none of the 6 is given an
    # answer (5 declined, 1 shown as a passage without one).
    assert report.right >= 0.78 and report.r1 >= 0.85
    assert report.false_decline_rate <= 0.08
    assert report.decline_rate_unanswerable == 1.0


CONVERSATIONS = ROOT / "tests" / "fixtures" / "conversations"


@pytest.fixture(scope="module")
def conversation_answerer(tmp_path_factory, real_embedder):
    """The seed article and six written articles (tests/fixtures/conversations/corpus)."""
    root = tmp_path_factory.mktemp("conversations")
    config = make_config(CONVERSATIONS / "corpus", root / ".index")
    reindex(config, embedder=real_embedder)
    return Answerer(config, embedder=real_embedder)


# Measured on the whole files (valid and test splits): follow-ups 94 of 137 answerable right,
# 24 of 25 unanswerable given no answer, 59 of 70 bold spans on an answer; English 29 of 35
# right, 7 of 7, 15 of 16; new stand-alone seed questions 27 of 33 right, 10 of 10 (9 of
# them declined outright), 22 of 27.
@pytest.mark.slow
@pytest.mark.timeout(1200)  # 162 follow-ups, each after its earlier questions, asked again
@pytest.mark.parametrize(
    ("questions", "corpus", "right", "unanswered", "precise"),
    [
        ("conversations/followups.jsonl", "conversations", 0.66, 0.92, 0.80),
        ("seed_english.jsonl", "seed", 0.80, 0.85, 0.85),
        ("conversations/seed_standalone.jsonl", "seed", 0.78, 0.9, 0.75),
    ],
)
def test_floors_on_the_conversation_development_sets(
    request, questions, corpus, right, unanswered, precise
):
    answerer = request.getfixturevalue(
        "conversation_answerer" if corpus == "conversations" else "seed_answerer"
    )
    report = evaluate(answerer, load_questions(ROOT / "tests" / "fixtures" / questions))
    assert report.right >= right, report
    assert report.decline_rate_unanswerable >= unanswered, report
    assert report.bold_precision >= precise, report
