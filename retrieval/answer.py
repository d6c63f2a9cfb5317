"""From a question and the chat's earlier questions to an Answer: quotes, highlights, declining."""

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

from .chunking import Chunk
from .config import Config, SearchConfig
from .embedding import Embedder, make_embedder
from .errors import IndexMismatchError, QuestionError
from .index import ArticleInfo, IndexData, load_index, read_manifest
from .keyword import tokenize
from .search import TYPED_WEIGHTS, TYPES, Hit, question_type, search

MAX_QUESTION_CHARS = 1000
RANKING_SIZE = 10
# The evidence reads the word coverage of this many of the top passages.
EVIDENCE_DEPTH = 5
# Invisible characters that change nothing for a reader but break tokens.
INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad]")
# Lone surrogates: what undecodable input bytes become; they cannot be printed or encoded.
SURROGATE = re.compile(r"[\ud800-\udfff]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Words that make a question lean on an earlier one.
ANAPHORA = frozenset(
    "itu ini tersebut dia ia beliau mereka nya -nya sana situ begitu "
    "it that this he she they them his her their there then".split()
)
# Question words: a follow-up made of these, pronouns and known words is about the last topic.
QUESTION_WORDS = frozenset(
    "apa apakah siapa siapakah kapan kapankah berapa berapakah mana manakah dimana dimanakah "
    "bagaimana mengapa kenapa yang di ke dari what who when where why how which".split()
)
# Common English words: enough of them mark a question as English.
ENGLISH_WORDS = frozenset(
    "the a an of on in at to for from by with about is are was were be been do does did "
    "what who whom whose which when where why how many much and or not that this it its "
    "has have had will would can could should".split()
)


@dataclass(frozen=True)
class Quote:
    """A passage quoted exactly from an article, with its best sentence marked."""

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

    @property
    def highlight(self) -> str:
        """The text of the highlighted sentence."""
        return self.text[self.highlight_start - self.start : self.highlight_end - self.start]


@dataclass(frozen=True)
class Answer:
    """The bot's whole reply as a value: when declined, quotes hold the closest passage only."""

    question: str
    declined: bool
    quotes: tuple[Quote, ...]
    # The top of the ranking before quotes were picked: what the evaluation measures.
    ranking: tuple[Chunk, ...] = field(default=(), repr=False, compare=False)

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
                }
                for q in self.quotes
            ],
        }


def clean_question(question: str) -> str:
    """The question as searched: normalised Unicode, no invisible or control characters."""
    if not isinstance(question, str):
        raise QuestionError("a question must be text")
    text = unicodedata.normalize("NFC", question)
    text = SURROGATE.sub("\ufffd", INVISIBLE.sub("", text))
    text = CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if not text:
        raise QuestionError("the question is empty: type a question about the articles")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"the question is too long ({len(text)} characters); "
            f"please keep it under {MAX_QUESTION_CHARS}"
        )
    if not any(ch.isalnum() for ch in text):
        raise QuestionError("the question has no words in it: type a question about the articles")
    return text


def is_follow_up(question: str) -> bool:
    """A question that may lean on an earlier one: very short, or pointing back with a pronoun."""
    words = tokenize(question)
    return len(words) <= 3 or any(w in ANAPHORA for w in words)


def is_elliptic(question: str, index: IndexData) -> bool:
    """A follow-up that brings no new topic: every word but question words is in the articles."""
    if not is_follow_up(question):
        return False
    words = [w for w in tokenize(question) if w not in QUESTION_WORDS and w not in ANAPHORA]
    tokens = [t for w in words for t in tokenize(w, index.keyword.stemming)]
    return index.keyword.known(tokens) == len(tokens)


def is_english(question: str) -> bool:
    """A question written in English: the Indonesian keyword index cannot vouch for it."""
    words = tokenize(question)
    return sum(1 for w in words if w in ENGLISH_WORDS) >= max(1, 0.25 * len(words))


def search_text(question: str, history: Sequence[str], config: SearchConfig) -> str:
    """A follow-up read together with the chat's last questions (oldest first)."""
    recent = [h for h in history[-config.history_turns :] if h.strip()]
    return " ".join([*recent, question]) if config.history_turns and recent else question


@functools.cache
def stop_words() -> frozenset[str]:
    """Words that say nothing of a question's topic: Sastrawi's Indonesian stop words,
    question words, pronouns and common English words."""
    from Sastrawi.StopWordRemover.StopWordRemoverFactory import StopWordRemoverFactory

    words = StopWordRemoverFactory().get_stop_words()
    return frozenset(words) | QUESTION_WORDS | ANAPHORA | ENGLISH_WORDS


def content_words(query: str) -> frozenset[str]:
    """The words of a query that name its topic."""
    return frozenset(tokenize(query)) - stop_words()


def evidence(hits: Sequence[Hit], index: IndexData, query: str, config: SearchConfig) -> float:
    """How well the articles cover a query: best cosine, plus the coverage weight times the
    best share of its content words found in one of the top passages."""
    if not hits:
        return 0.0
    best_dense = max(h.dense for h in hits)
    words = content_words(query)
    if not words:
        return best_dense
    rows = np.array([h.row for h in hits[:EVIDENCE_DEPTH]], dtype=np.int64)
    _, shares = index.passage_terms.features(rows, words)
    return best_dense + config.decline_coverage_weight * float(shares.max())


def is_weak(query: str, hits: Sequence[Hit], index: IndexData, config: SearchConfig) -> bool:
    """Too little evidence to answer: the answer declines."""
    if is_english(query):
        # Cross-lingual: the keyword side knows no English words, so the cosine decides alone.
        return not hits or max(h.dense for h in hits) < config.cross_lingual_threshold
    return evidence(hits, index, query, config) < config.decline_threshold


def highlight(
    index: IndexData,
    hit: Hit,
    words: frozenset[str],
    typed_weights: np.ndarray,
    vectors: Sequence[np.ndarray],
) -> tuple[int, int]:
    """The sentence of the hit that best answers: dense, keyword and answer-type signals.

    `words` are the question's tokens and `typed_weights` the answer-type weights of its kind.
    """
    chunk = hit.chunk
    if len(chunk.sentences) == 1:
        return chunk.sentences[0]
    a, b = index.sentence_offsets[hit.row], index.sentence_offsets[hit.row + 1]
    # A follow-up brings two vectors (alone and in context); the sentence should fit both.
    dense = (index.sentence_vectors[a:b] @ np.stack(vectors).T).mean(axis=1)
    features, overlap = index.sentence_terms.features(np.arange(a, b), words)
    typed = features @ typed_weights
    # Weights from FacQA train: answer sentence picked in 0.867 of multi-sentence gold
    # passages, against 0.844 by dense similarity alone.
    score = dense + 0.5 * overlap + 0.1 * typed
    return chunk.sentences[int(np.argmax(score))]


def compose(
    question: str,
    hits: list[Hit],
    index: IndexData,
    query: str,
    vectors: Sequence[np.ndarray],
    config: SearchConfig,
) -> Answer:
    """Pick the quotes, mark their best sentences, and decline when the evidence is weak."""
    if not hits:
        return Answer(question, True, ())
    declined = is_weak(query, hits, index, config)
    chosen: list[Hit] = []
    for hit in hits:
        if len(chosen) >= (1 if declined else config.max_quotes):
            break
        # Further passages only when fusion rates them near the first (the re-ranker's
        # shares are too peaked to compare passages that are both good).
        if chosen and hit.fused < 0.5 * chosen[0].fused:
            break
        vector = index.vectors[hit.row]
        if any(float(vector @ index.vectors[c.row]) > config.duplicate_similarity for c in chosen):
            continue
        chosen.append(hit)
    words = frozenset(tokenize(question))
    typed_weights = TYPED_WEIGHTS[TYPES.index(question_type(question))]
    quotes = []
    for hit in chosen:
        info = index.articles.get(hit.chunk.doc_id) or ArticleInfo(hit.chunk.doc_id, "", "")
        s, e = highlight(index, hit, words, typed_weights, vectors)
        quotes.append(
            Quote(
                hit.chunk.text,
                hit.chunk.doc_id,
                info.title,
                hit.chunk.paragraph,
                hit.chunk.start,
                hit.chunk.end,
                s,
                e,
                hit.score,
                info.url,
                hit.chunk.kind,
            )
        )
    ranking = tuple(h.chunk for h in hits[:RANKING_SIZE])
    return Answer(question, declined, tuple(quotes), ranking)


class Answerer:
    """Holds the model and the live index; answers questions; picks up a rebuilt index."""

    def __init__(self, config: Config, embedder: Embedder | None = None):
        self.config = config
        self.embedder = embedder or make_embedder(config.embedding)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, Answer] = OrderedDict()
        self._index = self._load()

    def _load(self) -> IndexData:
        index = load_index(self.config.index_path, self.config)
        if index.manifest.get("dimension") != self.embedder.dim:
            raise IndexMismatchError(
                f"the index holds {index.manifest.get('dimension')}-d vectors but the model "
                f"gives {self.embedder.dim}-d ones. "
                f"Rebuild it with: {self.config.reindex_command(full=True)}"
            )
        return index

    @property
    def index(self) -> IndexData:
        return self._index

    def articles(self) -> list[ArticleInfo]:
        """The indexed articles, by title."""
        return sorted(self._index.articles.values(), key=lambda a: (a.title.lower(), a.doc_id))

    def live_version(self) -> str:
        """The build id of the index the config points at now (may be newer than the loaded one)."""
        path = Path(self.config.index_path)
        return read_manifest(Path(path.resolve())).get("build_id", "")

    def reload_if_changed(self) -> bool:
        """Load a newer index if one was swapped in; the old one serves until it is complete."""
        if self.live_version() == self._index.version:
            return False
        fresh = self._load()
        with self._lock:
            self._index = fresh
            self._cache.clear()
        return True

    def _retrieve(
        self,
        text: str,
        history: tuple[str, ...],
        index: IndexData,
        hidden: np.ndarray | None = None,
    ) -> tuple[str, tuple[np.ndarray, ...], list[Hit]]:
        """Search the question alone; an elliptic one that is weak alone is re-read in context."""
        config = self.config.search
        vector = self.embedder.encode_queries([text])[0]
        hits = search(index, text, vector, config, hidden=hidden)
        if (
            history
            and config.history_turns
            and is_elliptic(text, index)
            and evidence(hits, index, text, config) < config.follow_up_threshold
        ):
            query = search_text(text, history, config)
            context_vector = self.embedder.encode_queries([query])[0]
            context_hits = search(index, query, context_vector, config, hidden=hidden)
            return query, (vector, context_vector), context_hits
        return text, (vector,), hits

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
        query, vectors, hits = self._retrieve(text, history, index, rows)
        answer = compose(text, hits, index, query, vectors, self.config.search)
        if self.config.search.cache_size and hidden is None:
            with self._lock:
                self._cache[key] = answer
                while len(self._cache) > self.config.search.cache_size:
                    self._cache.popitem(last=False)
        return answer
