"""Parsing articles: titles, paragraphs, furniture, metadata, offsets, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.corpus.articles import load_corpus, parse_text
from retrieval.corpus.chunking import chunk_article, split_sentences

from .conftest import EVAL_DIR, SEED_ARTICLE


def seed():
    return parse_text(SEED_ARTICLE.read_text("utf-8"), "seed", str(SEED_ARTICLE))


def test_seed_article_title_and_paragraphs():
    article = seed()
    assert article.title.startswith("Politbiro Korea Utara Bahas Langkah")
    texts = [article.paragraph_text(p) for p in article.paragraphs]
    assert len(texts) == 8
    assert [p.number for p in article.paragraphs] == list(range(1, 9))
    assert texts[0].endswith("16 September 2023.")
    assert texts[-1].endswith("tidak akan tinggal diam.")


def test_seed_article_furniture_is_not_answer_text():
    article = seed()
    body = "\n".join(article.paragraph_text(p) for p in article.paragraphs)
    assert "BACA JUGA" not in body
    assert "[ah/gg]" not in body
    assert "(Foto: KCNA via REUTERS)" not in body


def test_seed_article_caption_is_indexed_and_marked():
    caption = seed().paragraphs[0]
    assert caption.kind == "caption"
    assert all(p.kind == "body" for p in seed().paragraphs[1:])


@pytest.mark.parametrize(
    "line",
    [
        "BACA JUGA: Something else",
        "Baca juga: Sesuatu",
        "Lihat juga: Galeri foto",
        "Read also: Another story",
    ],
)
def test_read_also_lines_are_dropped(line):
    article = parse_text(f"Title\n\nFirst paragraph.\n\n{line}\n\nLast one.", "x", "x.txt")
    assert [article.paragraph_text(p) for p in article.paragraphs] == [
        "First paragraph.",
        "Last one.",
    ]


def test_markdown_front_matter_and_title(tiny_corpus):
    corpus = load_corpus(tiny_corpus)
    banjir = next(a for a in corpus.articles if a.doc_id == "banjir")
    assert banjir.title == "Banjir Rendam Ratusan Rumah di Bekasi"
    assert banjir.url == "https://example.org/banjir"
    assert banjir.published == "2024-01-05"
    assert banjir.paragraphs[0].kind == "caption"
    assert banjir.paragraph_text(banjir.paragraphs[0]).endswith("satu meter.")


@pytest.mark.parametrize(
    "head",
    ["---\n---\n", "  ---\nauthor: Budi\ntags: [a, b]\n---\n", "---\nurl: https://x.org/1\n---\n"],
)
def test_front_matter_variants(head):
    article = parse_text(head + "Judul\n\nParagraf satu.", "x", "x.txt")
    assert article.title == "Judul"
    assert [article.paragraph_text(p) for p in article.paragraphs] == ["Paragraf satu."]


@pytest.mark.parametrize(
    "block, kept, kind",
    [
        (
            "Relawan datang dari Solo. [ah/gg] (Foto: Antara)",
            "Relawan datang dari Solo.",
            "caption",
        ),
        ("Relawan datang. (Foto: Antara) [ah/gg]", "Relawan datang.", "caption"),
        ("Keterangan foto. (Foto: REUTERS/Kim Hong-Ji (kiri))", "Keterangan foto.", "caption"),
        ("Paragraf tiga (FOTO: ANTARA) .", "Paragraf tiga", "caption"),
        ("Paragraf satu.\nBaca juga: Berita lain tentang gempa", "Paragraf satu.", "body"),
        ("Baca juga - Berita ketiga\nParagraf sesudahnya.", "Paragraf sesudahnya.", "body"),
        ("Read Also - something\nThe text.", "The text.", "body"),
    ],
)
def test_furniture_variants(block, kept, kind):
    article = parse_text(f"Judul\n\n{block}\n\nAkhir.", "x", "x.txt")
    first = article.paragraphs[0]
    assert (article.paragraph_text(first), first.kind) == (kept, kind)


def test_doc_ids_come_from_relative_paths(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "story.txt").write_text("T\n\nBody.", "utf-8")
    (tmp_path / ".hidden.txt").write_text("T\n\nBody.", "utf-8")
    corpus = load_corpus(tmp_path)
    assert [a.doc_id for a in corpus.articles] == ["a/b/story"]


@pytest.mark.needs_shared("eval/facqa/corpus.jsonl")
def test_facqa_corpus_loads_as_it_is():
    corpus = load_corpus(EVAL_DIR / "facqa" / "corpus.jsonl")
    assert len(corpus.articles) == 1362
    assert corpus.problems == ()
    first = corpus.articles[0]
    assert first.doc_id == "facqa-b92b6b3ee972"
    assert first.paragraph_text(first.paragraphs[0]) == first.text.strip()


def test_bad_files_are_skipped_with_path_and_reason(tmp_path):
    (tmp_path / "good.txt").write_text("Judul\n\nIsi berita.", "utf-8")
    (tmp_path / "latin1.txt").write_bytes("Judul\n\nCaf\xe9 ditutup.".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("  \n\n ", "utf-8")
    (tmp_path / "title-only.md").write_text("# Just a title\n", "utf-8")
    (tmp_path / "front.txt").write_text("---\nurl: [unclosed\n---\nT\n\nBody.", "utf-8")
    (tmp_path / "open.txt").write_text("---\nurl: https://x.org\nJudul\n\nParagraf.", "utf-8")
    lines = [
        json.dumps({"id": "ok", "title": "T", "text": "Body text."}),
        "{not json",
        json.dumps({"id": "", "text": "no id"}),
        json.dumps(["a", "list"]),
    ]
    (tmp_path / "bulk.jsonl").write_text("\n".join(lines), "utf-8")
    corpus = load_corpus(tmp_path)
    assert sorted(a.doc_id for a in corpus.articles) == ["good", "ok"]
    reasons = {Path(p.path).name: p.reason for p in corpus.problems}
    assert "not UTF-8" in reasons["latin1.txt"]
    assert reasons["empty.txt"] == "no text"
    assert "no paragraphs" in reasons["title-only.md"]
    assert "front matter is not valid YAML" in reasons["front.txt"]
    assert reasons["open.txt"] == "front matter has no closing '---' line"
    assert "not valid JSON" in reasons["bulk.jsonl:2"]
    assert "'id'" in reasons["bulk.jsonl:3"]
    assert "JSON object" in reasons["bulk.jsonl:4"]


def test_unreadable_file_is_skipped(tmp_path):
    (tmp_path / "good.txt").write_text("Judul\n\nIsi berita.", "utf-8")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "deleted-meanwhile.txt")
    corpus = load_corpus(tmp_path)
    assert [a.doc_id for a in corpus.articles] == ["good"]
    assert len(corpus.problems) == 1
    assert str(corpus.problems[0]).startswith(str(tmp_path / "gone.txt") + ": cannot read")


def test_duplicate_ids_are_reported(tmp_path):
    rows = [json.dumps({"id": "same", "text": f"Text {i}."}) for i in range(2)]
    (tmp_path / "bulk.jsonl").write_text("\n".join(rows), "utf-8")
    corpus = load_corpus(tmp_path)
    assert len(corpus.articles) == 1
    problem = corpus.problems[0]
    assert problem.path == f"{tmp_path / 'bulk.jsonl'}:2"
    assert (
        problem.reason == f"duplicate id 'same'; the article at {tmp_path / 'bulk.jsonl'}:1 is kept"
    )


def test_missing_corpus_is_a_problem_not_a_crash(tmp_path):
    corpus = load_corpus(tmp_path / "nope")
    assert corpus.articles == ()
    assert "no such file" in corpus.problems[0].reason


def test_crlf_text_keeps_exact_offsets():
    text = "Judul\r\n\r\nKalimat satu. Kalimat dua.\r\n\r\nParagraf dua [xy/zz]\r\n"
    article = parse_text(text, "crlf", "crlf.txt")
    assert [article.paragraph_text(p) for p in article.paragraphs] == [
        "Kalimat satu. Kalimat dua.",
        "Paragraf dua",
    ]


def test_sentence_split_keeps_abbreviations_and_numbers():
    text = "Dr. Budi tiba pukul 10.30 WIB. Ia bertemu Presiden Joko Widodo. Selesai!"
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "Dr. Budi tiba pukul 10.30 WIB.",
        "Ia bertemu Presiden Joko Widodo.",
        "Selesai!",
    ]


def test_quotes_close_sentences():
    text = "“Kami siap,” katanya. Lalu ia pergi."
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "“Kami siap,” katanya.",
        "Lalu ia pergi.",
    ]


def test_long_paragraphs_are_chunked_within_the_limit():
    sentences = [f"Kalimat nomor {i} berisi beberapa kata tambahan." for i in range(40)]
    article = parse_text("Judul\n\n" + " ".join(sentences), "long", "long.txt")
    chunks = chunk_article(article, 30, lambda t: len(t.split()))
    assert len(chunks) > 1
    assert all(len(c.text.split()) <= 30 for c in chunks)
    assert " ".join(c.text for c in chunks) == article.paragraph_text(article.paragraphs[0])


def test_one_overlong_sentence_is_cut_at_words():
    article = parse_text("Judul\n\n" + " ".join(["kata"] * 100), "x", "x.txt")
    chunks = chunk_article(article, 16, lambda t: len(t.split()))
    assert [len(c.text.split()) for c in chunks] == [16] * 6 + [4]


WORDS = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x24F),
    min_size=1,
    max_size=8,
)
PUNCT = st.sampled_from([".", "!", "?", ",", ";", "…", ".”", "", "", ""])
SENTENCE = st.lists(st.tuples(WORDS, PUNCT), min_size=1, max_size=12).map(
    lambda parts: " ".join(w + p for w, p in parts)
)
TRAILER = st.sampled_from(["", "", " [ab/cd]", " (Foto: AP/Reuters)"])
BODY = st.tuples(st.lists(SENTENCE, min_size=1, max_size=6), TRAILER).map(
    lambda t: " ".join(t[0]) + t[1]
)
PARAGRAPH = st.one_of(BODY, BODY, BODY, st.just("BACA JUGA: Berita lain"))
SEPARATOR = st.sampled_from(["\n\n", "\n \n", "\r\n\r\n", "\n\n\n"])


@settings(max_examples=150, deadline=None)
@given(
    title=SENTENCE,
    paragraphs=st.lists(PARAGRAPH, min_size=1, max_size=6),
    sep=SEPARATOR,
    max_tokens=st.integers(4, 40),
)
def test_every_chunk_is_the_source_text_at_its_span(title, paragraphs, sep, max_tokens):
    text = title + sep + sep.join(paragraphs) + "\n"
    try:
        article = parse_text(text, "doc", "doc.txt")
    except ValueError as exc:  # only "nothing to index" may stop parsing
        assert "no paragraphs" in str(exc)
        return
    chunks = chunk_article(article, max_tokens, lambda t: len(t.split()))
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip()
        para = article.paragraphs[chunk.paragraph - 1]
        assert para.start <= chunk.start < chunk.end <= para.end
        for a, b in chunk.sentences:
            assert chunk.start <= a < b <= chunk.end
        assert "BACA JUGA" not in chunk.text
        assert "[ab/cd]" not in chunk.text
        assert "(Foto:" not in chunk.text
    # Chunks cover each paragraph's words in order, nothing lost or repeated.
    for para in article.paragraphs:
        inside = [c.text for c in chunks if c.paragraph == para.number]
        assert " ".join(inside).split() == article.paragraph_text(para).split()
