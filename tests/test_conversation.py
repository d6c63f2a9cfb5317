"""Follow-ups read in their chat: each rewriting rule, the chat's turns, and the history file."""

from __future__ import annotations

import json

import pytest

from retrieval.answering.conversation import (
    FollowUp,
    Turn,
    event,
    is_fragment,
    parse_history,
    read_in_context,
    topic,
)


def answered(question: str, answer: str) -> Turn:
    """An earlier turn whose answer was marked."""
    return Turn(question, question, "answer", answer)


def unsure(question: str, span: str | None = None) -> Turn:
    """An earlier turn answered with a passage (its likeliest span unmarked)."""
    return Turn(question, question, "passage", span)


SHAKE = answered("Siapa yang berjabat tangan dengan Kim?", "Sergei Shoigu")


def read(question: str, *turns: Turn) -> FollowUp:
    return read_in_context(question, list(turns))


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        # A person pronoun: the answer to "Siapa yang …?" is who the chat is about.
        ([SHAKE], "Di mana dia bertemu Kim?", "Di mana Sergei Shoigu bertemu Kim?"),
        (
            [answered("Who is the leader of North Korea?", "Kim Jong Un")],
            "When did he return?",
            "When did Kim Jong Un return?",
        ),
        # "Siapa X?" unanswered: the pronoun stands for what X describes.
        (
            [unsure("Siapa Presiden Korea Selatan?")],
            "Di mana dia berpidato?",
            "Di mana Presiden Korea Selatan berpidato?",
        ),
        # The answer of "Dengan siapa Kim …?" is no subject: "dia" is still Kim.
        (
            [answered("Dengan siapa Kim Jong Un bersalaman?", "Sergei Shoigu")],
            "Apa yang ia bahas bersama politbiro?",
            "Apa yang Kim Jong Un bahas bersama politbiro?",
        ),
        # A name with an English possessive stands for the person, without the "'s".
        (
            [unsure("How long was Kim's state visit?", "seminggu")],
            "Where did he go?",
            "Where did Kim go?",
        ),
        # A title in the answer is not part of the name the pronoun stands for.
        (
            [answered("Siapa yang ditemui Kim?", "Menteri Pertahanan Rusia Sergei Shoigu")],
            "What is his position?",
            "What is Sergei Shoigu's position?",
        ),
    ],
)
def test_a_person_pronoun_becomes_the_person_talked_about(turns, question, read_as):
    follow = read(question, *turns)
    assert (follow.text, follow.rules) == (read_as, ("pronoun",))


def test_an_organisation_is_no_he_or_she():
    follow = read("When did he do so?", unsure("Who briefed the politburo?", "Partai Pekerja"))
    assert "Partai Pekerja" not in follow.text


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        ([SHAKE], "Apa jabatannya?", "Apa jabatan Sergei Shoigu?"),
        (
            [unsure("Kapan Kim Jong Un mengunjungi Rusia?")],
            "Berapa lama kunjungannya?",
            "Berapa lama kunjungan Kim Jong Un?",
        ),
        # A passive verb's -nya is who did it.
        (
            [unsure("Di kota mana Kim berjabat tangan dengan menteri Rusia?")],
            "Siapa menteri yang ditemuinya?",
            "Siapa menteri yang ditemui Kim?",
        ),
        # An active verb's -nya is the thing talked about.
        (
            [unsure("Apa arahan Kim kepada politbiro?")],
            "Kapan Kim memberikannya?",
            "Kapan Kim memberikan arahan Kim kepada politbiro?",
        ),
        # With nobody to own it, the last question's topic owns it.
        (
            [unsure("Siapa juara Liga Inggris musim lalu?")],
            "Siapa pelatihnya?",
            "Siapa pelatih juara Liga Inggris musim lalu?",
        ),
    ],
)
def test_the_possessive_nya_becomes_its_owner(turns, question, read_as):
    follow = read(question, *turns)
    assert (follow.text, follow.rules) == (read_as, ("possessive",))


@pytest.mark.parametrize("word", ["hanya", "sebenarnya", "Kenya", "bertanya"])
def test_words_ending_in_nya_that_are_no_pronoun_are_left_alone(word):
    question = f"Apakah {word} itu penting bagi Kim?"
    assert "possessive" not in read(question, SHAKE).rules


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        (
            [answered("Dengan siapa Kim membuat kesepakatan di Rusia?", "Vladimir Putin")],
            "Mereka sepakat meningkatkan apa?",
            "Kim dan Vladimir Putin sepakat meningkatkan apa?",
        ),
        (
            [unsure("What did Kim and Putin agree on?")],
            "When did they meet?",
            "When did Kim and Putin meet?",
        ),
    ],
)
def test_a_plural_pronoun_becomes_the_people_talked_about(turns, question, read_as):
    assert read(question, *turns).text == read_as


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        (
            [answered("Kapan Kim mengunjungi Rusia?", "pekan lalu")],
            "Siapa yang dia temui di sana?",
            "Siapa yang Kim temui di Rusia?",
        ),
        (
            [answered("Di kota mana Kim bertemu Shoigu?", "Vladivostok")],
            "Kapan Kim berada di situ?",
            "Kapan Kim berada di Vladivostok?",
        ),
        (
            [answered("Where did Kim meet Shoigu?", "Vladivostok")],
            "What did Kim do there?",
            "What did Kim do in Vladivostok?",
        ),
    ],
)
def test_a_place_word_becomes_the_place_talked_about(turns, question, read_as):
    follow = read(question, *turns)
    assert follow.text == read_as and "place" in follow.rules


def test_then_and_that_day_become_the_time_answered():
    turns = [answered("Kapan Kim memberi arahan kepada politbiro?", "Rabu (20/9)")]
    assert read("Siapa yang berpidato saat itu?", *turns).text == (
        "Siapa yang berpidato saat Rabu (20/9)?"
    )


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        # Standing alone, itu / that is the last turn's event, its answer where the question
        # word stood.
        (
            [SHAKE],
            "Kapan itu terjadi?",
            "Kapan Sergei Shoigu berjabat tangan dengan Kim?",
        ),
        (
            [answered("Where did Kim shake hands with Shoigu?", "Vladivostok")],
            "When was that?",
            "When was Kim shake hands with Shoigu in Vladivostok?",
        ),
        # On a noun, the last turn's topic goes with the noun.
        (
            [unsure("Apa yang dibahas politbiro Korea Utara?")],
            "Kapan rapat itu digelar?",
            "Kapan rapat (dibahas politbiro Korea Utara) digelar?",
        ),
        (
            [unsure("Who said how contagious measles is?")],
            "Who is that doctor?",
            "Who is the doctor (said how contagious measles is)?",
        ),
        # Before "happen", "that" is the event, as "it" is, not a word on a noun.
        (
            [answered("Who shook hands with Kim Jong Un?", "Sergei Shoigu")],
            "Where did that happen?",
            "Where did Sergei Shoigu shook hands with Kim Jong Un?",
        ),
        (
            [answered("Who shook hands with Kim Jong Un?", "Sergei Shoigu")],
            "When did this take place?",
            "When did Sergei Shoigu shook hands with Kim Jong Un?",
        ),
    ],
)
def test_a_demonstrative_becomes_the_event_or_topic(turns, question, read_as):
    follow = read(question, *turns)
    assert (follow.text, follow.rules) == (read_as, ("demonstrative",))


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        ([SHAKE], "Di kota mana?", "Di kota mana Sergei Shoigu berjabat tangan dengan Kim?"),
        ([SHAKE], "Tanggal berapa?", "Tanggal berapa Sergei Shoigu berjabat tangan dengan Kim?"),
        (
            [unsure("Berapa lama Kim berada di Rusia?")],
            "Kembali kapan?",
            "Kembali kapan Kim berada di Rusia?",
        ),
        (
            [unsure("What did the politburo discuss?")],
            "On what day?",
            "On what day the politburo discuss?",
        ),
        # "Kalau X?" asks the last question about X; "And the date?" asks when.
        (
            [answered("Kapan KCNA melaporkan rapat politbiro?", "Jumat (22/9)")],
            "Kalau arahan Kim?",
            "Kapan arahan Kim?",
        ),
        (
            [answered("Where did he meet Kim?", "Vladivostok")],
            "And the date?",
            "When he meet Kim in Vladivostok?",
        ),
    ],
)
def test_a_fragment_takes_the_last_turns_event(turns, question, read_as):
    follow = read(question, *turns)
    assert (follow.text, follow.rules) == (read_as, ("fragment",))


@pytest.mark.parametrize(
    "question",
    [
        "Berapa kurs dolar hari ini?",  # "hari ini" is now, not the chat
        "Apa itu KCNA?",  # "what is", not "what was that"
        "Siapa yang mencetak dua gol untuk Bintang Timur?",
        "Siapa Shoigu?",  # short, but it names its subject
        "Kapan Kim kembali dari Rusia?",
    ],
)
def test_a_question_of_its_own_is_read_as_it_is(question):
    assert read(question, SHAKE) == FollowUp(question)


def test_without_earlier_turns_nothing_is_rewritten():
    assert read("Di kota mana?") == FollowUp("Di kota mana?")
    assert read_in_context("Apa jabatannya?", [SHAKE], history_turns=0).text == "Apa jabatannya?"


def test_a_pronoun_with_nothing_to_point_at_keeps_the_last_topic():
    follow = read("Mengapa mereka menolak?", unsure("Berapa keluarga yang menolak imunisasi?"))
    assert follow.text == "Mengapa mereka (keluarga yang menolak imunisasi) menolak?"


def test_the_person_pronoun_looks_back_past_a_turn_without_one():
    turns = [SHAKE, unsure("Apa yang dibahas politbiro?")]
    assert read("Apa jabatannya?", *turns).text == "Apa jabatan Sergei Shoigu?"


def test_a_long_answer_to_what_is_not_put_into_the_event():
    turn = answered(
        "Apa yang dikhawatirkan Seoul dan Washington?",
        "Rusia mungkin berusaha memperoleh pasokan amunisi dari Korea Utara",
    )
    assert event(turn) == "dikhawatirkan Seoul dan Washington"
    assert topic(turn) == "dikhawatirkan Seoul dan Washington"


@pytest.mark.parametrize(
    ("words", "fragment"),
    [
        (["Di", "kota", "mana"], True),
        (["In", "which", "areas"], True),
        (["Why"], True),
        (["Berapa", "kecamatan"], True),
        (["Siapa", "Shoigu"], False),
        (["Apa", "yang", "dibahas", "politbiro"], False),
        (["Kim", "kembali"], False),
    ],
)
def test_fragments_have_no_subject_or_predicate_of_their_own(words, fragment):
    assert is_fragment(words) is fragment


def test_a_turn_goes_to_json_and_back():
    turn = Turn("Apa jabatannya?", "Apa jabatan Sergei Shoigu?", "answer", "Menteri", (3, 5), "b1")
    assert Turn.from_dict(json.loads(json.dumps(turn.to_dict()))) == turn


def test_an_answer_as_json_is_a_turn():
    printed = {
        "question": "Siapa yang berjabat tangan dengan Kim?",
        "read_as": "Siapa yang berjabat tangan dengan Kim?",
        "kind": "answer",
        "declined": False,
        "quotes": [{"text": "…", "answer": {"text": "Sergei Shoigu", "start": 0, "end": 13}}],
    }
    turn = Turn.from_dict(printed)
    assert (turn.reply, turn.answer) == ("answer", "Sergei Shoigu")
    assert Turn.from_dict({**printed, "kind": "passage", "quotes": []}).answer is None


def test_a_history_file_is_a_json_array_or_json_lines():
    line = json.dumps({"question": "Siapa Presiden Korea Selatan?", "kind": "declined"})
    assert parse_history(f'["Siapa yang berjabat tangan dengan Kim?", {line}]') == [
        "Siapa yang berjabat tangan dengan Kim?",
        Turn("Siapa Presiden Korea Selatan?", "Siapa Presiden Korea Selatan?", "declined"),
    ]
    assert parse_history(f"{line}\n\n{line}\n") == parse_history(f"[{line}, {line}]")
    assert parse_history("  ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2", "not JSON"),
        ('{"question": "a"}\nnope', "line 2 is not JSON"),
        ("[3]", "item 1: a turn is an object"),
        ('[{"question": "a", "kind": "maybe"}]', "item 1: a turn's reply is one of"),
        ('[{"question": "a", "rows": [-1]}]', "item 1: a turn's answer is text or null"),
    ],
)
def test_a_bad_history_file_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_history(text)


def test_chat_spellings_are_written_out_without_leaning_on_the_chat():
    follow = read("siapa yg ngelaporin rapat politbiro korut", SHAKE)
    assert follow.text == "siapa yang ngelaporin rapat politbiro Korea Utara"
    assert follow.rules == ("chat words",) and not follow.depends
    assert read("Siapa presiden Korsel?").text == "Siapa presiden Korea Selatan?"
    # Words that merely contain one are left alone.
    assert read("Berapa orang yang hadir?") == FollowUp("Berapa orang yang hadir?")


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        # "to" belongs to "agree": the place gets a preposition of its own.
        (
            [answered("Where did Kim Jong Un travel on his state visit?", "Rusia")],
            "What did Kim agree to there?",
            "What did Kim agree to in Rusia?",
        ),
        # After a verb of going, "there" is where to.
        (
            [answered("Where did Kim meet Shoigu?", "Vladivostok")],
            "Why did Kim go there?",
            "Why did Kim go to Vladivostok?",
        ),
        # A place word never stands bare after an Indonesian verb either; "disana" is "di sana".
        (
            [answered("Kim Jong Un melakukan lawatan ke negara mana?", "Rusia")],
            "apa saja yang disepakati disana",
            "apa saja yang disepakati di Rusia",
        ),
    ],
)
def test_a_place_word_after_a_verb_gets_a_preposition(turns, question, read_as):
    follow = read(question, *turns)
    assert follow.text == read_as and "place" in follow.rules


def test_a_fragment_asks_about_the_last_turn_that_said_what_happened():
    # "Apa jabatannya?" and "Dari negara mana?" state no event: "Tanggal berapa?" asks about
    # the handshake, not about "jabatan … dari Rusia".
    turns = [
        answered("Siapa yang berjabat tangan dengan Kim di Vladivostok?", "Sergei Shoigu"),
        answered("Apa jabatannya?", "Menteri Pertahanan Rusia"),
        answered("Dari negara mana?", "Rusia"),
    ]
    follow = read("Tanggal berapa?", *turns)
    assert follow.text == "Tanggal berapa Sergei Shoigu berjabat tangan dengan Kim di Vladivostok?"


def test_without_a_turn_that_said_what_happened_a_fragment_takes_the_last_one():
    follow = read("Tanggal berapa?", unsure("Apa jabatannya?"))
    assert (follow.text, follow.rules) == ("Tanggal berapa jabatannya?", ("fragment",))


@pytest.mark.parametrize(
    ("turn", "question", "read_as"),
    [
        # The span repeats a name the who-question holds: it is no answer to point at, and
        # the person is whoever did what was asked.
        (
            unsure("Siapa yang berjabat tangan dengan Kim di Vladivostok?", "Kim Jong Un"),
            "Apa jabatannya?",
            "Apa jabatan orang yang berjabat tangan dengan Kim di Vladivostok?",
        ),
        (
            Turn("Who coaches Garuda Banten?", "Who coaches Garuda Banten?", "declined"),
            "When did he join the club?",
            "When did the person who coaches Garuda Banten join the club?",
        ),
    ],
)
def test_an_unanswered_who_question_is_about_whoever_did_it(turn, question, read_as):
    assert read(question, turn).text == read_as


def test_a_span_naming_someone_else_is_still_the_answer():
    turn = unsure("Siapa yang berjabat tangan dengan Kim?", "Menteri Pertahanan Sergei Shoigu")
    assert read("Apa jabatannya?", turn).text == "Apa jabatan Sergei Shoigu?"
    # A name that only shares a family name with the question's is someone else.
    turn = answered("Siapa pengganti Kim Jong Il?", "Kim Jong Un")
    assert read("Kapan dia lahir?", turn).text == "Kapan Kim Jong Un lahir?"


@pytest.mark.parametrize(
    ("question", "read_as"),
    [
        # On a word of change, -nya is the amount last asked about, also as the first word.
        ("Naiknya berapa persen?", "Naiknya laba bersih Kopi Nusantara tahun 2023 berapa persen?"),
        (
            "Berapa persen kenaikannya?",
            "Berapa persen kenaikan laba bersih Kopi Nusantara tahun 2023?",
        ),
    ],
)
def test_nya_on_a_word_of_change_is_the_amount_asked_about(question, read_as):
    turns = [
        answered("Siapa Direktur Keuangan Kopi Nusantara?", "Fajar Hidayat"),
        answered("Berapa laba bersih Kopi Nusantara tahun 2023?", "Rp412,6 miliar"),
    ]
    follow = read(question, *turns)
    assert (follow.text, follow.rules) == (read_as, ("possessive",))


def test_a_capitalised_first_word_ending_in_nya_is_a_possessive_unless_a_name():
    assert read("Jabatannya apa?", SHAKE).text == "Jabatan Sergei Shoigu apa?"
    assert read("Kenya ikut?", SHAKE) == FollowUp("Kenya ikut?")


@pytest.mark.parametrize(
    ("turns", "question", "read_as"),
    [
        # The head noun of the last question is replaced, the rest kept.
        (
            [answered("Berapa laba bersih Kopi Nusantara tahun 2023?", "Rp412,6 miliar")],
            "Kalau pendapatannya?",
            "Berapa pendapatan Kopi Nusantara tahun 2023?",
        ),
        (
            [answered("Siapa pelatih Bintang Timur?", "Sutrisno Hadi")],
            "Kalau kaptennya?",
            "Siapa kapten Bintang Timur?",
        ),
        (
            [answered("Berapa orang yang masih hilang akibat longsor di Cililin?", "tiga")],
            "Dan yang luka-luka?",
            "Berapa orang yang luka-luka akibat longsor di Cililin?",
        ),
        (
            [answered("What was the net profit of Kopi Nusantara in 2023?", "Rp412,6 miliar")],
            "And the revenue?",
            "What was the revenue of Kopi Nusantara in 2023?",
        ),
        # In the other language, the question words follow the new subject's language; a
        # derived noun after the head says whose, and stays.
        (
            [answered("Berapa pendapatan perseroan pada 2023?", "Rp5,3 triliun")],
            "And the net profit?",
            "What is the net profit of perseroan pada 2023?",
        ),
        (
            [answered("Who is the coach of Bintang Timur?", "Sutrisno Hadi")],
            "Kalau kaptennya?",
            "Siapa kapten Bintang Timur?",
        ),
    ],
)
def test_and_x_asks_the_last_question_about_x(turns, question, read_as):
    follow = read(question, *turns)
    assert (follow.text, follow.rules) == (read_as, ("fragment",))


@pytest.mark.parametrize(
    ("turn", "question", "read_as"),
    [
        (
            unsure("Who did Kim Jong Un agree with to boost military cooperation?"),
            "What else besides military?",
            "What else besides military did Kim Jong Un agree with to boost cooperation?",
        ),
        (
            answered("Siapa yang khawatir soal amunisi Korea Utara?", "Washington"),
            "Selain Seoul, siapa lagi?",
            "Selain Seoul, siapa lagi yang khawatir soal amunisi Korea Utara?",
        ),
        (
            answered("Apa yang disepakati Kim dan Putin?", "kerja sama militer"),
            "Apa lagi selain militer?",
            "Apa lagi selain militer yang disepakati Kim dan Putin?",
        ),
    ],
)
def test_besides_x_asks_the_last_question_for_more_than_x(turn, question, read_as):
    follow = read(question, turn)
    assert (follow.text, follow.rules) == (read_as, ("fragment",))


def test_a_slot_is_asked_in_the_language_of_the_event_it_goes_before():
    turns = [
        answered("Siapa yang berjabat tangan dengan Kim di Vladivostok?", "Sergei Shoigu"),
        answered("Apa jabatannya?", "Menteri Pertahanan Rusia"),
    ]
    assert read("And the date?", *turns).text == (
        "Kapan Sergei Shoigu berjabat tangan dengan Kim di Vladivostok?"
    )


def test_they_is_never_the_answer_to_a_what_question():
    turns = [
        answered("When did Kim brief the politburo?", "20/9"),
        answered(
            "What did the participants work out?",
            "450 personel dari Basarnas, TNI, Polri, BPBD dan relawan",
        ),
    ]
    follow = read("What kind of long-term steps did they develop?", *turns)
    assert follow.text == "What kind of long-term steps did the participants develop?"


@pytest.mark.parametrize(
    ("turn", "question", "read_as"),
    [
        # Only a sure answer to a who-question names the people "they" are.
        (
            unsure("Siapa saja yang hadir di rapat?", "Kim Jong Un, Choe Son Hui dan Jo Yong Won"),
            "Apa yang mereka bahas?",
            "Apa yang orang yang hadir di rapat bahas?",
        ),
        (
            answered(
                "Siapa saja yang hadir di rapat?", "Kim Jong Un, Choe Son Hui dan Jo Yong Won"
            ),
            "Apa yang mereka bahas?",
            "Apa yang Kim Jong Un, Choe Son Hui dan Jo Yong Won bahas?",
        ),
        # People named by a plural in the question.
        (
            unsure("Apa yang dikembangkan para peserta rapat?"),
            "Berapa lama mereka rapat?",
            "Berapa lama para peserta rapat?",
        ),
    ],
)
def test_they_is_a_sure_answer_or_people_the_question_named(turn, question, read_as):
    assert read(question, turn).text == read_as


BRIEFED = answered("Kapan Kim memberi arahan kepada politbiro?", "Rabu (20/9)")


@pytest.mark.parametrize(
    ("question", "read_as"),
    [
        ("Who spoke at the UN then?", "Who spoke at the UN on Rabu (20/9)?"),
        ("What has changed since then?", "What has changed since Rabu (20/9)?"),
        (
            "Pada hari yang sama itu, siapa yang berpidato di PBB?",
            "Pada hari Rabu (20/9), siapa yang berpidato di PBB?",
        ),
        ("On the same day, who spoke at the UN?", "On Rabu (20/9), who spoke at the UN?"),
    ],
)
def test_then_and_the_same_day_become_the_time_answered(question, read_as):
    follow = read(question, BRIEFED)
    assert (follow.text, follow.rules) == (read_as, ("time",))


@pytest.mark.parametrize(
    "question",
    [
        "How tall was the cliff that collapsed?",  # a relative "that"
        "What did KCNA say that Kim wanted?",  # what was said
        "And then?",  # what came next: no earlier turn says
        "Who spoke at the UN then?",  # "then" with no time answered
    ],
)
def test_that_and_then_pointing_at_nothing_are_left_alone(question):
    assert read(question, answered("Siapa yang berjabat tangan dengan Kim?", "Shoigu")) == (
        FollowUp(question)
    )
