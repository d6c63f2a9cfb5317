"""Console mode as a person uses it: bot.py --console / --ask / --json in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

HANDSHAKE = "Siapa yang berjabat tangan dengan Kim Jong Un?"


@pytest.fixture(scope="module")
def config_file(seed_index, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("console") / "config.yaml"
    path.write_text(
        f"corpus: {{path: {seed_index.corpus_path}}}\nindex: {{path: {seed_index.index_path}}}\n",
        "utf-8",
    )
    return path


def run(config_file: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--config", str(config_file), *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"},
    )


def test_console_answers_and_quits(config_file):
    result = run(config_file, "--console", stdin=f"{HANDSHAKE}\n/sources\n:q\nnot reached\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Sergei Shoigu" in out
    title = "Politbiro Korea Utara Bahas Langkah Tindak Lanjut Lawatan Kim Jong Un ke Rusia"
    # Indonesian question, Indonesian source line; the console's commands speak Indonesian.
    assert f"— {title}, paragraf 1 (keterangan foto)" in out
    assert "1 artikel terindeks" in out
    assert "\033[1m" not in out  # plain text when output is not a terminal


def test_console_with_stdin_closed_exits_0(config_file):
    result = run(config_file, "--console")
    assert result.returncode == 0, result.stderr


def test_console_reports_bad_questions_and_goes_on(config_file):
    long_question = "kata " * 400
    result = run(config_file, "--console", stdin=f"!!!\n{long_question}\n{HANDSHAKE}\n")
    assert result.returncode == 0
    assert "pertanyaannya tidak berisi kata" in result.stdout
    assert "terlalu panjang" in result.stdout
    assert "Sergei Shoigu" in result.stdout


def test_ask_json_has_the_documented_shape(config_file):
    result = run(config_file, "--ask", HANDSHAKE, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"question", "read_as", "kind", "declined", "quotes"}
    assert answer["kind"] == "answer" and answer["declined"] is False
    assert answer["read_as"] == answer["question"] == HANDSHAKE
    first = answer["quotes"][0]
    assert set(first) == {
        "text",
        "doc_id",
        "title",
        "paragraph",
        "start",
        "end",
        "highlight",
        "score",
        "answer",
    }
    assert "Sergei Shoigu" in first["highlight"]
    source = (ROOT / "corpus" / "korea-utara-politbiro-lawatan-kim-ke-rusia.txt").read_text("utf-8")
    assert source[first["start"] : first["end"]] == first["text"]
    assert first["highlight"] in first["text"]
    span = first["answer"]
    assert set(span) == {"text", "start", "end", "score"}
    assert source[span["start"] : span["end"]] == span["text"]
    assert "Sergei Shoigu" in span["text"] and span["text"] in first["highlight"]


def test_out_of_scope_question_declines(config_file):
    result = run(config_file, "--ask", "Berapa harga beras di Jakarta hari ini?", "--json")
    assert result.returncode == 0
    answer = json.loads(result.stdout)
    assert answer["declined"] is True
    plain = run(config_file, "--ask", "Berapa harga beras di Jakarta hari ini?")
    assert "tampaknya tidak membahas" in plain.stdout
    assert "Bagian terdekat (bukan jawaban)" in plain.stdout
    english = run(config_file, "--ask", "What is the price of rice in Jakarta today?")
    assert "do not seem to cover" in english.stdout
    assert "Closest passage (not an answer)" in english.stdout


def test_empty_question_is_a_clear_error(config_file):
    result = run(config_file, "--ask", "   ")
    assert result.returncode == 1
    assert "pertanyaannya kosong" in result.stderr


def test_answer_is_bold_on_a_terminal(config_file):
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout is a terminal
        os.execv(
            sys.executable,
            [
                sys.executable,
                str(ROOT / "bot.py"),
                "--config",
                str(config_file),
                "--ask",
                HANDSHAKE,
            ],
        )
    output = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        output += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"\x1b[3mPemimpin Korea Utara Kim Jong Un berjabat tangan dengan " in output
    assert b"\x1b[1mMenteri Pertahanan Rusia Sergei Shoigu\x1b[0m" in output or (
        b"\x1b[1mSergei Shoigu\x1b[0m" in output
    )


def test_missing_index_says_what_to_run(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"index: {{path: {tmp_path / 'none'}}}\n", "utf-8")
    result = run(config, "--ask", HANDSHAKE)
    assert result.returncode == 1
    assert "there is no index at" in result.stderr and "tanya-reindex" in result.stderr


def test_bad_config_value_stops_start_up(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("search: {dense_weight: 2}\n", "utf-8")
    result = run(config, "--console")
    assert result.returncode == 1
    assert "search.dense_weight: 2.0 is out of range" in result.stderr


def test_bot_without_token_points_to_console_mode(config_file):
    result = run(config_file)
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and "--console" in result.stderr


def test_health_check(config_file):
    result = run(config_file, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 1 article, 8 chunks")


def test_health_check_warns_about_a_stale_index(seed_index, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(seed_index.corpus_path, corpus)
    (corpus / "baru.txt").write_text("Judul Baru\n\nIsi baru.", "utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"corpus: {{path: {corpus}}}\nindex: {{path: {seed_index.index_path}}}\n")
    result = run(config, "--check")
    assert result.returncode == 0
    expected = (
        "WARNING: the index is stale (1 document changed since it was built): "
        f"run tanya-reindex --config {config}"
    )
    assert expected in result.stdout


def test_console_with_stdin_and_stdout_closed(config_file):
    for redirect in ("<&-", ">&-"):
        command = f"{sys.executable} {ROOT / 'bot.py'} --config {config_file} --console {redirect}"
        result = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (redirect, result.stderr)
        assert "Traceback" not in result.stderr


def test_console_survives_bad_bytes_and_a_closed_pipe(config_file):
    questions = "".join(f"Kim Jong Un {i}\\n" for i in range(20))
    command = (
        f"printf 'caf\\xe9 Kim\\n{questions}' | "
        f"{sys.executable} {ROOT / 'bot.py'} --config {config_file} --console | head -c 10"
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr


def test_ask_shows_each_kind_of_reply(config_file):
    sure = run(config_file, "--ask", HANDSHAKE, "--json")
    unsure = run(config_file, "--ask", "Apa yang dicari Pyongyang?")
    declined = run(config_file, "--ask", "Berapa kurs dolar hari ini?")
    assert json.loads(sure.stdout)["kind"] == "answer"
    assert unsure.stdout.startswith(
        "Bagian ini membahas pertanyaan tersebut, tetapi jawaban persisnya tidak ditemukan"
    )
    assert "bantuan teknologi" in unsure.stdout
    assert declined.stdout.startswith("Artikel-artikel ini tampaknya tidak membahas")
    # Only the answer reaches the terminal: no library's log lines (FAISS's loader) on stderr.
    assert sure.stderr == unsure.stderr == declined.stderr == ""


def test_ask_reads_a_follow_up_after_the_history_file(config_file, tmp_path):
    first = run(config_file, "--ask", "Siapa yang berjabat tangan dengan Kim?", "--json")
    history = tmp_path / "chat.jsonl"
    history.write_text(first.stdout, "utf-8")
    follow = run(config_file, "--ask", "Apa jabatannya?", "--json", "--history", str(history))
    assert follow.returncode == 0, follow.stderr
    answer = json.loads(follow.stdout)
    assert answer["question"] == "Apa jabatannya?"
    assert answer["read_as"] == "Apa jabatan Sergei Shoigu?"
    assert "Menteri Pertahanan Rusia" in answer["quotes"][0]["highlight"]
    # Earlier questions as text are asked again; the reading is shown in plain text too.
    history.write_text('["Siapa yang berjabat tangan dengan Kim?"]', "utf-8")
    plain = run(config_file, "--ask", "Di kota mana?", "--history", str(history))
    assert plain.stdout.startswith(
        "(dibaca sebagai: Di kota mana Sergei Shoigu berjabat tangan dengan Kim?)"
    )
    assert "Vladivostok" in plain.stdout


def test_a_bad_history_file_is_named_without_a_traceback(config_file, tmp_path):
    bad = tmp_path / "chat.json"
    bad.write_text('[{"question": 3}]', "utf-8")
    result = run(config_file, "--ask", "Di kota mana?", "--history", str(bad))
    assert result.returncode == 1
    assert f"tanya: {bad} is no chat history: item 1" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run(config_file, "--ask", "Di kota mana?", "--history", str(tmp_path / "none"))
    assert missing.returncode == 1 and "cannot read the history file" in missing.stderr
    usage = run(config_file, "--console", "--history", str(bad))
    assert usage.returncode == 2 and "--history goes with --ask" in usage.stderr
