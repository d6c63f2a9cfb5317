"""English training questions: SQuAD 2.0 dev's English questions paired with the passages of
its Indonesian translation, and the examples the pack step makes of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.tools.english_questions import invariant_words, main, pair
from retrieval.tools.train_reader import TrainingError, english_examples, pack_name

VISIT_ID = (
    "Menteri Pertahanan Rusia Sergei Shoigu berjabat tangan dengan Kim Jong Un di Vladivostok "
    "pada 16 September 2023."
)
VISIT_EN = (
    "Russian Defence Minister Sergei Shoigu shook hands with Kim Jong Un in Vladivostok on "
    "16 September 2023."
)
PRICES_ID = "Harga cabai di Pasar Minggu naik menjadi Rp 80.000 per kilogram pada Senin (21/9)."
PRICES_EN = "Chilli prices at Pasar Minggu rose to Rp 80.000 a kilogram on Monday (21/9)."


def squad(*paragraphs: tuple[str, list[tuple[str, bool]]]) -> dict:
    return {
        "data": [
            {
                "title": "toy",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {"question": q, "id": f"x{n}", "is_impossible": impossible}
                            for n, (q, impossible) in enumerate(qas)
                        ],
                    }
                    for context, qas in paragraphs
                ],
            }
        ]
    }


def indonesian() -> tuple[list[dict], dict[str, str]]:
    questions = [
        {"id": "a1", "question": "Siapa Menteri Pertahanan Rusia?", "answer": "Sergei Shoigu",
         "answers": ["Sergei Shoigu"], "doc_id": "visit", "split": "valid"},
        {"id": "a2", "question": "Siapa yang lahir di Chadan?", "answer": "",
         "answers": [], "doc_id": "visit", "split": "valid"},
        {"id": "b1", "question": "Berapa harga cabai?", "answer": "Rp 80.000 per kilogram",
         "answers": ["Rp 80.000 per kilogram"], "doc_id": "prices", "split": "valid"},
    ]  # fmt: skip
    return questions, {"visit": VISIT_ID, "prices": PRICES_ID}


def test_names_and_numbers_survive_translation():
    assert {"sergei", "shoigu", "vladivostok", "16", "2023"} <= invariant_words(VISIT_EN)
    assert invariant_words(VISIT_EN) & invariant_words(VISIT_ID) >= {"shoigu", "2023"}


def test_paragraphs_pair_with_the_passage_of_the_same_shape_and_names():
    questions, passages = indonesian()
    english = squad(
        (PRICES_EN, [("How much do chillies cost?", False)]),
        (VISIT_EN, [("Who is Russia's defence minister?", False), ("Who was born?", True)]),
        # Same shape as the prices passage, nothing in common: left out.
        ("The weather was fine all week.", [("How was the weather?", False)]),
        # Pattern differs from both passages: left out.
        (VISIT_EN, [("Who shook hands?", True), ("Where?", True)]),
    )
    pairs, left = pair(english, questions, passages)
    assert pairs == [
        {"id": "b1", "question_en": "How much do chillies cost?"},
        {"id": "a1", "question_en": "Who is Russia's defence minister?"},
        {"id": "a2", "question_en": "Who was born?"},
    ]
    assert left == {"no clear passage": 3, "passage already paired": 0}


def write_set(data: Path, questions: list[dict], passages: dict[str, str]) -> None:
    folder = data / "mrc" / "squad2_id_mt"
    folder.mkdir(parents=True)
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in passages.items())
    )


def test_the_command_writes_the_pairs_and_where_they_came_from(tmp_path: Path):
    questions, passages = indonesian()
    write_set(tmp_path, questions, passages)
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(squad((PRICES_EN, [("How much do chillies cost?", False)]))))
    out = tmp_path / "pairs.jsonl"
    assert main([str(dev), "--data", str(tmp_path), "--out", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"id": "b1", "question_en": "How much do chillies cost?"}
    ]
    about = json.loads(out.with_suffix(".json").read_text())
    assert about["pairs"] == 1 and about["answerable"] == 1 and "CC BY-SA" in about["license"]
    assert main([str(tmp_path / "missing.json"), "--data", str(tmp_path)]) == 1


def test_english_examples_read_the_indonesian_passage_and_keep_some_passages_for_validation(
    tmp_path: Path,
):
    questions, passages = indonesian()
    write_set(tmp_path, questions, passages)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"id": i, "question_en": q}) + "\n"
            for i, q in [("a1", "Who is Russia's defence minister?"), ("b1", "Chilli price?")]
        )
    )
    train, valid = english_examples(tmp_path, pairs)
    # Every 8th passage in the order of its id is held out: the first, "prices".
    assert [(e.question, e.source) for e in valid] == [
        ("Chilli price?", "mrc/squad2_id_mt:valid:english-held")
    ]
    (minister,) = train
    assert minister.source == "mrc/squad2_id_mt:valid:english"
    assert minister.passage == VISIT_ID
    assert VISIT_ID[minister.answer_start : minister.answer_end] == "Sergei Shoigu"

    pairs.write_text(json.dumps({"id": "zz", "question_en": "Who?"}) + "\n")
    with pytest.raises(TrainingError, match="1 of its ids are not questions"):
        english_examples(tmp_path, pairs)
    pairs.write_text("not json\n")
    with pytest.raises(TrainingError, match="cannot read the pairs"):
        english_examples(tmp_path, pairs)


def test_a_pack_with_english_questions_is_a_file_of_its_own():
    assert pack_name(0, 0, english=True) == "pack-english.npz"
    assert pack_name(2000, 1000, english=True) == "pack-conversational2000-hard1000-english.npz"
    assert pack_name(2000, 1000) == "pack-conversational2000-hard1000.npz"


def test_the_shipped_pairs_name_questions_of_the_translated_set():
    from retrieval.tools.english_questions import OUT

    pairs = [json.loads(line) for line in OUT.read_text("utf-8").splitlines()]
    about = json.loads(OUT.with_suffix(".json").read_text("utf-8"))
    assert len(pairs) == about["pairs"] > 2000
    assert all(p["id"].startswith("squad-trans-") and p["question_en"] for p in pairs)
    assert len({p["id"] for p in pairs}) == len(pairs)
