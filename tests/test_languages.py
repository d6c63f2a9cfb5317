"""Replies in the reader's language: Indonesian and English texts, in the console and Telegram."""

from __future__ import annotations

import dataclasses
import string

import pytest

from chat.console import ask_once, format_answer, format_sources
from chat.texts import ENGLISH, INDONESIAN, TEXTS, Texts, for_question, for_user
from retrieval.answering.answer import Answer, Answerer, clean_question
from retrieval.answering.query import question_language
from retrieval.config import Config
from retrieval.errors import QuestionError
from tests.conftest import FakeEmbedder, with_search
from tests.fake_telegram import FakeTelegram
from tests.test_bot import one_reply, running
from tests.test_bot_format import make_quote


@pytest.fixture
def qa(tiny_index: Config, fake_embedder: FakeEmbedder) -> Answerer:
    return Answerer(with_search(tiny_index, decline_threshold=0.3), embedder=fake_embedder)


@pytest.fixture
def fake():
    with FakeTelegram() as server:
        yield server


@pytest.mark.parametrize(
    "question, language",
    [
        ("Siapa yang berjabat tangan dengan Kim Jong Un?", "id"),
        ("Berapa harga cabai rawit di Pasar Minggu?", "id"),
        ("Who shook hands with Kim Jong Un?", "en"),
        ("What is the price of chillies?", "en"),
        ("!!!", "id"),
    ],
)
def test_a_question_is_english_or_indonesian(question, language):
    assert question_language(question) == language
    assert for_question("auto", question).language == language
    assert for_question("en", question) is ENGLISH  # a fixed ui.language wins
    assert for_question("id", question) is INDONESIAN


@pytest.mark.parametrize(
    "code, language",
    [("en", "en"), ("en-GB", "en"), ("id", "id"), ("ID", "id"), ("de", "id"), (None, "id")],
)
def test_commands_follow_the_users_telegram_language_or_indonesian(code, language):
    assert for_user("auto", code).language == language
    assert for_user("en", "id") is ENGLISH


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_table_has_every_text_with_the_same_placeholders():
    for texts in TEXTS.values():
        for f in dataclasses.fields(Texts):
            value, english = getattr(texts, f.name), getattr(ENGLISH, f.name)
            if f.name == "skip_reasons":
                continue
            assert value or f.name == "skip_reasons", (texts.language, f.name)
            if isinstance(value, str):
                assert _placeholders(value) == _placeholders(english), (texts.language, f.name)
        assert [name for name, _ in texts.commands] == ["start", "help", "sources", "ask", "forget"]
    assert INDONESIAN != ENGLISH
    assert INDONESIAN.articles(1) == "1 artikel terindeks" and ENGLISH.articles(2).endswith(
        "les indexed"
    )


def problem(question: str) -> QuestionError:
    with pytest.raises(QuestionError) as caught:
        clean_question(question)
    return caught.value


def test_question_problems_are_said_in_the_questions_language():
    assert ENGLISH.cannot_ask(problem("   ")) == (
        "the question is empty: type a question about the articles"
    )
    assert INDONESIAN.cannot_ask(problem("???")).startswith("pertanyaannya tidak berisi kata")
    assert "terlalu panjang (2000 karakter)" in INDONESIAN.cannot_ask(problem("k" * 2000))


@pytest.mark.parametrize(
    "question, kind",
    [
        ("   ", "empty"),
        # Only invisible or control characters: empty once cleaned (before, the texts guessed
        # from the raw question and said it had no words).
        ("\u200b\u200b", "empty"),
        ("\x00\x01", "empty"),
        ("???", "no_words"),
        ("k" * 2000, "too_long"),
        (" k" * 1500, "too_long"),
    ],
)
def test_a_question_problem_is_said_by_its_kind_as_retrieval_found_it(question, kind):
    error = problem(question)
    assert error.kind == kind
    english = ENGLISH.cannot_ask(error)
    assert english == str(error)  # the English table says what retrieval says
    indonesian = INDONESIAN.cannot_ask(error)
    expected = {
        "empty": INDONESIAN.question_empty,
        "no_words": INDONESIAN.question_no_words,
        "too_long": INDONESIAN.question_too_long.format(n=error.length, most=error.most),
    }
    assert indonesian == expected[kind]
    if kind == "too_long":
        assert f"({len(' '.join(question.split()))} karakter)" in indonesian


def test_the_console_and_the_bot_say_an_invisible_question_is_empty(qa, fake, capsys):
    assert ask_once(qa, "\u200b\u200b", as_json=False) == 1
    assert capsys.readouterr().err == f"tanya: {INDONESIAN.question_empty}\n"
    with running(qa, fake):
        text = one_reply(fake, fake.message(4201, "\x00\x01"))["text"]
    assert text == "Pertanyaannya kosong: tulis pertanyaan tentang artikel."


def test_the_console_answers_in_the_language_of_the_question():
    quote = make_quote("Tidak relevan.", (0, 14), kind="caption")
    english = format_answer(Answer("What happened in Bekasi?", "declined", (quote,)), color=False)
    assert english.startswith("The articles do not seem to cover this question.\nClosest passage")
    assert "paragraph 2 (photo caption)" in english
    indonesian = format_answer(
        Answer("Apa yang terjadi di Bekasi?", "declined", (quote,)), color=False
    )
    assert indonesian.startswith(INDONESIAN.decline + "\n" + INDONESIAN.closest)
    assert "paragraf 2 (keterangan foto)" in indonesian


def test_console_sources_in_either_language(tiny_answerer):
    assert format_sources(tiny_answerer).startswith("3 artikel terindeks:")
    assert format_sources(tiny_answerer, ENGLISH).startswith("3 articles indexed:")


def test_an_english_question_is_answered_in_english_and_an_indonesian_one_in_indonesian(qa, fake):
    with running(qa, fake):
        english = one_reply(
            fake, fake.message(4001, "What is the weather like in Surabaya tomorrow?")
        )
        indonesian = one_reply(fake, fake.message(4002, "Bagaimana cuaca di Surabaya besok?"))
        answered = one_reply(fake, fake.message(4003, "How much does chilli cost at Pasar Minggu?"))
    assert english["text"].startswith("Sorry, the articles do not seem to cover this question.")
    assert "(<i>not an answer</i>)" in english["text"]
    assert indonesian["text"].startswith(INDONESIAN.tg_decline)
    assert "(<i>bukan jawaban</i>)" in indonesian["text"]
    assert "— Harga Cabai Naik di Pasar Minggu, paragraph" in answered["text"]


def test_commands_speak_the_users_language_falling_back_to_indonesian(qa, fake):
    with running(qa, fake):
        plain = fake.message(4101, "/help")
        german = fake.message(4102, "/help", language_code="de")
        english = fake.message(4103, "/help", language_code="en-US")
        sources = fake.message(4104, "/sources")
        usage = fake.message(4105, "/ask", language_code="en")
        texts = [one_reply(fake, m)["text"] for m in (plain, german, english, sources, usage)]
    assert texts[0] == texts[1] == INDONESIAN.help
    assert texts[2] == ENGLISH.help
    assert texts[3].startswith("<b>3 artikel terindeks:</b>")
    assert texts[4] == ENGLISH.ask_usage


def test_a_fixed_language_is_used_for_everything(qa, fake):
    config = dataclasses.replace(qa.config, ui=dataclasses.replace(qa.config.ui, language="en"))
    qa = Answerer(config, embedder=qa.embedder)
    with running(qa, fake):
        answer = one_reply(fake, fake.message(4201, "Bagaimana cuaca di Surabaya besok?"))
        help_ = one_reply(fake, fake.message(4202, "/help", language_code="id"))
    assert answer["text"].startswith(ENGLISH.tg_decline)
    assert help_["text"] == ENGLISH.help
    menus = [c.params for c in fake.calls("setMyCommands")]
    assert len(menus) == 1 and "language_code" not in menus[0]  # one menu, in English
    assert menus[0]["commands"][0]["description"] == ENGLISH.commands[0][1]


def test_rate_limit_and_refusal_speak_the_questions_language(qa, fake):
    with running(qa, fake, rate_limit_per_minute=1, allowed_chat_ids=(4301,)):
        one_reply(fake, fake.message(4301, "How much does chilli cost?"))
        slow = one_reply(fake, fake.message(4301, "How much does chilli cost at Pasar Minggu?"))
        refused = one_reply(fake, fake.message(4302, "Who scored against Vietnam?"))
    assert slow["text"] == ENGLISH.slow_down
    assert refused["text"] == ENGLISH.refusal
