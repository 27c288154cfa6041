# SPDX-License-Identifier: MPL-2.0
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
def load_yaml(path: Path | str, limits: Limits = DEFAULT) -> Any:
    """One YAML document, bounded; None for an empty file.

    PyYAML (about 0.8 MiB of every process that imports it) is loaded on the first call, in
    `meshkit.bounded_yaml`: a Consul-mode proxy started from flags alone never reads YAML.
    """
    from meshkit.bounded_yaml import load_yaml as load

    return load(path, limits)


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
