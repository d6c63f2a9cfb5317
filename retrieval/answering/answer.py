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
from ..models.reader import WEIGHTS, Reader, Reading, Span
from .conversation import FollowUp, Turn, read_in_context
from .entities import asked_kind, fits, titled_span_end
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
# The three kinds of reply: an answer marked in bold, the passage about the question without a
# mark (no answer in it is certain), or a decline.
KINDS = ("answer", "passage", "declined")
# How far before a span a title or place word that types it may stand ("Menteri … Shoigu").
SPAN_CONTEXT = 40


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
    # The article's outlet and publication date as its front matter gives them.
    source: str | None = None
    published: str | None = None

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
    """The bot's whole reply as a value, of one of three kinds: "answer" (quotes with their
    answers marked), "passage" (the passage about the question, no answer marked: none was
    certain) or "declined" (quotes hold the closest passage only, which is no answer).
    `read_as` is the question as read in its chat (a follow-up rewritten to stand alone)."""

    question: str
    kind: str
    quotes: tuple[Quote, ...]
    read_as: str = ""
    # The top of the ranking before quotes were picked: what the evaluation measures.
    ranking: tuple[Chunk, ...] = field(default=(), repr=False, compare=False)
    # What the decision rested on: the reader's best margin, the retrieval evidence.
    scores: dict = field(default_factory=dict, repr=False, compare=False)
    # The rows of the quoted passages, in the index build `version`.
    rows: tuple[int, ...] = field(default=(), repr=False, compare=False)
    version: str = field(default="", repr=False, compare=False)
    # The reader's best span of the asked kind in the first passage, marked or not.
    span: str | None = field(default=None, repr=False, compare=False)

    @property
    def declined(self) -> bool:
        return self.kind == "declined"

    @property
    def reading(self) -> str:
        """The question as it was read (itself, unless a follow-up was rewritten)."""
        return self.read_as or self.question

    def turn(self) -> Turn:
        """This exchange as the next question of the chat sees it: the marked answer, or in a
        passage reply the span the reader found likeliest (what "dia" may point at)."""
        marked = self.quotes[0].answer if self.kind == "answer" and self.quotes else None
        found = marked or (self.span if self.kind == "passage" else None)
        return Turn(self.question, self.reading, self.kind, found, self.rows, self.version)

    def to_dict(self) -> dict:
        """The JSON shape printed by `bot.py --json`."""
        return {
            "question": self.question,
            "read_as": self.reading,
            "kind": self.kind,
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
            f"at most {MAX_QUESTION_CHARS} characters, please",
            "too_long",
            length=len(text),
            most=MAX_QUESTION_CHARS,
        )
    if not any(ch.isalnum() for ch in text):
        raise QuestionError(
            "the question has no words in it: type a question about the articles", "no_words"
        )
    return text


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


def highlight(
    index: PassageStore, hit: Hit, query: Query, embedder: Embedder | None = None
) -> tuple[int, int]:
    """The sentence of the hit that best answers: dense, keyword and answer-type signals."""
    chunk = hit.chunk
    if len(chunk.sentences) == 1:
        return chunk.sentences[0]
    a, b = index.sentence_offsets[hit.row], index.sentence_offsets[hit.row + 1]
    vectors = np.asarray(index.sentence_vectors[a:b], dtype=np.float32)
    if embedder is not None and stand_ins(vectors, index.vectors[hit.row]):
        # Built without sentence vectors (index.sentence_vectors: false): the sentences of
        # the passage quoted are embedded now, as indexing would have embedded them.
        texts = [chunk.text[s - chunk.start : e - chunk.start] for s, e in chunk.sentences]
        vectors = np.asarray(embedder.encode_passages(texts), dtype=np.float32)
    dense = vectors @ query.vector
    features, overlap = index.sentence_terms.features(np.arange(a, b), query.word_set)
    typed = features @ TYPED_WEIGHTS[TYPES.index(query.kind)]
    score = HIGHLIGHT["dense"] * dense + HIGHLIGHT["word_overlap"] * overlap
    score = score + HIGHLIGHT["typed"] * typed
    return chunk.sentences[int(np.argmax(score))]


def stand_ins(sentence_vectors: np.ndarray, passage_vector: np.ndarray) -> bool:
    """Whether a multi-sentence passage's sentence vectors are all its own vector: what an
    index built without sentence vectors holds in their place (a sentence's real vector is
    never exactly its whole passage's)."""
    whole = np.broadcast_to(passage_vector, sentence_vectors.shape)
    return bool(np.array_equal(sentence_vectors, whole))


def answer_sentences(chunk: Chunk, start: int, end: int) -> tuple[int, int]:
    """The sentence (or run of sentences) of the chunk that holds the span [start, end)."""
    first = next((s for s in chunk.sentences if s[1] > start), chunk.sentences[-1])
    last = next((s for s in reversed(chunk.sentences) if s[0] < end), first)
    return first[0], max(first[1], last[1])


@dataclass(frozen=True)
class Candidate:
    """A retrieved passage, with the reader's verdict on it when it was read, and its best
    span of the kind the question asks for (none when no span read is of that kind)."""

    hit: Hit
    reading: Reading | None = None
    span: Span | None = None


def fitting_span(reading: Reading, text: str, asked: str) -> Span | None:
    """The reader's best span in text that is of the kind the question asks for; for a
    who-question, a title alone takes in the name after it ("Menteri Pertahanan Rusia" ->
    "… Sergei Shoigu")."""
    for span in reading.spans:
        before = text[max(0, span.start - SPAN_CONTEXT) : span.start]
        if fits(asked, text[span.start : span.end], before):
            if asked == "person":
                return Span(span.start, titled_span_end(text, span.start, span.end), span.score)
            return span
    return None


def read_candidates(
    reader: Reader,
    query: Query,
    hits: list[Hit],
    config: ReaderConfig,
    asked: str,
    earlier: Sequence[int] = (),
) -> list[Candidate]:
    """The top passages read and re-ordered by how well they answer; the rest keep their order.
    A follow-up's `earlier` rows (the passages the last reply quoted) are read too.

    The first passage is read alone, then the next ones as many at a time as the reader has
    threads; reading stops once the best answer so far is clearly ahead (clearly_ahead) of
    every passage not read yet, which then keep their order after the ones read. A passage
    whose spans are none of the asked kind ("Vladivostok, Rusia" for a who-question) goes
    after those that hold one."""
    top = hits[: config.passages]
    top += [h for h in hits[config.passages :] if h.row in earlier]
    rest = [Candidate(h) for h in hits[config.passages :] if h.row not in earlier]
    read: list[Candidate] = []
    step = 1
    while True:
        read += read_passages(reader, query, top[len(read) : len(read) + step], asked)
        read = ordered(read, config)
        unread = top[len(read) :]
        if not unread or clearly_ahead(read[0], unread, config):
            return read + [Candidate(h) for h in unread] + rest
        step = reader.workers


def decline_floor(config: ReaderConfig, follow_up: bool, english: bool) -> float:
    """The margin below which the reader declines: a follow-up read in the chat's context
    and an English question (read beside Indonesian passages, its margins run lower) each
    have their own, and a question that is both takes the lower."""
    floor = config.follow_up_decline_margin if follow_up else config.decline_margin
    return min(floor, config.english_decline_margin) if english else floor


def near_threshold(
    candidates: Sequence[Candidate], config: ReaderConfig, follow_up: bool, english: bool = False
) -> bool:
    """Whether the kind of reply rests on a margin closer to its threshold than
    `reader.recheck_margin`: the best margin to the decline margin (decline_floor), or the
    first passage's span to the bold threshold. The int8 reader's margins differ from the
    float32 reader's by 0.2 on average, so such a reply could go either way."""
    within = config.recheck_margin
    margins = [c.reading.margin for c in candidates if c.reading is not None]
    if within <= 0 or not margins:
        return False
    floor = decline_floor(config, follow_up, english)
    span = candidates[0].span
    return abs(max(margins) - floor) < within or (
        span is not None and abs(span.score - config.answer_margin) < within
    )


def ordered(read: list[Candidate], config: ReaderConfig) -> list[Candidate]:
    """Passages read, by their span's margin plus retrieval_weight times their fused score."""
    key = [
        (c.span.score if c.span else c.reading.margin - UNFIT)
        + config.retrieval_weight * c.hit.fused
        for c in read
    ]
    return [read[i] for i in np.argsort(-np.asarray(key), kind="stable")]


def read_passages(reader: Reader, query: Query, hits: Sequence[Hit], asked: str) -> list[Candidate]:
    """The passages read, each with its best span of the asked kind."""
    readings = reader.read(query.text, [h.chunk.text for h in hits])
    return [
        Candidate(hit, reading, fitting_span(reading, hit.chunk.text, asked))
        for hit, reading in zip(hits, readings, strict=True)
    ]


def clearly_ahead(best: Candidate, unread: Sequence[Hit], config: ReaderConfig) -> bool:
    """Whether the best passage read so far would stay first if the others were read: its span
    of the asked kind is marked (beats "no answer" by reader.answer_margin), and its lead, the
    span's margin plus retrieval_weight times how far its fused score is above the best
    unread passage's, is at least reader.first_lead. An unread passage would need a span
    margin above that lead to go before it."""
    span = best.span
    if span is None or span.score < config.answer_margin:
        return False
    lead = span.score + config.retrieval_weight * (best.hit.fused - max(h.fused for h in unread))
    return lead >= config.first_lead


# A passage without a span of the asked kind ranks as if its best span were this much weaker.
UNFIT = 100.0


def reply_kind(candidates: list[Candidate], declined: bool, config: ReaderConfig) -> str:
    """answer: the first passage's span is of the asked kind and beats "no answer" by at least
    reader.answer_margin; passage: the articles cover the question but no span is that sure;
    declined: they do not seem to cover it."""
    if declined:
        return "declined"
    first = candidates[0]
    if first.reading is None:
        return "answer"  # the reader is off: retrieval alone answers, as before it
    if first.span is not None and first.span.score >= config.answer_margin:
        return "answer"
    return "passage"


def compose(
    question: str,
    candidates: list[Candidate],
    index: PassageStore,
    query: Query,
    config: Config,
    read_as: str = "",
    embedder: Embedder | None = None,
) -> Answer:
    """Pick the quotes, mark their answers and best sentences, or decline (`embedder`: to
    embed a quoted passage's sentences when the index holds none)."""
    if not candidates:
        return Answer(question, "declined", (), read_as, version=index.version)
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
        # A follow-up read in the chat's context is about what the chat was about: the
        # articles cover its topic, and the reader may decline it only when surer. An
        # English question has its own floor: the evidence check (is_weak) keeps its own
        # cosine threshold for questions about something the articles lack.
        floor = decline_floor(config.reader, bool(read_as), query.english)
        declined = best < floor or is_weak(
            query, hits, support, search_config, config.reader.evidence_floor
        )
    else:
        declined = is_weak(query, hits, support, search_config, search_config.decline_threshold)
    kind = reply_kind(candidates, declined, config.reader)
    if candidates[0].span is not None:
        scores["answer_margin"] = round(candidates[0].span.score, 4)
    chosen: list[Candidate] = []
    for candidate in candidates:
        if len(chosen) >= (search_config.max_quotes if kind == "answer" else 1):
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
    quotes = [quote(index, c, query, kind, config.reader, embedder) for c in chosen]
    ranking = tuple(c.hit.chunk for c in candidates[:RANKING_SIZE])
    rows = tuple(c.hit.row for c in chosen)
    first = candidates[0]
    span = first.hit.chunk.text[first.span.start : first.span.end] if first.span else None
    return Answer(
        question, kind, tuple(quotes), read_as, ranking, scores, rows, index.version, span
    )


def quote(
    index: PassageStore,
    candidate: Candidate,
    query: Query,
    kind: str,
    config: ReaderConfig,
    embedder: Embedder | None = None,
) -> Quote:
    """A candidate as a quote. In an answer, a span of the asked kind that the reader is sure
    enough of is marked, inside its highlighted sentence; in a passage reply the sentence of
    the best such span is highlighted, unmarked; else the highlighter picks the sentence."""
    hit, reading, span = candidate.hit, candidate.reading, candidate.span
    chunk = hit.chunk
    info = index.articles.get(chunk.doc_id) or ArticleInfo(chunk.doc_id, "", "")
    marked = None
    if reading is None and kind == "answer":
        highlighted = highlight(index, hit, query, embedder)
    elif span is not None and kind != "declined":
        start, end = chunk.start + span.start, chunk.start + span.end
        highlighted = answer_sentences(chunk, start, end)
        if kind == "answer" and span.score >= config.answer_margin:
            marked = (start, end, span.score)
    else:
        highlighted = highlight(index, hit, query, embedder)
    return Quote(
        chunk.text,
        chunk.doc_id,
        info.title,
        chunk.paragraph,
        chunk.start,
        chunk.end,
        *highlighted,
        hit.score,
        info.url,
        chunk.kind,
        *(marked or (None, None, None)),
        info.source,
        info.published,
    )


def reader_weights(config: Config) -> str:
    """The reader's weights file a config names: reader.weights, or the shipped one."""
    return str(config.resolve(config.reader.weights) if config.reader.weights else WEIGHTS)


@functools.cache
def load_reader(path: str, runtime: str = "onnxruntime") -> Reader:
    """The reader for a weights file and runtime, loaded once per process."""
    return Reader(Path(path), runtime=runtime)


class Answerer:
    """Holds the models and the live index; answers questions; picks up a rebuilt index."""

    def __init__(self, config: Config, embedder: Embedder | None = None):
        self.config = config
        self.embedder = embedder or make_embedder(config.embedding)
        self._weights = reader_weights(config)
        self.reader = (
            load_reader(self._weights, config.reader.runtime) if config.reader.enabled else None
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Answer] = OrderedDict()
        self._index = self._load()

    def exact_reader(self) -> Reader:
        """The float32 reader of the same weights, loaded the first time a reply is too close
        to call in int8 (84 MB more in memory from then on)."""
        return load_reader(self._weights, "numpy")

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

    def read_as(self, question: str, history: Sequence[Turn | str] = ()) -> FollowUp:
        """The question as read in its chat: a follow-up rewritten to stand alone."""
        return read_in_context(
            clean_question(question), self.turns(history), self.config.search.history_turns
        )

    def turns(self, history: Sequence[Turn | str]) -> list[Turn]:
        """The chat's earlier turns; earlier questions given as text are asked again, in
        order, each in the context of those before it (their answers are part of the chat)."""
        turns: list[Turn] = []
        for item in history[-self.config.search.history_turns :] if history else ():
            if isinstance(item, Turn):
                turns.append(item)
            elif item and item.strip():
                turns.append(self.ask(item, tuple(turns)).turn())
        return turns

    def ask(
        self,
        question: str,
        history: Sequence[Turn | str] = (),
        hidden: Sequence[int] | None = None,
    ) -> Answer:
        """Answer one question, given the chat's earlier turns (oldest first; an earlier
        question given as text is asked again to learn its answer).

        `hidden` are chunk rows of the loaded index to leave out (the evaluation's use).
        """
        text = clean_question(question)
        turns = self.turns(history)
        follow_up = read_in_context(text, turns, self.config.search.history_turns)
        index = self._index
        # A follow-up also searches the passages the last reply quoted (rows of this build).
        earlier = (
            tuple(turns[-1].rows)
            if follow_up.depends and turns and turns[-1].version == index.version
            else ()
        )
        key = (text, follow_up.text.casefold(), earlier, index.version)
        with self._lock:
            if hidden is None and key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        rows = None if hidden is None else np.unique(np.asarray(hidden, dtype=np.int64))
        query = self.query(follow_up.text, index)
        hits = search(index, query, self.config.search, hidden=rows, include=earlier)
        asked = asked_kind(follow_up.text)
        read_as = follow_up.text if follow_up.text != text else ""
        if self.reader is not None and hits:
            candidates = read_candidates(
                self.reader, query, hits, self.config.reader, asked, earlier
            )
            if self.reader.runtime != "numpy" and near_threshold(
                candidates, self.config.reader, bool(read_as), query.english
            ):
                # Too close to call in int8: the float32 reader reads them again.
                candidates = read_candidates(
                    self.exact_reader(), query, hits, self.config.reader, asked, earlier
                )
        else:
            candidates = [Candidate(h) for h in hits]
        answer = compose(text, candidates, index, query, self.config, read_as, self.embedder)
        if self.config.search.cache_size and hidden is None:
            with self._lock:
                self._cache[key] = answer
                while len(self._cache) > self.config.search.cache_size:
                    self._cache.popitem(last=False)
        return answer
