# SPDX-License-Identifier: MPL-2.0
"""The YAML reader of `meshkit.bounded`, imported on first use (see `bounded.load_yaml`).

The limits, the wording and `FileError` are `bounded`'s; this file only holds what needs PyYAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, SequenceNode

from meshkit.bounded.limits import DEFAULT, FileError, Limits, read_text


class _Refused(Exception):
    """Raised by the checks below; turned into a FileError by `load_yaml`."""


# libyaml when PyYAML was built with it (the wheels are): its event stream is C and flat, so
# even a 1 MiB line of `[` is refused in milliseconds; the pure-Python scanner is the fallback.
_LOADER: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
_OPEN = (SequenceStartEvent, MappingStartEvent)
_CLOSE = (SequenceEndEvent, MappingEndEvent)


def _check_events(text: str, limits: Limits) -> None:
    """Depth, alias and node counts from the event stream, stopping at the first excess,
    before any node tree is composed (the composer recurses once per level)."""
    depth = aliases = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise _Refused(f"more than {limits.max_aliases} aliases (*name)")
        elif isinstance(event, _OPEN):
            depth += 1
            nodes += 1
            if depth > limits.max_depth:
                mark = event.start_mark
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                raise _Refused(f"nested deeper than {limits.max_depth} levels{where}")
        elif isinstance(event, _CLOSE):
            depth -= 1
        elif isinstance(event, ScalarEvent):
            nodes += 1
        if nodes > limits.max_nodes:
            raise _Refused(f"more than {limits.max_nodes} values")


def _expanded_size(root: Node, limit: int) -> int:
    """Nodes in the document with every alias expanded, stopping as soon as it passes `limit`.

    Shared nodes (anchors) are sized once and their size reused, so a bomb is measured in
    time proportional to its text, never to its expansion.
    """
    sizes: dict[int, int] = {}
    # Iterative post-order walk: (node, children visited?)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                children += [k, v]
        if not done:
            sizes[key] = -1  # in progress: a recursive alias counts as one node
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        total = 1
        for child in children:
            total += max(sizes.get(id(child), 1), 1)
            if total > limit:
                raise _Refused(
                    f"aliases expand to more than {limit} nodes (an alias bomb?); "
                    "write the values out or use fewer aliases"
                )
        sizes[key] = total
    return max(sizes.get(id(root), 1), 1)


def load_yaml(path: Path | str, limits: Limits = DEFAULT) -> Any:
    """One YAML document, bounded; None for an empty file."""
    text = read_text(path, limits)
    try:
        _check_events(text, limits)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, limits.max_nodes)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _Refused as exc:
        raise FileError(path, str(exc)) from None
    except yaml.YAMLError as exc:
        text = " ".join(str(exc).split())
        if "maximum nesting depth" in text:  # libyaml's own cap (1000) met while scanning
            raise FileError(path, f"nested deeper than {limits.max_depth} levels") from None
        raise FileError(path, "not valid YAML: " + text) from None
    except RecursionError:  # belt and braces: the depth cap is far below the stack
        raise FileError(path, f"nested deeper than {limits.max_depth} levels") from None
