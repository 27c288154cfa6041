"""The one reader of every file a meshkit command takes as input: bounded in size, nesting,
alias expansion and time, and strict UTF-8.

A config file is operator input and sometimes attacker input (a shared `-config-dir`, a vars
file from a merge request). Read naively, a 4 KiB YAML alias bomb grows a process past 600 MiB
once anything walks the value, a deeply nested document ends in a RecursionError traceback,
and a Latin-1 file in a UnicodeDecodeError traceback. Here each of those is a `FileError`,
one line naming the file and the problem, raised before any of the value is used:

- size: at most `max_bytes` are read (the file is never read whole first);
- encoding: strict UTF-8, the message gives the byte offset of the first bad byte;
- nesting: at most `max_depth` levels of mappings/sequences (checked on the event stream
  before composing, so the composer's recursion never gets deep);
- aliases: at most `max_aliases` alias nodes, and the document fully expanded (every alias
  counted as the nodes it stands for) at most `max_nodes` nodes.

The proxy, the dev agent's `-config-dir`, `meshkit render` and `meshkit nomad` all read
through here, so the limits and the wording are the same everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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

MAX_BYTES = 1 << 20  # 1 MiB: far above any real config file, mesh model or job settings
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 100_000


class FileError(ValueError):
    """A file that cannot be used; `str()` is one line: `<path>: <problem>`."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_aliases: int = MAX_ALIASES
    max_nodes: int = MAX_NODES


DEFAULT = Limits()


def read_bytes(path: Path | str, limits: Limits = DEFAULT) -> bytes:
    """At most `max_bytes` of the file; a larger file is refused, not truncated."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise FileError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:
        raise FileError(path, f"larger than {limits.max_bytes} bytes, the limit for this file")
    return data


def decode_utf8(path: Path | str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise FileError(
            path, f"not UTF-8: byte 0x{bad} at offset {exc.start} ({exc.reason}); save it as UTF-8"
        ) from None


def read_text(path: Path | str, limits: Limits = DEFAULT) -> str:
    return decode_utf8(path, read_bytes(path, limits))


# -- YAML -------------------------------------------------------------------------------------
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


# -- JSON -------------------------------------------------------------------------------------
def _json_depth_ok(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return True


def load_json(path: Path | str, limits: Limits = DEFAULT) -> Any:
    """One JSON document, bounded (JSON has no aliases: size and depth are the limits)."""
    text = read_text(path, limits)
    try:
        value = json.loads(text)
    except RecursionError:
        raise FileError(path, f"nested deeper than {limits.max_depth} levels") from None
    except ValueError as exc:
        raise FileError(path, f"not valid JSON: {exc}") from None
    if not _json_depth_ok(value, limits.max_depth):
        raise FileError(path, f"nested deeper than {limits.max_depth} levels")
    return value
