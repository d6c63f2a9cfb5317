"""From a question and the chat's earlier questions to an Answer: quotes, highlighted sentences,
answer spans, or a decline."""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config, ReaderConfig, SearchConfig
from ..corpus.chunking import Chunk
from ..errors import IndexMismatchError, QuestionError
from ..index.folder import ArticleInfo
from ..index.store import PassageStore, live_version, open_store
from ..models.artefacts import read_artefact
from ..models.embedding import Embedder, make_embedder
from ..models.reader import WEIGHTS, Reader, Reading
from .query import TYPES, Query, make_query
from .search import TYPED_WEIGHTS, Hit, search

MAX_QUESTION_CHARS = 1000
RANKING_SIZE = 10
# The evidence reads the word coverage of this many of the top passages.
EVIDENCE_DEPTH = 5
# Invisible characters that change nothing for a reader but break tokens.
INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad]")
# Lone surrogates: what undecodable input bytes become; they cannot be printed or encoded.
SURROGATE = re.compile(r"[\ud800-\udfff]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# How the highlighted sentence is scored (artefacts/rerank.json).
HIGHLIGHT = read_artefact("rerank.json")["highlight_weights"]


@dataclass(frozen=True)
class Quote:
    """A passage quoted exactly from an article, with its best sentence marked and, when the
    reader found one, the answer span (all offsets into the article, like start and end)."""

    text: str
    doc_id: str
    title: str
    paragraph: int
    start: int
    end: int
    highlight_start: int
    highlight_end: int
    score: float
    url: str | None = None
    kind: str = "body"
    answer_start: int | None = None
    answer_end: int | None = None
    answer_score: float | None = None

    @property
    def highlight(self) -> str:
        """The text of the highlighted sentence."""
        return self.text[self.highlight_start - self.start : self.highlight_end - self.start]

    @property
    def answer(self) -> str | None:
        """The text of the answer span, if one is marked."""
        if self.answer_start is None or self.answer_end is None:
            return None
        return self.text[self.answer_start - self.start : self.answer_end - self.start]


@dataclass(frozen=True)
class Answer:
    """The bot's whole reply as a value: when declined, quotes hold the closest passage only."""

    question: str
    declined: bool
    quotes: tuple[Quote, ...]
    # The top of the ranking before quotes were picked: what the evaluation measures.
    ranking: tuple[Chunk, ...] = field(default=(), repr=False, compare=False)
    # What the decision rested on: the reader's best margin, the retrieval evidence.
    scores: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON shape printed by `bot.py --json`."""
        return {
            "question": self.question,
            "declined": self.declined,
            "quotes": [
                {
                    "text": q.text,
                    "doc_id": q.doc_id,
                    "title": q.title,
                    "paragraph": q.paragraph,
                    "start": q.start,
                    "end": q.end,
                    "highlight": q.highlight,
                    "score": round(q.score, 4),
                    "answer": None
                    if q.answer is None
                    else {
                        "text": q.answer,
                        "start": q.answer_start,
                        "end": q.answer_end,
                        "score": round(float(q.answer_score or 0.0), 4),
                    },
                }
                for q in self.quotes
            ],
        }


def clean_question(question: str) -> str:
    """The question as searched: normalised Unicode, no invisible or control characters."""
    if not isinstance(question, str):
        raise QuestionError("a question must be text", "not_text")
    text = unicodedata.normalize("NFC", question)
    text = SURROGATE.sub("\ufffd", INVISIBLE.sub("", text))
    text = CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if not text:
        raise QuestionError("the question is empty: type a question about the articles", "empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"the question is too long ({len(text)} characters); "
            f"please keep it under {MAX_QUESTION_CHARS}",
            "too_long",
            length=len(text),
            most=MAX_QUESTION_CHARS,
        )
    if not any(ch.isalnum() for ch in text):
        raise QuestionError(
            "the question has no words in it: type a question about the articles", "no_words"
        )
    return text


def is_elliptic(query: Query, index: PassageStore) -> bool:
    """A follow-up that brings no new topic: every word but question words is in the articles."""
    return query.follow_up and index.keyword.known(query.topic_stems) == len(query.topic_stems)


def search_text(question: str, history: Sequence[str], config: SearchConfig) -> str:
    """A follow-up read together with the chat's last questions (oldest first)."""
    recent = [h for h in history[-config.history_turns :] if h.strip()]
    return " ".join([*recent, question]) if config.history_turns and recent else question


def evidence(hits: Sequence[Hit], index: PassageStore, query: Query, config: SearchConfig) -> float:
    """How well the articles cover a query: best cosine, plus the coverage weight times the
    best share of its content words found in one of the top passages."""
    if not hits:
        return 0.0
    best_dense = max(h.dense for h in hits)
    if not query.content:
        return best_dense
    rows = np.array([h.row for h in hits[:EVIDENCE_DEPTH]], dtype=np.int64)
    _, shares = index.passage_terms.features(rows, query.content)
    return best_dense + config.decline_coverage_weight * float(shares.max())


def is_weak(
    query: Query, hits: Sequence[Hit], support: float, config: SearchConfig, threshold: float
) -> bool:
    """Too little retrieval evidence (`support`, from evidence()) to answer: below
    `threshold`, or for an English question a best cosine below the cross-lingual threshold."""
    if query.english:
        # Cross-lingual: the keyword side knows no English words, so the cosine decides alone.
        return not hits or max(h.dense for h in hits) < config.cross_lingual_threshold
    return support < threshold


def highlight(index: PassageStore, hit: Hit, queries: Sequence[Query]) -> tuple[int, int]:
    """The sentence of the hit that best answers: dense, keyword and answer-type signals."""
    chunk = hit.chunk
    if len(chunk.sentences) == 1:
        return chunk.sentences[0]
    a, b = index.sentence_offsets[hit.row], index.sentence_offsets[hit.row + 1]
    # A follow-up brings two vectors (alone and in context); the sentence should fit both.
    vectors = np.stack([q.vector for q in queries])
    dense = (index.sentence_vectors[a:b] @ vectors.T).mean(axis=1)
    features, overlap = index.sentence_terms.features(np.arange(a, b), queries[0].word_set)
    typed = features @ TYPED_WEIGHTS[TYPES.index(queries[0].kind)]
    score = HIGHLIGHT["dense"] * dense + HIGHLIGHT["word_overlap"] * overlap
    score = score + HIGHLIGHT["typed"] * typed
    return chunk.sentences[int(np.argmax(score))]


def answer_sentences(chunk: Chunk, start: int, end: int) -> tuple[int, int]:
    """The sentence (or run of sentences) of the chunk that holds the span [start, end)."""
    first = next((s for s in chunk.sentences if s[1] > start), chunk.sentences[-1])
    last = next((s for s in reversed(chunk.sentences) if s[0] < end), first)
    return first[0], max(first[1], last[1])


@dataclass(frozen=True)
class Candidate:
    """A retrieved passage, with the reader's verdict on it when it was read."""

    hit: Hit
    reading: Reading | None = None


def read_candidates(
    reader: Reader, query: Query, hits: list[Hit], config: ReaderConfig
) -> list[Candidate]:
    """The top passages read and re-ordered by how well they answer; the rest keep their order."""
    top = hits[: config.passages]
    readings = reader.read(query.text, [h.chunk.text for h in top])
    key = [r.margin + config.retrieval_weight * h.fused for h, r in zip(top, readings, strict=True)]
    order = np.argsort(-np.asarray(key), kind="stable")
    read = [Candidate(top[i], readings[i]) for i in order]
    return read + [Candidate(h) for h in hits[config.passages :]]


def compose(
    question: str,
    candidates: list[Candidate],
    index: PassageStore,
    queries: Sequence[Query],
    config: Config,
) -> Answer:
    """Pick the quotes, mark their answers and best sentences, or decline."""
    if not candidates:
        return Answer(question, True, ())
    query = queries[-1]
    search_config = config.search
    margins = [c.reading.margin for c in candidates if c.reading is not None]
    hits = [c.hit for c in candidates]
    support = evidence(hits, index, query, search_config)
    scores = {"evidence": round(support, 4)}
    if margins:
        best = max(margins)
        scores["reader_margin"] = round(best, 4)
        # The reader judges the passages it read; the evidence floor catches questions about
        # something the articles do not cover at all, where some passage still offers a span.
        declined = best < config.reader.decline_margin or is_weak(
            query, hits, support, search_config, config.reader.evidence_floor
        )
    else:
        declined = is_weak(query, hits, support, search_config, search_config.decline_threshold)
    chosen: list[Candidate] = []
    for candidate in candidates:
        if len(chosen) >= (1 if declined else search_config.max_quotes):
            break
        hit, reading = candidate.hit, candidate.reading
        if chosen and margins:
            # With the reader, further quotes only where it also finds an answer.
            if reading is None or reading.margin < config.reader.decline_margin:
                break
        elif chosen and hit.fused < 0.5 * chosen[0].hit.fused:
            # Without it, only passages that fusion rates near the first (the re-ranker's
            # shares are too peaked to compare passages that are both good).
            break
        vector = index.vectors[hit.row]
        if any(
            float(vector @ index.vectors[c.hit.row]) > search_config.duplicate_similarity
            for c in chosen
        ):
            continue
        chosen.append(candidate)
    quotes = [quote(index, c, queries, marked=not declined) for c in chosen]
    ranking = tuple(c.hit.chunk for c in candidates[:RANKING_SIZE])
    return Answer(question, declined, tuple(quotes), ranking, scores)


def quote(
    index: PassageStore, candidate: Candidate, queries: Sequence[Query], marked: bool
) -> Quote:
    """A candidate as a quote: its answer span (when marked) inside the highlighted sentence."""
    hit, reading = candidate.hit, candidate.reading
    chunk = hit.chunk
    info = index.articles.get(chunk.doc_id) or ArticleInfo(chunk.doc_id, "", "")
    span = None
    if marked and reading is not None and reading.end > reading.start:
        span = (chunk.start + reading.start, chunk.start + reading.end, reading.margin)
    if span:
        s, e = answer_sentences(chunk, span[0], span[1])
    else:
        s, e = highlight(index, hit, queries)
    return Quote(
        chunk.text,
        chunk.doc_id,
        info.title,
        chunk.paragraph,
        chunk.start,
        chunk.end,
        s,
        e,
        hit.score,
        info.url,
        chunk.kind,
        *(span or (None, None, None)),
    )


@functools.cache
def load_reader(path: str) -> Reader:
    """The reader for a weights file, loaded once per process."""
    return Reader(Path(path))


class Answerer:
    """Holds the models and the live index; answers questions; picks up a rebuilt index."""

    def __init__(self, config: Config, embedder: Embedder | None = None):
        self.config = config
        self.embedder = embedder or make_embedder(config.embedding)
        self.reader = (
            load_reader(
                str(config.resolve(config.reader.weights) if config.reader.weights else WEIGHTS)
            )
            if config.reader.enabled
            else None
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Answer] = OrderedDict()
        self._index = self._load()

    def _load(self) -> PassageStore:
        index = open_store(self.config)
        if index.manifest.get("dimension") != self.embedder.dim:
            raise IndexMismatchError(
                f"the index holds {index.manifest.get('dimension')}-d vectors but the model "
                f"gives {self.embedder.dim}-d ones. "
                f"Rebuild it with: {self.config.reindex_command(full=True)}"
            )
        return index

    @property
    def index(self) -> PassageStore:
        return self._index

    def articles(self) -> list[ArticleInfo]:
        """The indexed articles, by title."""
        return sorted(self._index.articles.values(), key=lambda a: (a.title.lower(), a.doc_id))

    def live_version(self) -> str:
        """The build id of the index the config points at now (may be newer than the loaded one)."""
        return live_version(self.config)

    def reload_if_changed(self) -> bool:
        """Load a newer index if one was swapped in; the old one serves until it is complete."""
        if self.live_version() == self._index.version:
            return False
        fresh = self._load()
        with self._lock:
            self._index = fresh
            self._cache.clear()
        return True

    def query(self, text: str, index: PassageStore) -> Query:
        """A search text prepared once for every stage."""
        vector = self.embedder.encode_queries([text])[0]
        return make_query(text, vector, index.keyword.stemming)

    def _retrieve(
        self,
        text: str,
        history: tuple[str, ...],
        index: PassageStore,
        hidden: np.ndarray | None = None,
    ) -> tuple[tuple[Query, ...], list[Hit]]:
        """Search the question alone; an elliptic one that is weak alone is re-read in context.

        Returns the queries searched (the question, then the question in context if it was
        re-read) and the hits of the last one."""
        config = self.config.search
        query = self.query(text, index)
        hits = search(index, query, config, hidden=hidden)
        if (
            history
            and config.history_turns
            and is_elliptic(query, index)
            and evidence(hits, index, query, config) < config.follow_up_threshold
        ):
            context = self.query(search_text(text, history, config), index)
            return (query, context), search(index, context, config, hidden=hidden)
        return (query,), hits

    def ask(
        self,
        question: str,
        history: Sequence[str] = (),
        hidden: Sequence[int] | None = None,
    ) -> Answer:
        """Answer one question, given the chat's earlier questions (oldest first).

        `hidden` are chunk rows of the loaded index to leave out (the evaluation's use).
        """
        text = clean_question(question)
        history = tuple(clean_question(h) for h in history if h and h.strip())
        index = self._index
        turns = self.config.search.history_turns
        key = (text.casefold(), history[-turns:] if turns else (), index.version)
        with self._lock:
            if hidden is None and key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        rows = None if hidden is None else np.unique(np.asarray(hidden, dtype=np.int64))
        queries, hits = self._retrieve(text, history, index, rows)
        if self.reader is not None and hits:
            # The reader reads the question itself: the search found the passages in context,
            # and a question joined to earlier ones would be answered as the earlier ones.
            candidates = read_candidates(self.reader, queries[0], hits, self.config.reader)
        else:
            candidates = [Candidate(h) for h in hits]
        answer = compose(text, candidates, index, queries, self.config)
        if self.config.search.cache_size and hidden is None:
            with self._lock:
                self._cache[key] = answer
                while len(self._cache) > self.config.search.cache_size:
                    self._cache.popitem(last=False)
        return answer
