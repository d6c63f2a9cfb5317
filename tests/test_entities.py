"""What a span names, and whether it can answer what its question asks for."""

from __future__ import annotations

import pytest

from retrieval.answering.entities import asked_kind, fits, person_name, titled_span_end


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Kapan Kim mengunjungi Rusia?", "date"),
        ("Tanggal berapa foto itu diambil?", "date"),
        ("On what day?", "date"),
        # The question word decides, whatever else the question mentions.
        ("Di mana Presiden berceramah pada tanggal 13 September?", "place"),
        ("Satelit apakah yang disewa Telkom sejak Agustus 2005?", "other"),
        ("Berapa lama?", "number"),
        ("How many votes did they get?", "number"),
        ("Siapa yang berjabat tangan dengan Kim?", "person"),
        ("Who met Kim?", "person"),
        ("Di kota mana?", "place"),
        ("In which city did Kim meet Shoigu?", "place"),
        ("Dari partai apa dia?", "organisation"),
        ("Which party's politburo met?", "organisation"),
        ("Apa yang dibahas politbiro?", "other"),
        ("What did the politburo discuss?", "other"),
    ],
)
def test_the_question_word_says_what_is_asked(question, kind):
    assert asked_kind(question) == kind


@pytest.mark.parametrize(
    ("asked", "span", "fit"),
    [
        ("date", "Rabu (20/9)", True),
        ("date", "pekan lalu", True),
        ("date", "16 September 2023", True),
        ("date", "Vladimir Putin", False),
        ("number", "seminggu", True),
        ("number", "kedelapan", True),
        ("number", "Menteri Pertahanan Rusia", False),
        ("person", "Sergei Shoigu", True),
        ("person", "media pemerintah KCNA", True),
        ("person", "Vladivostok, Rusia", False),  # a place
        ("person", "Jumat (22/9)", False),  # a time
        ("person", "Kim Jong Un berjabat tangan dengan Menteri Pertahanan Rusia", False),
        ("organisation", "Partai Pekerja", True),
        ("organisation", "Korea Selatan", False),  # a country, no party
        ("organisation", "Presiden Korea Selatan", False),  # a person's title
        ("place", "Vladivostok", True),
        ("place", "20/9", False),
        ("place", "Menteri Pertahanan Rusia Sergei Shoigu", False),
        ("other", "20/9", True),
    ],
)
def test_a_span_of_the_wrong_kind_does_not_fit(asked, span, fit):
    assert fits(asked, span) is fit


def test_a_title_alone_takes_in_the_name_after_it():
    text = "Kim Jong Un berjabat tangan dengan Menteri Pertahanan Rusia Sergei Shoigu, saat ia"
    start = text.index("Menteri")
    end = start + len("Menteri Pertahanan Rusia")
    assert text[start : titled_span_end(text, start, end)] == (
        "Menteri Pertahanan Rusia Sergei Shoigu"
    )
    # A name already there, or no name after: the span stays.
    whole = text.index(",")
    assert titled_span_end(text, start, whole) == whole
    assert titled_span_end("kata Menteri Pertahanan hari ini", 5, 23) == 23


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Menteri Pertahanan Rusia Sergei Shoigu", "Sergei Shoigu"),
        ("Presiden Korea Selatan Yoon Suk Yeol", "Yoon Suk Yeol"),
        ("Pelatih Bintang Timur, Sutrisno Hadi", "Sutrisno Hadi"),
        ("Sergei Shoigu", "Sergei Shoigu"),
    ],
)
def test_the_personal_name_is_found_after_a_title(text, name):
    assert person_name(text) == name
