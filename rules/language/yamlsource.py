"""Safe YAML reading that remembers the line of every value.

Only plain data is accepted: no tags beyond YAML's standard scalars, no
anchors or aliases (which is also what stops "billion laughs" bombs), no
duplicate keys, at most MAX_BYTES, and mappings and lists nested at most
MAX_DEPTH deep (checked on the event stream, which PyYAML reads without
recursion, before the recursive composer and validators see the document).
Each value's line is kept under its path so that a validation error can
point at `file:line`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BYTES = 1_000_000
MAX_DEPTH = 50  # the deepest file in rules/policies nests 15 levels


class YamlSourceError(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class Located:
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)

    def line_of(self, path: tuple) -> int:
        """The line of the deepest part of `path` that exists in the source."""
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def read_yaml(text: str) -> Located:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlSourceError(1, f"file is larger than {MAX_BYTES} bytes")
    try:
        _check_depth(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlSourceError(mark.line + 1 if mark else 1, str(exc.problem or exc)) from None
    except yaml.YAMLError as exc:
        raise YamlSourceError(1, str(exc)) from None
    if node is None:
        raise YamlSourceError(1, "file is empty")
    located = Located(None)
    # A constructor for this file only: one kept at module level cached every node it ever built
    # (`constructed_objects`), so each reload of the policies leaked the whole parse (~6 MiB).
    located.data = _build(node, (), located.lines, set(), yaml.SafeLoader(""))
    return located


def _check_depth(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlSourceError(event.start_mark.line + 1,
                                      f"mappings and lists are nested more than {MAX_DEPTH} deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


_BOOL = "tag:yaml.org,2002:bool"
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")}


def _build(node: yaml.Node, path: tuple, lines: dict, seen: set, constructor: yaml.SafeLoader) -> Any:
    if id(node) in seen:
        raise YamlSourceError(node.start_mark.line + 1, "anchors and aliases are not allowed in policy files")
    seen.add(id(node))
    if node.tag not in _PLAIN_TAGS:
        raise YamlSourceError(node.start_mark.line + 1, f"tag '{node.tag}' is not allowed in policy files")
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSourceError(key_node.start_mark.line + 1, "mapping keys must be plain text")
            key = _scalar(key_node, constructor)
            if key in out:
                raise YamlSourceError(key_node.start_mark.line + 1, f"duplicate key '{key}'")
            out[key] = _build(value_node, path + (key,), lines, seen, constructor)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), lines, seen, constructor) for i, item in enumerate(node.value)]
    return _scalar(node, constructor)


def _scalar(node: yaml.ScalarNode, constructor: yaml.SafeLoader):
    if node.tag == _BOOL and node.value.lower() not in ("true", "false"):
        return node.value  # YAML 1.2: yes/no/on/off are text, not booleans
    try:
        value = constructor.construct_object(node)
        if isinstance(value, str):
            value.encode("utf-8")  # "\ud800" escapes a lone surrogate: not text (protobuf and the engine refuse it)
        return value
    except UnicodeEncodeError:
        raise YamlSourceError(node.start_mark.line + 1, "text is not valid Unicode (a lone surrogate escape)") from None
    except yaml.constructor.ConstructorError as exc:
        raise YamlSourceError(node.start_mark.line + 1, str(exc.problem)) from None
    except ValueError as exc:  # e.g. 2023-02-30 as a date, or an integer of more than 4300 digits
        problem = "the number is too long" if "digits" in str(exc) else str(exc)
        raise YamlSourceError(node.start_mark.line + 1, f"'{node.value[:40]}' cannot be read: {problem}") from None
