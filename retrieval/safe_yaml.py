"""YAML for untrusted text (config files, front matter): no aliases, bounded size and depth.

PyYAML's safe loader still expands aliases (a few hundred bytes can name billions of
nodes), recurses once per nesting level and keeps the last of two equal keys. This loader
refuses aliases and duplicate keys and bounds the text's length and nesting, each with a
message that names the key where it happened.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 20


class YamlRefused(yaml.YAMLError):
    """Valid YAML that is refused: an alias, a duplicate key, too long or too deep."""


class YamlTooLong(YamlRefused):
    """Text longer than the caller's limit: refused before any of it is parsed."""


def _line(mark: yaml.Mark | None) -> str:
    return f" (line {mark.line + 1})" if mark is not None else ""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that keeps the path of the node being composed, to check and name it."""

    def __init__(self, stream: str, max_depth: int):
        super().__init__(stream)
        self.max_depth = max_depth
        self.path: list[str] = []

    def where(self, key: str | None = None) -> str:
        """The dotted path of the current node (and key), or 'the top level'."""
        text = ""
        for part in [*self.path, key] if key is not None else self.path:
            if part.startswith("["):
                text += part
            elif part:
                text += f".{part}" if text else part
        return text or "the top level"

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if isinstance(index, yaml.ScalarNode):
            part = str(index.value)
        elif isinstance(index, int):
            part = f"[{index}]"
        else:
            part = ""  # the document itself, or a mapping key
        self.path.append(part)
        try:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise YamlRefused(
                    f"{self.where()}: YAML aliases (*{event.anchor}) are not allowed"
                    f"{_line(event.start_mark)}"
                )
            if len(self.path) > self.max_depth:
                mark = self.peek_event().start_mark
                raise YamlRefused(
                    f"{self.where()}: nested deeper than {self.max_depth} levels{_line(mark)}"
                )
            return super().compose_node(parent, index)
        finally:
            self.path.pop()

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if (key.tag, key.value) in seen:
                    raise YamlRefused(
                        f"{self.where(str(key.value))}: duplicate key{_line(key.start_mark)}"
                    )
                seen.add((key.tag, key.value))
        return node


def load_yaml(text: str, max_chars: int, max_depth: int = MAX_DEPTH) -> Any:
    """The one YAML document in text, limited; yaml.YAMLError (YamlRefused) otherwise."""
    if len(text) > max_chars:
        raise YamlTooLong(f"{len(text):,} characters of YAML; at most {max_chars:,} are read")
    loader = _LimitedLoader(text, max_depth)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
