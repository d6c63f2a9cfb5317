"""Word sets prepared at index time: the same features as reading the texts at question time."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.index.keyword import tokenize
from retrieval.index.terms import MONTHS_AND_DAYS, NUMBER_WORDS, TermTable, text_terms

WORDS = st.sampled_from(
    "Kim kim Rusia Jumat (22/9) 2023 1999 tiga puluh Rp80.000 di ke yang Seoul Jong-un "
    "O'Neil 3-0 September ribu Pyongyang politbiro, . ? kunjungan langkah-langkah".split()
)
TEXTS = st.lists(WORDS, min_size=0, max_size=12).map(" ".join)


def reference_features(question: frozenset[str], text: str) -> list[float]:
    """The features read straight from the text with sets, as the specification."""
    tokens, years, names = text_terms(text)
    novel = tokens - question
    dates = bool(novel & MONTHS_AND_DAYS) or any("/" in w and w[0].isdigit() for w in novel)
    return [
        min(sum(1 for w in novel if w[0].isdigit()), 3) / 3,
        min(len(years - question), 2) / 2,
        float(dates),
        float(bool(novel & NUMBER_WORDS)),
        min(len(names - question), 5) / 5,
        len(question & tokens) / max(1, len(question)),
    ]


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=6), question=TEXTS, data=st.data())
def test_prepared_features_equal_reading_the_texts(texts, question, data):
    table = TermTable.build(texts)
    rows = data.draw(st.lists(st.integers(0, len(texts) - 1), max_size=8))
    words = frozenset(tokenize(question))
    typed, covered = table.features(np.array(rows, dtype=np.int64), words)
    assert typed.shape == (len(rows), 5) and covered.shape == (len(rows),)
    for i, row in enumerate(rows):
        expected = reference_features(words, texts[row])
        assert typed[i].tolist() + [covered[i]] == expected


def test_saved_table_loads_the_same(tmp_path):
    texts = ["Kim tiba di Vladivostok pada Rabu (13/9) 2023.", "", "Tiga puluh ribu orang."]
    table = TermTable.build(texts)
    table.save(tmp_path / "terms")
    loaded = TermTable.load(tmp_path / "terms")
    assert loaded.count == table.count == 3
    question = frozenset(tokenize("Berapa orang datang ke Vladivostok?"))
    rows = np.array([0, 1, 2])
    for a, b in zip(table.features(rows, question), loaded.features(rows, question), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_empty_table_gives_empty_features():
    typed, covered = TermTable.build([]).features(np.array([], dtype=np.int64), frozenset({"a"}))
    assert typed.shape == (0, 5) and covered.shape == (0,)
