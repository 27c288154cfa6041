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
from pathlib import Path
from typing import Any

# Re-exported: callers spell them bounded.FileError, bounded.Limits, bounded.read_text, ...
from meshkit.bounded.limits import DEFAULT as DEFAULT
from meshkit.bounded.limits import MAX_ALIASES as MAX_ALIASES
from meshkit.bounded.limits import MAX_BYTES as MAX_BYTES
from meshkit.bounded.limits import MAX_DEPTH as MAX_DEPTH
from meshkit.bounded.limits import MAX_NODES as MAX_NODES
from meshkit.bounded.limits import FileError as FileError
from meshkit.bounded.limits import Limits as Limits
from meshkit.bounded.limits import decode_utf8 as decode_utf8
from meshkit.bounded.limits import read_bytes as read_bytes
from meshkit.bounded.limits import read_text as read_text


# -- YAML -------------------------------------------------------------------------------------
def load_yaml(path: Path | str, limits: Limits = DEFAULT) -> Any:
    """One YAML document, bounded; None for an empty file.

    PyYAML (about 0.8 MiB of every process that imports it) is loaded on the first call, in
    `meshkit.bounded.yamlfile`: a Consul-mode proxy started from flags alone never reads YAML.
    """
    from meshkit.bounded.yamlfile import load_yaml as load

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
