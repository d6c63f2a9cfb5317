"""The evaluation command: the found rule, the figures, the throwaway index and its cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.errors import TanyaError
from retrieval.tools.evaluate import (
    EvalQuestion,
    Outcome,
    eval_config,
    evaluate,
    is_found,
    load_questions,
    main,
    prepare,
    span_scores,
    summarise,
)

EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"


@pytest.mark.parametrize(
    ("text", "doc_id", "expected"),
    [
        ("Presiden Yoon  Suk\nYeol berpidato", "a", True),  # whitespace folded
        ("presiden YOON SUK YEOL berpidato", "a", True),  # case folded
        ("Presiden Yoon Suk Yeol berpidato", "b", False),  # wrong document
        ("Presiden Yoon berpidato", "a", False),  # span not there
    ],
)
def test_found_rule_folds_case_and_space_and_checks_the_document(text, doc_id, expected):
    question = EvalQuestion("Siapa?", ("Yoon Suk Yeol",), doc_id="a")
    assert is_found(text, doc_id, question) is expected


def test_any_of_the_answers_counts_and_no_doc_id_means_any_document():
    question = EvalQuestion("Siapa?", ("Kim Jong Un", "Kim"))
    assert is_found("Pemimpin Kim tiba", "whatever", question)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pada tahun 2010 itu", False),  # "10" is not found inside "2010"
        ("sebanyak 10 orang", True),
        ("angka 10.", True),
        ("(10)", True),
    ],
)
def test_answers_are_matched_as_whole_words(text, expected):
    assert is_found(text, "a", EvalQuestion("Berapa?", ("10",))) is expected


def test_any_document_counts_for_the_loose_rule():
    question = EvalQuestion("Siapa?", ("Yoon Suk Yeol",), doc_id="a")
    assert not is_found("Yoon Suk Yeol berpidato", "b", question)
    assert is_found("Yoon Suk Yeol berpidato", "b", question, any_document=True)


@pytest.mark.parametrize(
    ("predicted", "answers", "em", "f1"),
    [
        ("Sergei Shoigu", ["Sergei Shoigu"], 1.0, 1.0),
        ("sergei shoigu.", ["Sergei Shoigu"], 1.0, 1.0),  # case and punctuation folded
        (
            "Menteri Pertahanan Rusia Sergei Shoigu",
            ["Sergei Shoigu"],
            0.0,
            2 * (2 / 5) / (1 + 2 / 5),
        ),
        ("Putin", ["Sergei Shoigu", "Putin"], 1.0, 1.0),  # the best of the answers
        (None, ["Putin"], 0.0, 0.0),
        ("Lavrov", ["Putin"], 0.0, 0.0),
    ],
)
def test_span_exact_match_and_f1(predicted, answers, em, f1):
    got = span_scores(predicted, answers)
    assert got[0] == em and got[1] == pytest.approx(f1)


def test_load_questions_reads_answers_history_and_split(tmp_path: Path):
    path = tmp_path / "q.jsonl"
    lines = [
        {"question": "A?", "answer": "x", "answers": ["x", "y"], "split": "train", "doc_id": "d"},
        {"question": "B?", "answer": None, "split": "test"},
        {"question": "C?", "answer": "z", "history": ["A?"], "split": "test"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    everything = load_questions(path)
    assert [q.answers for q in everything] == [("x", "y"), (), ("z",)]
    assert everything[2].history == ("A?",)
    test = load_questions(path, "test")
    assert [q.question for q in test] == ["B?", "C?"]
    assert not test[0].answerable
    with pytest.raises(TanyaError, match="no questions of split 'valid'"):
        load_questions(path, "valid")


def test_a_broken_question_file_is_reported_with_its_line(tmp_path: Path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "A?", "answer": "x"}\n{"answer": "y"}\n', encoding="utf-8")
    with pytest.raises(TanyaError, match=r"q.jsonl:2"):
        load_questions(path)


def test_summarise_computes_recall_mrr_and_decline_rates():
    answerable = EvalQuestion("q", ("a",))
    unanswerable = EvalQuestion("q", ())
    outcomes = [
        Outcome(answerable, 1, 1, True, "answer", 1.0, 1.0, marked=True, highlighted_any=True),
        Outcome(answerable, 3, 1, False, "answer", 0.0, 0.5, marked=True),
        Outcome(answerable, 7, 2, False, "declined"),
        Outcome(answerable, 0, 0, False, "passage"),
        Outcome(unanswerable, 0, 0, False, "declined"),
        Outcome(unanswerable, 2, 2, False, "answer", marked=True),
    ]
    report = summarise(outcomes, seconds=2.0)
    assert (report.r1, report.r5, report.r10) == (0.25, 0.5, 0.75)
    assert report.r1_any == 0.5
    assert report.mrr10 == round((1 + 1 / 3 + 1 / 7) / 4, 4)
    assert report.highlight1 == 0.25
    assert (report.exact_match, report.f1) == (0.25, 0.375)
    assert report.false_decline_rate == 0.25
    assert report.decline_rate_unanswerable == 0.5
    assert (report.n, report.n_answerable, report.n_unanswerable, report.qps) == (6, 4, 2, 3.0)


def test_summarise_counts_bold_answers_replies_and_groups():
    answerable = EvalQuestion("q", ("a",))
    follow_up = EvalQuestion("Where?", ("a",), history=("Siapa?",))
    unanswerable = EvalQuestion("q", ())
    outcomes = [
        # Right, with the bold span on the answer.
        Outcome(answerable, 1, 1, True, "answer", 1.0, 1.0, highlighted_any=True, marked=True),
        # Right: the passage is shown without a mark, its sentence holds the answer.
        Outcome(follow_up, 1, 1, True, "passage", highlighted_any=True),
        # A bold span that misses the answer.
        Outcome(follow_up, 2, 2, False, "answer", marked=True),
        # Unanswerable: a passage without a mark gives no answer, but is no decline.
        Outcome(unanswerable, 0, 0, False, "passage"),
    ]
    report = summarise(outcomes, seconds=1.0)
    assert report.right == round(2 / 3, 4)
    assert report.answer_rate == round(2 / 3, 4)
    assert (report.bold_precision, report.bold_exact) == (0.5, 0.5)
    assert report.decline_rate_unanswerable == 1.0
    assert report.declined_strict_unanswerable == 0.0
    assert report.replies == {"answer": 2, "passage": 2, "declined": 0}
    assert set(report.groups) == {"id", "en", "stand-alone", "follow-up"}
    assert report.groups["follow-up"]["n_answerable"] == 2
    assert report.groups["follow-up"]["bold_precision"] == 0.0
    assert report.groups["en"] == {  # "Where?"
        "n_answerable": 2,
        "n_unanswerable": 0,
        "right": 0.5,
        "answer_rate": 0.5,
        "bold_precision": 0.0,
        "decline_rate_unanswerable": None,
        "false_decline_rate": 0.0,
    }


def test_a_figure_with_nothing_to_measure_is_none_not_zero():
    report = summarise([Outcome(EvalQuestion("q", ("a",)), 1, 1, True, "answer")], seconds=1.0)
    assert report.decline_rate_unanswerable is None
    assert report.r1 == 1.0 and report.bold_precision is None
    report = summarise([Outcome(EvalQuestion("q", ()), 0, 0, False, "declined")], seconds=1.0)
    assert report.r1 is None and report.false_decline_rate is None
    assert report.decline_rate_unanswerable == 1.0
    # Without the reader no spans are marked: no span figures rather than zeros.
    one = [Outcome(EvalQuestion("q", ("a",)), 1, 1, True, "answer")]
    report = summarise(one, 1.0, spans=False)
    assert report.exact_match is None and report.f1 is None and report.r1 == 1.0
    assert report.answer_rate is None and report.bold_precision is None


def test_throwaway_index_is_keyed_by_corpus_and_settings(tiny_config, tmp_path: Path):
    a = eval_config(tiny_config, tmp_path / "one", tmp_path / "cache")
    b = eval_config(tiny_config, tmp_path / "two", tmp_path / "cache")
    assert a.index_path != b.index_path
    assert a.index_path != tiny_config.index_path
    assert a.index_path.is_relative_to(tmp_path / "cache")
    assert a.search.cache_size == 0


def test_second_run_reuses_the_cached_embeddings(tiny_config, tiny_corpus, fake_embedder, tmp_path):
    questions = [EvalQuestion("Berapa harga cabai rawit di Pasar Minggu?", ("Rp80.000",), "pasar")]
    cache = tmp_path / "cache"
    answerer = prepare(tiny_config, tiny_corpus, cache, fake_embedder)
    assert fake_embedder.calls
    first = evaluate(answerer, questions)
    # (Answering may embed a quoted passage's sentences: only preparing is counted.)
    embedded = len(fake_embedder.calls)
    answerer = prepare(tiny_config, tiny_corpus, cache, fake_embedder)
    assert len(fake_embedder.calls) == embedded
    second = evaluate(answerer, questions)
    embedded = len(fake_embedder.calls)
    assert first.r1 == second.r1 == 1.0
    assert not tiny_config.index_path.exists()  # the live index is never built or touched
    # An edited article is re-embedded alone, into the same cached folder.
    (tiny_corpus / "sepakbola.txt").write_text("Timnas Kalah\n\nTimnas kalah 0-1.\n", "utf-8")
    third = prepare(tiny_config, tiny_corpus, cache, fake_embedder)
    assert fake_embedder.calls[embedded:] == ["Timnas kalah 0-1."]
    assert third.config.index_path.is_symlink()


@pytest.mark.needs_shared("eval/seed_dev.jsonl")
def test_command_prints_the_json_keys_and_one_line_per_question(
    seed_corpus, tmp_path: Path, capsys
):
    config = tmp_path / "config.yaml"
    config.write_text(f"corpus:\n  path: {seed_corpus}\nindex:\n  path: {tmp_path / 'live'}\n")
    per_question = tmp_path / "each.jsonl"
    code = main(
        [
            "--questions", str(EVAL_DIR / "seed_dev.jsonl"), "--config", str(config), "--json",
            "--per-question", str(per_question),
        ]
    )  # fmt: skip
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {
        "r1", "r5", "r10", "mrr10", "r1_any", "highlight1", "highlight1_any", "exact_match", "f1",
        "decline_rate_unanswerable", "false_decline_rate", "n", "n_answerable",
        "n_unanswerable", "qps", "right", "answer_rate", "bold_precision", "bold_exact",
        "declined_strict_unanswerable", "replies", "groups", "answer_p50_ms",
    }  # fmt: skip
    assert sum(figures["replies"].values()) == 13
    assert (figures["n"], figures["n_answerable"], figures["n_unanswerable"]) == (13, 10, 3)
    lines = [json.loads(line) for line in per_question.read_text("utf-8").splitlines()]
    assert len(lines) == 13
    first = lines[0]
    assert first["question"] == "Dengan siapa Kim Jong Un berjabat tangan?"
    assert first["rank"] == 1 and not first["declined"] and first["kind"] == "answer"
    assert first["read_as"] == first["question"]
    assert "Sergei Shoigu" in first["first_quote"]["answer"]
    assert "Sergei Shoigu" in first["first_quote"]["highlight"]
    assert "reader_margin" in first["scores"]
    assert all(line["declined"] for line in lines if not line["answers"])
    assert (tmp_path / ".cache" / "eval").is_dir()
    assert not (tmp_path / "live").exists()


def test_missing_question_file_is_a_clear_error(tmp_path: Path, capsys):
    code = main(["--questions", str(tmp_path / "nope.jsonl")])
    assert code == 1
    assert "cannot read the question file" in capsys.readouterr().err


def test_hidden_passages_are_left_out_of_the_search(seed_answerer):
    question = "Dengan siapa Kim Jong Un berjabat tangan?"
    holding = [r for r, c in enumerate(seed_answerer.index.chunks) if "Sergei Shoigu" in c.text]
    assert holding
    assert "Sergei Shoigu" in seed_answerer.ask(question).quotes[0].text
    answer = seed_answerer.ask(question, hidden=holding)
    assert all("Sergei Shoigu" not in c.text for c in answer.ranking)
    assert all("Sergei Shoigu" not in q.text for q in answer.quotes)
    # Everything hidden: nothing to quote, so the answer declines.
    everything = seed_answerer.ask(question, hidden=range(seed_answerer.index.count))
    assert everything.declined and not everything.quotes and not everything.ranking
    # Hiding bypasses the answer cache both ways.
    assert "Sergei Shoigu" in seed_answerer.ask(question).quotes[0].text


@pytest.mark.needs_shared("eval/seed_dev.jsonl")
def test_hide_answers_turns_every_question_into_one_to_decline(seed_answerer):
    questions = [q for q in load_questions(EVAL_DIR / "seed_dev.jsonl") if q.answerable]
    report = evaluate(seed_answerer, questions, hide_answers=True)
    assert report.n_answerable == 0 and report.n_unanswerable == len(questions)
    assert report.r1 is None and report.false_decline_rate is None
    # Measured: 7 of the 10 declined (retrieval alone: 6).
    assert report.decline_rate_unanswerable >= 0.7


@pytest.mark.needs_shared("eval/seed_dev.jsonl")
def test_hide_answers_refuses_questions_that_are_unanswerable_already(seed_answerer):
    questions = load_questions(EVAL_DIR / "seed_dev.jsonl")
    with pytest.raises(TanyaError, match="3 of these have no answer"):
        evaluate(seed_answerer, questions, hide_answers=True)
