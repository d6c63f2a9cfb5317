"""What a question may look like: odd Unicode, HTML, control characters, size."""

from __future__ import annotations

import pytest

from retrieval.answering.answer import MAX_QUESTION_CHARS, clean_question
from retrieval.errors import QuestionError


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("  Siapa\tKim?\n", "Siapa Kim?"),
        ("Si\u200bapa Kim?", "Siapa Kim?"),  # zero-width space
        ("\u202eSiapa Kim?", "Siapa Kim?"),  # right-to-left override
        ("Siapa\x00Kim?", "Siapa Kim?"),
        ("caf\udce9 Kim", "caf\ufffd Kim"),  # an undecodable byte from stdin
        ("<b>&</b> Kim?", "<b>&</b> Kim?"),  # HTML is text; adapters escape it
        ("Cafe\u0301", "Café"),  # NFC
    ],
)
def test_questions_are_cleaned(raw, cleaned):
    assert clean_question(raw) == cleaned
    clean_question(raw).encode("utf-8")  # always printable


@pytest.mark.parametrize(
    "raw, message",
    [
        ("", "the question is empty"),
        (" \u200b\n", "the question is empty"),
        ("?!… 🙂🙂", "the question has no words in it"),
        ("kata " * 300, f"at most {MAX_QUESTION_CHARS} characters"),
    ],
)
def test_bad_questions_get_a_clear_message(raw, message):
    with pytest.raises(QuestionError, match=message):
        clean_question(raw)
