"""The Milvus store (index.backend: milvus) against Milvus's own engine, Milvus Lite 2.5.1:
reindexing (new, changed, removed, nothing to do), a reindex killed at any step, BM25 and
dense search equal to the local index's, the same answers, hot reload, and the messages a
user can act on. Each test has its own database file."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from retrieval.answering.answer import Answerer
from retrieval.config import Config, load_config, parse_config
from retrieval.errors import IndexMismatchError, IndexMissingError, TanyaError
from retrieval.index import milvus
from retrieval.index.folder import load_index
from retrieval.index.keyword import tokenize
from retrieval.index.reindex import reindex
from retrieval.index.store import PassageStore, live_version, open_store
from retrieval.tools.evaluate import load_questions

from .conftest import EVAL_DIR, ROOT, TINY_ARTICLES, FakeEmbedder, make_config

FACQA = EVAL_DIR / "facqa"


def milvus_config(corpus: Path, root: Path, milvus: dict | None = None, **sections) -> Config:
    """A config whose index is a Milvus Lite collection in a file of its own under root."""
    data = {
        "corpus": {"path": str(corpus)},
        "index": {
            "path": str(root / ".index"),
            "backend": "milvus",
            "milvus": {"uri": str(root / "milvus.db"), **(milvus or {})},
        },
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data)


@pytest.fixture
def lite(tmp_path):
    """Makes Milvus configs under tmp_path; stops their Milvus Lite processes afterwards."""
    made: list[Config] = []

    def make(corpus: Path, name: str = "m", milvus: dict | None = None, **sections) -> Config:
        config = milvus_config(corpus, tmp_path / name, milvus, **sections)
        made.append(config)
        return config

    yield make
    for config in made:
        milvus.disconnect(config)


def write_tiny(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in TINY_ARTICLES.items():
        (folder / name).write_text(text, "utf-8")
    return folder


def passages(store: PassageStore) -> dict[str, str]:
    """Every live passage by chunk id."""
    return {c.chunk_id: c.text for c in store.chunks}


def rows_by_id(store: PassageStore) -> dict[str, int]:
    return {store.chunks[int(r)].chunk_id: int(r) for r in store.live_rows()}


def assert_same_keyword(local: PassageStore, remote: PassageStore, queries, k: int = 50) -> int:
    """Every query's BM25 scores at every passage equal to 1e-4, and the top k the same but
    for ties; returns how many queries scored something."""
    local_rows, remote_rows = rows_by_id(local), rows_by_id(remote)
    assert local_rows.keys() == remote_rows.keys()
    ids = sorted(local_rows)
    scored = 0
    for tokens in queries:
        want = local.keyword.scores_at(tokens, np.array([local_rows[i] for i in ids]))
        got = remote.keyword.scores_at(tokens, np.array([remote_rows[i] for i in ids]))
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=" ".join(tokens))
        scored += bool(want.any())
        top_local = local.keyword.top(tokens, k)
        top_remote = remote.keyword.top(tokens, k)
        assert_same_top(local, remote, top_local, top_remote)
        assert remote.keyword.known(tokens) == local.keyword.known(tokens)
    return scored


def assert_same_top(local, remote, top_local, top_remote, atol: float = 1e-4) -> None:
    """The same ranked scores, and the same passages above the last score (ties at the cut
    may differ)."""
    (rows_a, scores_a), (rows_b, scores_b) = top_local, top_remote
    np.testing.assert_allclose(scores_b, scores_a, atol=atol)
    if len(scores_a):
        cut = scores_a[-1] + atol
        above_a = {
            local.chunks[int(r)].chunk_id for r, s in zip(rows_a, scores_a, strict=True) if s > cut
        }
        above_b = {
            remote.chunks[int(r)].chunk_id for r, s in zip(rows_b, scores_b, strict=True) if s > cut
        }
        assert above_a == above_b


def dense_top(store: PassageStore, vector: np.ndarray, k: int):
    rows = store.dense_search(vector, k)
    return rows, np.asarray(store.vectors[rows] @ vector, dtype=np.float32)


# --- reindexing -----------------------------------------------------------------------------


def test_reindex_scenarios_match_the_local_index(tmp_path, lite):
    corpus = write_tiny(tmp_path / "corpus")
    local = make_config(corpus, tmp_path / "local" / ".index")
    config = lite(corpus)

    def both(expect: tuple, embedded: int | None = None):
        embedder = FakeEmbedder()
        reindex(local, embedder=FakeEmbedder())
        result = reindex(config, embedder=embedder)
        s = result.stats
        assert (s.added, s.changed, s.removed, s.unchanged) == expect
        if embedded is not None:
            assert s.embedded == embedded == len([t for t in embedder.calls if t])
        a, b = load_index(local.index_path, local), open_store(config)
        assert passages(b) == passages(a)
        assert b.count == a.count == s.chunks
        assert b.manifest["documents"] == a.manifest["documents"]
        assert {d: i.title for d, i in b.articles.items()} == {
            d: i.title for d, i in a.articles.items()
        }
        queries = [tokenize(c.text, True) for c in a.chunks] + [["banjir", "harga", "zzz"]]
        assert_same_keyword(a, b, queries)
        return result, embedder

    result, _ = both((3, 0, 0, 0))  # from scratch
    assert result.swapped
    result, embedder = both((0, 0, 0, 3), embedded=0)  # nothing changed
    assert not result.swapped and embedder.calls == []
    (corpus / "baru.txt").write_text("Gempa di Cianjur\n\nGempa mengguncang Cianjur.\n", "utf-8")
    _, embedder = both((1, 0, 0, 3))  # an article added
    assert all("Cabai" not in t for t in embedder.calls)
    path = corpus / "sepakbola.txt"
    path.write_text(path.read_text("utf-8").replace("3-0", "4-1"), "utf-8")
    _, embedder = both((0, 1, 0, 3))  # one changed: only it is embedded
    assert any("4-1" in t for t in embedder.calls)
    assert all("Gempa" not in t and "Cabai" not in t for t in embedder.calls)
    (corpus / "banjir.md").unlink()
    result, embedder = both((0, 0, 1, 3), embedded=0)  # one removed
    assert result.swapped and "banjir" not in open_store(config).articles


def test_awkward_article_ids_are_written_changed_and_removed(tmp_path, lite):
    corpus = tmp_path / "c.jsonl"
    odd = ['quote " and \\ backslash', "emoji 😀 and\nnewline", "ʼapostrophe' [list]"]

    def write(ids, text):
        records = [
            {"id": i, "title": f"Judul {n}", "text": f"{text} {n}."} for n, i in enumerate(ids)
        ]
        corpus.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")

    config = lite(corpus)
    write(odd, "Harga beras naik")
    reindex(config, embedder=FakeEmbedder())
    assert sorted(open_store(config).articles) == sorted(odd)
    write(odd[:2], "Harga beras turun")
    result = reindex(config, embedder=FakeEmbedder())
    assert (result.stats.changed, result.stats.removed) == (2, 1)
    store = open_store(config)
    assert sorted(store.articles) == sorted(odd[:2])
    assert all("turun" in text for text in passages(store).values())
    rows, _ = store.keyword.top(["harga"], 10, hidden=store.live_rows()[:1])
    assert len(rows) == 1 and store.live_rows()[0] not in rows


def test_a_mismatched_model_is_refused_with_the_fix(tmp_path, lite):
    corpus = write_tiny(tmp_path / "corpus")
    config = lite(corpus)
    reindex(config, embedder=FakeEmbedder(64))
    before = open_store(config).version
    other = dataclasses.replace(
        config, embedding=dataclasses.replace(config.embedding, model="enpt")
    )
    embedder = FakeEmbedder(64)
    with pytest.raises(
        IndexMismatchError, match=r"model: index has .*\n.*Rebuild it with: .*--full"
    ):
        reindex(other, embedder=embedder)
    with pytest.raises(IndexMismatchError, match="model: index has"):
        open_store(other)
    (corpus / "baru.txt").write_text("Judul Baru\n\nIsi yang baru.\n", "utf-8")
    embedder = FakeEmbedder(32)
    with pytest.raises(IndexMismatchError, match=r"dimension: collection has 64, .* 32"):
        reindex(config, embedder=embedder)
    assert embedder.calls == [] and open_store(config).version == before
    result = reindex(config, full=True, embedder=FakeEmbedder(32))
    assert result.swapped and open_store(config).manifest["dimension"] == 32
    assert sorted(open_store(config).articles) == ["banjir", "baru", "pasar", "sepakbola"]


def test_another_index_type_rebuilds_the_dense_index_without_embedding(tmp_path, lite):
    corpus = write_tiny(tmp_path / "corpus")
    config = lite(corpus)
    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    flat = open_store(config)
    vector = embedder.encode_queries(["harga cabai di pasar"])[0]
    before = [flat.chunks[int(r)].chunk_id for r in flat.dense_search(vector, 5)]
    auto = lite(corpus, milvus={"index_type": "AUTOINDEX"})
    embedder = FakeEmbedder()
    result = reindex(auto, embedder=embedder)
    assert embedder.calls == [] and result.stats.unchanged == 3
    store = open_store(auto)
    assert store.manifest["dense_index"]["index_type"] == "AUTOINDEX"
    assert store.version != flat.version  # a loaded store reloads onto the new index
    assert [store.chunks[int(r)].chunk_id for r in store.dense_search(vector, 5)] == before


def test_no_collection_says_how_to_build_it(tmp_path, lite):
    config = lite(write_tiny(tmp_path / "corpus"))
    with pytest.raises(IndexMissingError, match="there is no collection tanya in .*Build it with"):
        open_store(config)


def test_a_lite_file_open_in_another_process_is_a_message(tmp_path, lite):
    config = lite(write_tiny(tmp_path / "corpus"))
    Path(config.milvus_uri).parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=str(ROOT), uri=config.milvus_uri)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(TanyaError, match="another process has it open .*Milvus server"):
            open_store(config)
    finally:
        holder.kill()
        holder.wait()


HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from pymilvus import MilvusClient
client = MilvusClient({uri!r})
print("open", flush=True)
time.sleep(60)
"""


# --- a reindex killed at any step ------------------------------------------------------------

KILLED_REINDEX = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from retrieval.config import parse_config
    from retrieval.index import milvus
    from retrieval.index.reindex import reindex
    from tests.conftest import FakeEmbedder

    config = parse_config({data!r})
    name, at = {step!r}, {at}
    step, calls = getattr(milvus, name), []

    def killing(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(*args, **kwargs)

    setattr(milvus, name, killing)
    reindex(config, embedder=FakeEmbedder())
    print("finished", flush=True)
    """
)


def open_when_free(config: Config, seconds: float = 20.0) -> PassageStore:
    """The store, once the killed process's Milvus Lite has let go of the file."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return open_store(config)
        except TanyaError as exc:
            if "another process" not in str(exc) or time.monotonic() > deadline:
                raise
            milvus.disconnect(config)
            time.sleep(0.2)


def assert_every_article_whole(store: PassageStore, versions: dict[str, list[set[str]]]) -> None:
    """Every visible article has all its passages, of one of its versions, and nothing else."""
    seen = _texts_by_article(store)
    assert seen.keys() == set(store.articles)
    for doc_id, texts in seen.items():
        assert texts in versions[doc_id], doc_id
    assert store.count == sum(len(t) for t in seen.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    "step, at, uncommitted, pending",
    [
        ("_insert", 2, True, False),  # inside the first batch: passages, not sentences
        ("_write_manifest", 1, True, False),  # the first batch written, not committed
        ("_delete_replaced", 1, False, True),  # committed, the old passages not deleted yet
        ("_write_manifest", 2, False, True),  # old passages deleted, the commit's note kept
        ("_insert", 5, True, False),  # the second batch begun
    ],
)
def test_a_reindex_killed_at_any_step_leaves_every_article_whole(
    tmp_path, lite, step, at, uncommitted, pending
):
    corpus = write_tiny(tmp_path / "corpus")
    for i in range(6):
        (corpus / f"extra{i}.txt").write_text(
            f"Judul {i}\n\nKalimat pertama nomor {i}. Kalimat kedua.\n\nParagraf lain {i}.\n",
            "utf-8",
        )
    config = lite(corpus, milvus={"batch_size": 4})
    reindex(config, embedder=FakeEmbedder())
    versions: dict[str, list[set[str]]] = {}
    for doc_id, texts in _texts_by_article(open_store(config)).items():
        versions.setdefault(doc_id, []).append(texts)
    # Changes for the killed reindex: three changed, one added, one removed.
    for i in range(3):
        path = corpus / f"extra{i}.txt"
        path.write_text(path.read_text("utf-8").replace("kedua", f"kedua yang baru {i}"), "utf-8")
    (corpus / "baru.txt").write_text("Berita Baru\n\nIsi berita baru.\n", "utf-8")
    (corpus / "sepakbola.txt").unlink()
    final_local = make_config(corpus, tmp_path / "local" / ".index")
    reindex(final_local, embedder=FakeEmbedder())
    for doc_id, texts in _texts_by_article(load_index(final_local.index_path, final_local)).items():
        versions.setdefault(doc_id, []).append(texts)
    milvus.disconnect(config)  # Milvus Lite serves one process per file: the child's now

    data = {
        "corpus": {"path": str(corpus)},
        "index": {
            "path": str(config.index_path),
            "backend": "milvus",
            "milvus": {"uri": config.milvus_uri, "batch_size": 4},
        },
    }
    script = KILLED_REINDEX.format(root=str(ROOT), data=data, step=step, at=at)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    killed = open_when_free(config)
    assert_every_article_whole(killed, versions)
    # The kill left what this step leaves: rows not committed, or deletes not done.
    client, names = milvus.connect(config), milvus.Names.of(config)
    left = client.query(
        names.passages,
        filter=f"version > {killed.manifest['committed']}",
        output_fields=["count(*)"],
    )
    assert (left[0]["count(*)"] > 0) == uncommitted
    assert bool(killed.manifest["pending"]) == pending
    # The next reindex finishes the work: the same passages and BM25 as the local index.
    result = reindex(config, embedder=FakeEmbedder())
    assert result.stats.chunks == load_index(final_local.index_path, final_local).count
    a, b = load_index(final_local.index_path, final_local), open_store(config)
    assert passages(b) == passages(a)
    assert_same_keyword(a, b, [tokenize(c.text, True) for c in a.chunks])


def _texts_by_article(store: PassageStore) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for chunk in store.chunks:
        found.setdefault(chunk.doc_id, set()).add(chunk.text)
    return found


# --- the same scores and answers as the local index -------------------------------------------


@pytest.mark.needs_shared("eval/seed_dev.jsonl")
def test_bm25_and_dense_search_equal_the_local_index_on_the_seed_article(
    seed_corpus, tmp_path, lite
):
    local = make_config(seed_corpus, tmp_path / "local" / ".index")
    config = lite(seed_corpus)
    embedder = FakeEmbedder()
    reindex(local, embedder=embedder)
    reindex(config, embedder=FakeEmbedder())
    a, b = load_index(local.index_path, local), open_store(config)
    questions = [q.question for q in load_questions(EVAL_DIR / "seed_dev.jsonl")]
    queries = [tokenize(q, True) for q in questions] + [tokenize(c.text, True) for c in a.chunks]
    assert assert_same_keyword(a, b, queries) >= len(questions)
    for question in questions:
        vector = embedder.encode_queries([question])[0]
        assert_same_top(a, b, dense_top(a, vector, 5), dense_top(b, vector, 5), atol=1e-5)


@pytest.fixture(scope="module")
def facqa(tmp_path_factory):
    """FacQA's whole corpus (1,362 passages) in a local index and in Milvus Lite, with the fake
    embedder (BM25 does not depend on it, and dense search is compared on the same vectors)."""
    root = tmp_path_factory.mktemp("facqa")
    corpus = FACQA / "corpus.jsonl"
    local = make_config(corpus, root / "local" / ".index")
    config = milvus_config(corpus, root / "milvus")
    reindex(local, embedder=FakeEmbedder())
    reindex(config, embedder=FakeEmbedder())
    yield load_index(local.index_path, local), open_store(config)
    milvus.disconnect(config)


@pytest.mark.slow
@pytest.mark.needs_shared("eval/facqa")
def test_bm25_scores_equal_the_local_index_on_facqa(facqa):
    a, b = facqa
    assert b.count == a.count == 1362
    questions = load_questions(FACQA / "questions.jsonl", split="test")
    queries = [tokenize(q.question, True) for q in questions]
    assert len(queries) == 311
    assert assert_same_keyword(a, b, queries) >= 300


@pytest.mark.slow
@pytest.mark.needs_shared("eval/facqa")
def test_dense_top_k_equals_faiss_flat_on_facqa(facqa):
    a, b = facqa
    assert a.segments[0].faiss_index.__class__.__name__ == "IndexFlatIP"
    embedder = FakeEmbedder()
    for q in load_questions(FACQA / "questions.jsonl", split="test"):
        vector = embedder.encode_queries([q.question])[0]
        assert_same_top(a, b, dense_top(a, vector, 50), dense_top(b, vector, 50), atol=1e-5)


def answer_view(answer) -> tuple:
    """What a user sees of an answer: declined, and each quote's passage, highlight and span."""
    return (
        answer.declined,
        [(q.doc_id, q.start, q.end, q.highlight, q.answer, q.title) for q in answer.quotes],
    )


@pytest.mark.slow
@pytest.mark.needs_shared("eval/seed_dev.jsonl")
def test_seed_questions_get_the_same_answers_as_the_local_index(
    seed_index, seed_answerer, real_embedder, tmp_path, lite
):
    config = lite(seed_index.corpus_path)
    reindex(config, embedder=real_embedder)
    remote = Answerer(config, embedder=real_embedder)
    questions = load_questions(EVAL_DIR / "seed_dev.jsonl")
    questions += load_questions(ROOT / "tests" / "fixtures" / "seed_followups.jsonl")[:8]
    declined = 0
    for q in questions:
        want = seed_answerer.ask(q.question, q.history)
        got = remote.ask(q.question, q.history)
        assert answer_view(got) == answer_view(want), q.question
        assert [c.chunk_id for c in got.ranking] == [c.chunk_id for c in want.ranking]
        declined += want.declined
    assert 0 < declined < len(questions)


# --- hot reload and the seam -------------------------------------------------------------------


def test_the_bot_picks_up_a_reindex_of_the_collection(tmp_path, lite):
    corpus = write_tiny(tmp_path / "corpus")
    config = lite(corpus, reader={"enabled": False}, search={"decline_threshold": 0.0})
    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    answerer = Answerer(config, embedder=embedder)
    assert isinstance(answerer.index, PassageStore)
    before = answerer.index.version
    assert live_version(config) == before and not answerer.reload_if_changed()
    (corpus / "gempa.txt").write_text(
        "Gempa Guncang Cianjur\n\nGempa bermagnitudo 5,6 mengguncang Cianjur pada Senin siang.\n",
        "utf-8",
    )
    old = answerer.ask("Berapa magnitudo gempa di Cianjur?")
    assert all(q.doc_id != "gempa" for q in old.quotes)
    reindex(config, embedder=embedder)
    assert live_version(config) != before
    assert answerer.reload_if_changed()
    fresh = answerer.ask("Berapa magnitudo gempa di Cianjur?")
    assert fresh.quotes[0].doc_id == "gempa"
    assert "gempa" in {a.doc_id for a in answerer.articles()}


@pytest.fixture
def milvus_server(tmp_path):
    """Milvus's engine serving gRPC on a port of 127.0.0.1, as a standalone server does (Milvus
    Lite with an address): several processes may use it at once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from milvus_lite.server import Server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(str(tmp_path / "server.db"), f"127.0.0.1:{port}")
    assert server.init() and server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.slow
def test_a_reindex_in_another_process_reaches_the_running_bot_through_a_server(
    tmp_path, milvus_server, real_embedder
):
    corpus = write_tiny(tmp_path / "corpus")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"corpus: {{path: {corpus}}}\n"
        f"index: {{path: {tmp_path / '.index'}, backend: milvus, "
        f"milvus: {{uri: '{milvus_server}'}}}}\n"
        "reader: {enabled: false}\n",
        "utf-8",
    )
    config = load_config(config_file, {"MILVUS_TOKEN": "root:Milvus"})
    assert config.milvus_uri == milvus_server and config.milvus_token == "root:Milvus"
    reindex(config, embedder=real_embedder)
    answerer = Answerer(config, embedder=real_embedder)  # the bot, serving
    question = "Berapa magnitudo gempa di Cianjur?"
    assert all(q.doc_id != "gempa" for q in answerer.ask(question).quotes)
    (corpus / "gempa.txt").write_text(
        "Gempa Guncang Cianjur\n\nGempa bermagnitudo 5,6 mengguncang Cianjur pada Senin.\n", "utf-8"
    )
    command = [sys.executable, "-m", "retrieval.index.reindex", "--config", str(config_file)]
    env = {**os.environ, "MILVUS_TOKEN": "root:Milvus"}
    proc = subprocess.run(command + ["--quiet"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "index updated: 1 added, 0 changed, 0 removed, 3 unchanged" in proc.stdout
    assert answerer.reload_if_changed()
    answer = answerer.ask(question)
    assert answer.quotes[0].doc_id == "gempa" and "5,6" in answer.quotes[0].text
    milvus.disconnect(config)


def test_check_reads_every_passage_of_the_collection(tmp_path, lite):
    config = lite(write_tiny(tmp_path / "corpus"), reader={"enabled": False})
    embedder = FakeEmbedder()
    reindex(config, embedder=embedder)
    store = Answerer(config, embedder=embedder).index
    store.check()  # the collection holds what its manifest says
    assert len(store.live_rows()) == store.count
