"""Config files that are hostile or absurd: refused with a message naming the key, never a crash."""

from __future__ import annotations

import dataclasses
import time
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.config import Config, load_config, parse_config
from retrieval.errors import ConfigError
from retrieval.safe_yaml import YamlRefused, load_yaml

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_alias_bomb_is_refused_at_once(tmp_path):
    started = time.perf_counter()
    refused = r"b\[0\]: YAML aliases \(\*a\) are not allowed \(line 2\)"
    with pytest.raises(ConfigError, match=refused):
        load_config(write(tmp_path, BILLION_LAUGHS))
    assert time.perf_counter() - started < 1


def test_deep_nesting_is_refused_naming_where(tmp_path):
    text = "search:\n  candidates: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ConfigError, match=r"search\.candidates\[0\]\[0\].*nested deeper than 20"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "search:\n  cache_size: 1\n  cache_size: 2\n",
            "search.cache_size: duplicate key (line 3)",
        ),
        ("search: {}\nindex: {}\nsearch: {}\n", "search: duplicate key (line 3)"),
        (
            "telegram: {base_url: 'http://a', base_url: 'http://b'}\n",
            "telegram.base_url: duplicate",
        ),
    ],
)
def test_duplicate_keys_are_refused(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)


def test_a_huge_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at most 1,000,000 are read"):
        load_config(write(tmp_path, "# " + "x" * 1_000_000 + "\n"))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"corpus": {"path": "cor\x00pus"}}, "corpus.path: contains a NUL character"),
        ({"index": {"path": ""}}, "index.path: is empty"),
        ({"embedding": {"model": "x\x00"}}, "embedding.model: contains a NUL character"),
        ({"index": {"ivf_nprobe": 10**21}}, "index.ivf_nprobe: 1000000000000000000000 is out of"),
        ({"index": {"ivf_nlist": 10**9}}, "index.ivf_nlist: 1000000000 is out of range"),
        ({"search": {"cache_size": 10**29}}, "search.cache_size: 1000000000000000000000000000"),
        ({"search": {"rrf_k": 10**12}}, "search.rrf_k: 1000000000000 is out of range"),
        (
            {"telegram": {"reload_check_seconds": 10**400}},
            "reload_check_seconds: expected a finite",
        ),
        ({"telegram": {"allowed_chat_ids": [2**70]}}, "telegram.allowed_chat_ids[0]: 1180591620"),
        ({"telegram": {"base_url": "api.telegram.org"}}, "telegram.base_url: 'api.telegram.org'"),
        ({"telegram": {"base_url": "ftp://x.org/bot"}}, "is not a URL; use http://… or https://…"),
        ({"telegram": {"base_file_url": "https://"}}, "telegram.base_file_url: 'https://' is not"),
        ({"telegram": {"webhook_url": "hook"}}, "telegram.webhook_url: 'hook' is not a URL"),
        ({"telegram": {"base_url": "http://a b"}}, "telegram.base_url: 'http://a b' is not a URL"),
        ({"corpus": {"max_file_mb": 0}}, "corpus.max_file_mb: 0.0 is out of range"),
        ({"telegram": {"max_messages_per_answer": 0}}, "max_messages_per_answer: 0 is out of"),
        ({"search": {1: 2}}, "unknown setting search.1"),
        ({"search": {None: 2, "x": 1}}, "unknown setting search.None"),
    ],
)
def test_absurd_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_a_nul_byte_in_the_config_path_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("conf\x00ig.yaml")


def test_every_number_has_both_bounds():
    def sections(cls):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                yield from sections(tp)
            else:
                yield cls.__name__, f, tp

    for section, f, tp in sections(Config):
        meta = f.metadata.get("item", f.metadata) if typing.get_origin(tp) is tuple else f.metadata
        inner = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
        if inner in (int, float) and "choices" not in meta:
            assert meta.get("low") is not None and meta.get("high") is not None, (section, f.name)


# Property-based: whatever the file holds, loading gives a Config or a ConfigError.

SECTIONS = {
    f.name: [g.name for g in dataclasses.fields(f.type)] if dataclasses.is_dataclass(f.type) else []
    for f in dataclasses.fields(Config)
    if not f.metadata.get("internal")
}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def configs(draw):
    data = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        keys = SECTIONS[section]
        if not keys:
            data[section] = draw(values)
            continue
        chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
        data[section] = {key: draw(values) for key in chosen}
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_any_settings_give_a_config_or_a_config_error(data):
    try:
        config = parse_config(data)
    except ConfigError as exc:
        assert str(exc)  # a message, naming the key
        return
    assert isinstance(config, Config)


yaml_texts = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="[]{}:,-&*!|>'\"#? \n\tab01.e", max_size=200),
    configs().map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(yaml_texts)
def test_any_file_gives_a_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith((str(path), "cannot read config file"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), min_size=1, max_size=4),
    st.integers(0, 3),
)
def test_a_duplicate_key_anywhere_is_named(path, depth):
    key = path[-1]
    body = f"{key}: 1\n{key}: 2\n"
    for part in reversed(path[:-1]):
        body = f"{part}:\n" + "".join(f"  {line}\n" for line in body.splitlines())
    with pytest.raises(YamlRefused, match=f"^{'.'.join(path)}: duplicate key"):
        load_yaml(body, 10_000)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.sampled_from(["[", "{a: "]))
def test_nesting_is_bounded_at_any_depth(depth, opener):
    closer = "]" if opener == "[" else "}"
    text = opener * depth + "1" + closer * depth
    if depth <= 19:
        assert load_yaml(text, 10_000) is not None
    else:
        with pytest.raises(YamlRefused, match="nested deeper than 20 levels"):
            load_yaml(text, 10_000)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(2, 10))
def test_any_alias_is_refused_before_it_is_expanded(levels, width):
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    with pytest.raises(YamlRefused, match=r"l1\[0\]: YAML aliases \(\*l0\) are not allowed"):
        load_yaml("\n".join(lines), 1_000_000)
