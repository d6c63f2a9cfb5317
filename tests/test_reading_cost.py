"""What an answer and a build cost: the reader reads the other passages only when the first
one's answer is not clearly ahead, and an index built without sentence vectors embeds a quoted
passage's sentences at answer time, giving the highlight that stored ones would."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from retrieval.answering.answer import Answerer, decline_floor, near_threshold, read_candidates
from retrieval.answering.search import search
from retrieval.index.reindex import reindex
from retrieval.models.reader import Reading, Span

from .conftest import FakeEmbedder, make_config


class ScriptedReader:
    """Reads every passage as answering with the margin given for its text (0 otherwise),
    the span being its first word; records the passages of each call."""

    workers = 2

    def __init__(self, margins: dict[str, float], runtime: str = "numpy"):
        self.runtime = runtime
        self.margins = margins
        self.calls: list[list[str]] = []

    def read(self, question: str, passages: list[str]) -> list[Reading]:
        self.calls.append(list(passages))
        readings = []
        for text in passages:
            margin = self.margins.get(text, 0.0)
            end = text.find(" ")
            readings.append(Reading(0, end, margin, 0.0, (Span(0, end, margin),)))
        return readings


def _hits(answerer: Answerer, question: str):
    index = answerer.index
    query = answerer.query(question, index)
    return query, search(index, query, answerer.config.search)


def _order(candidates) -> list[int]:
    return [c.hit.row for c in candidates]


def test_a_clear_first_answer_is_read_alone(tiny_answerer):
    query, hits = _hits(tiny_answerer, "Harga cabai rawit di Pasar Minggu?")
    assert len(hits) >= 3
    config = dataclasses.replace(tiny_answerer.config.reader, first_lead=10.0)
    sure = ScriptedReader({hits[0].chunk.text: 40.0})
    candidates = read_candidates(sure, query, hits, config, "other")
    assert sure.calls == [[hits[0].chunk.text]]
    assert candidates[0].hit.row == hits[0].row and candidates[0].span.score == 40.0
    assert all(c.reading is None for c in candidates[1:])
    assert _order(candidates) == [h.row for h in hits]

    # Not marked: the next two are read together; the third is clearly ahead of the rest.
    unsure = ScriptedReader({hits[0].chunk.text: -1.0, hits[2].chunk.text: 30.0})
    candidates = read_candidates(unsure, query, hits, config, "other")
    texts = [h.chunk.text for h in hits]
    assert unsure.calls == [texts[:1], texts[1:3]]
    assert _order(candidates)[:3] == [hits[2].row, hits[0].row, hits[1].row]
    assert _order(candidates)[3:] == [h.row for h in hits[3:]]
    # Never clearly ahead: every passage is read, two at a time after the first.
    doubtful = ScriptedReader(dict.fromkeys(texts, -1.0))
    read_candidates(doubtful, query, hits, config, "other")
    assert doubtful.calls == [texts[:1], texts[1:3], texts[3:5]]


@pytest.mark.parametrize("seed", range(20))
def test_reading_the_first_alone_never_changes_the_first_passage(tiny_answerer, seed):
    """Whenever the others' margins stay below first_lead, stopping early gives the first
    passage that reading all of them gives."""
    query, hits = _hits(tiny_answerer, "Harga cabai rawit di Pasar Minggu?")
    rng = np.random.default_rng(seed)
    lead = 8.0
    margins = {h.chunk.text: float(rng.uniform(-10, lead)) for h in hits[1:]}
    margins[hits[0].chunk.text] = float(rng.uniform(-2, 30))
    config = tiny_answerer.config.reader
    adaptive = read_candidates(
        ScriptedReader(margins), query, hits, dataclasses.replace(config, first_lead=lead), "other"
    )
    every = read_candidates(
        ScriptedReader(margins), query, hits, dataclasses.replace(config, first_lead=1000), "other"
    )
    assert adaptive[0].hit.row == every[0].hit.row
    assert adaptive[0].span == every[0].span


def test_an_index_without_sentence_vectors_highlights_as_one_with_them(tiny_corpus, tmp_path):
    answers = {}
    for stored in (True, False):
        config = make_config(
            tiny_corpus, tmp_path / str(stored) / ".index", reader={"enabled": False}
        )
        config = dataclasses.replace(
            config, index=dataclasses.replace(config.index, sentence_vectors=stored)
        )
        embedder = FakeEmbedder()
        reindex(config, embedder=embedder)
        answerer = Answerer(config, embedder=embedder)
        multi = [c for c in answerer.index.chunks if len(c.sentences) > 1]
        assert multi  # the tiny articles have two-sentence passages
        # Without sentence vectors the build encodes each passage once, and nothing else.
        texts = len(answerer.index.chunks) + (sum(len(c.sentences) for c in multi) if stored else 0)
        assert len(embedder.calls) == texts
        embedder.calls.clear()
        answers[stored] = answerer.ask("Mengapa pasokan cabai dari Jawa Tengah berkurang?")
        quoted = answers[stored].quotes[0]
        assert quoted.highlight != quoted.text  # a passage of two sentences
        # Its sentences are embedded at answer time, only when the index holds none.
        sentences = quoted.text.split(". ")
        sentences = [sentences[0] + ".", sentences[1]]
        assert embedder.calls[:2] == ([] if stored else sentences)
    assert [(q.text, q.highlight) for q in answers[True].quotes] == [
        (q.text, q.highlight) for q in answers[False].quotes
    ]
    assert "karena hujan" in answers[False].quotes[0].highlight


def test_a_follow_up_read_in_context_is_declined_only_when_the_reader_is_surer(tiny_answerer):
    # Every passage read as a doubtful answer, between the two decline margins; the retrieval
    # evidence (low with the fake embedder) is left out of it.
    reader = tiny_answerer.config.reader
    assert reader.follow_up_decline_margin < -7.0 < reader.decline_margin
    tiny_answerer.config = dataclasses.replace(
        tiny_answerer.config, reader=dataclasses.replace(reader, evidence_floor=-1.0)
    )
    tiny_answerer.reader = ScriptedReader(
        {chunk.text: -7.0 for chunk in tiny_answerer.index.chunks}
    )
    earlier = ["Berapa harga cabai rawit di Pasar Minggu?"]
    follow_up = tiny_answerer.ask("Kenapa harganya naik?", earlier)
    assert follow_up.read_as  # read in the chat's context
    assert follow_up.kind == "passage"
    # The same reading asked on its own is declined: nothing says the articles cover it.
    alone = tiny_answerer.ask(follow_up.read_as)
    assert not alone.read_as and alone.kind == "declined"


def test_an_english_question_is_declined_only_below_its_own_margin(tiny_answerer):
    # English questions read beside Indonesian passages score lower: between the two margins
    # an English question gets the passage, an Indonesian one is declined.
    config = tiny_answerer.config
    reader = config.reader
    assert reader.english_decline_margin < -7.0 < reader.decline_margin
    tiny_answerer.config = dataclasses.replace(
        config,
        reader=dataclasses.replace(reader, evidence_floor=-1.0),
        search=dataclasses.replace(config.search, cross_lingual_threshold=-1.0),
    )
    tiny_answerer.reader = ScriptedReader(
        {chunk.text: -7.0 for chunk in tiny_answerer.index.chunks}
    )
    english = tiny_answerer.ask("How much do chillies cost at Pasar Minggu?")
    assert not english.read_as and english.kind == "passage"
    assert tiny_answerer.ask("Berapa harga cabai di Pasar Minggu?").kind == "declined"
    # Below the English margin too, the English question is declined.
    tiny_answerer.reader = ScriptedReader(
        {chunk.text: reader.english_decline_margin - 0.5 for chunk in tiny_answerer.index.chunks}
    )
    tiny_answerer._cache.clear()
    assert tiny_answerer.ask("How much do chillies cost at Pasar Minggu?").kind == "declined"


def test_the_decline_floor_of_each_kind_of_question(tiny_answerer):
    config = dataclasses.replace(
        tiny_answerer.config.reader,
        decline_margin=-6.0,
        follow_up_decline_margin=-8.0,
        english_decline_margin=-7.0,
    )
    assert decline_floor(config, follow_up=False, english=False) == -6.0
    assert decline_floor(config, follow_up=True, english=False) == -8.0
    assert decline_floor(config, follow_up=False, english=True) == -7.0
    # Both: the lower of the two.
    assert decline_floor(config, follow_up=True, english=True) == -8.0
    assert (
        decline_floor(dataclasses.replace(config, english_decline_margin=-9.0), True, True) == -9.0
    )


@pytest.mark.parametrize(
    ("best", "first_span", "follow_up", "near"),
    [
        (-6.3, None, False, True),  # 0.2 from the decline margin
        (-6.3, None, True, False),  # a follow-up's floor is -8
        (-7.8, None, True, True),
        (5.0, 0.3, False, True),  # the first span 0.3 from the bold threshold
        (5.0, 2.0, False, False),
        (-3.0, None, False, False),
    ],
)
def test_a_reply_near_a_threshold_is_told_apart(tiny_answerer, best, first_span, follow_up, near):
    config = tiny_answerer.config.reader
    assert (config.decline_margin, config.follow_up_decline_margin) == (-6.1, -8.0)
    assert (config.answer_margin, config.recheck_margin) == (0.0, 0.5)
    query, hits = _hits(tiny_answerer, "Berapa harga cabai di Pasar Minggu?")
    margins = {hits[0].chunk.text: best}
    [first, *_] = read_candidates(ScriptedReader(margins), query, hits[:1], config, "other")
    if first_span is not None:
        first = dataclasses.replace(first, span=Span(0, 1, first_span))
    assert near_threshold([first], config, follow_up) is near
    off = dataclasses.replace(config, recheck_margin=0.0)
    assert near_threshold([first], off, follow_up) is False


def test_a_reply_too_close_to_call_in_int8_is_read_again_in_float32(tiny_answerer, monkeypatch):
    tiny_answerer.config = dataclasses.replace(
        tiny_answerer.config,
        reader=dataclasses.replace(tiny_answerer.config.reader, evidence_floor=-1.0),
    )
    texts = [chunk.text for chunk in tiny_answerer.index.chunks]
    exact = ScriptedReader(dict.fromkeys(texts, -9.0))
    monkeypatch.setattr(tiny_answerer, "exact_reader", lambda: exact)
    question = "Berapa harga cabai di Pasar Minggu?"
    # Clearly answerable in int8: the float32 reader is not asked.
    tiny_answerer.reader = ScriptedReader(dict.fromkeys(texts, 4.0), runtime="onnxruntime")
    assert tiny_answerer.ask(question).kind == "answer" and not exact.calls
    # 0.2 above the decline margin in int8: read again, and the float32 reading declines.
    tiny_answerer.reader = ScriptedReader(dict.fromkeys(texts, -5.9), runtime="onnxruntime")
    assert tiny_answerer.ask("Berapa harga cabai rawit di Pasar Minggu?").kind == "declined"
    assert exact.calls
