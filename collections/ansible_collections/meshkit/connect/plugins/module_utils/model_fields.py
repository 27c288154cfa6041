# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Typed fields out of loosely typed YAML: the one reader for everything users write in inventory.

The mesh model (``mesh_model.py``) and the Nomad job settings (``nomad_settings.py``) both read
through ``Reader``, so a value means the same thing in either place (``"yes"`` is a boolean in
both) and a refusal reads the same: ``path: what is wrong (fix: what to write)``. ``Reader``
records a ``Problem`` instead of raising, so one run reports every mistake at once; the caller
raises one ``ModelError`` with all of them.

Go durations (``10s``, ``1m30s``) are parsed and formatted here too, once, for the check fields
of the mesh model and the Nomad update and restart blocks. The dev agent keeps its own decoder
on purpose: it is the oracle the renderers are tested against.

Runs on managed hosts: Python 3.8 syntax at run time, stdlib only, no Ansible import (the
``meshkit`` CLI reads models without ansible-core).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

# --- problems ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason the input cannot work: where (``path``), what, and how to fix it."""

    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (fix: {self.fix})"


class ModelError(ValueError):
    """Every problem found in one input, so a single run reports them all.

    ``subject`` names what was read in the first line (``host_vars/web.yml: 2 problem(s) in the
    mesh model:``); the Nomad side leaves it empty because its ``source`` already names the job
    or the job file.
    """

    def __init__(
        self, problems: Sequence[Problem], source: str = "vars", *, subject: str = "the mesh model"
    ) -> None:
        self.problems: list[Problem] = list(problems)
        self.source = source
        where = f" in {subject}" if subject else ""
        lines = [f"{source}: {len(self.problems)} problem(s){where}:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


# --- booleans ---------------------------------------------------------------------------------

# Exactly what Ansible's own conversion accepts (ansible.module_utils.parsing.convert_bool), so a
# value written in inventory or with -e means the same here as in any module option. Strings
# are compared lower-cased and stripped, as Ansible does; 1 and 0 match the numbers too.
BOOLEANS_TRUE = frozenset(("y", "yes", "on", "1", "true", "t", 1, 1.0, True))
BOOLEANS_FALSE = frozenset(("n", "no", "off", "0", "false", "f", 0, 0.0, False))


def boolean_of(value: object) -> bool | None:
    """``value`` as a boolean by Ansible's rules, or None if Ansible would refuse it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.lower().strip()
    elif not isinstance(value, (int, float)):
        return None
    if value in BOOLEANS_TRUE:
        return True
    if value in BOOLEANS_FALSE:
        return False
    return None


# --- Go durations -----------------------------------------------------------------------------

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNIT_NS["h"] = 3600 * 10**9
DURATION_FIX = "write a Go duration such as 10s, 500ms or 1m30s"


def duration_ns(text: str) -> int | None:
    """Go duration text made of number+unit parts (``10s``, ``1m30s``) in nanoseconds, else None.

    Exact text only: no spaces, no bare ``0``; what passes can be handed to Consul verbatim.
    """
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        return None
    return int(total)


def parse_duration(value: object) -> int:
    """Go duration text (``10s``, ``1m30s``, ``0``) or integer nanoseconds, as nanoseconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a duration such as 10s or 1m30s")
    text = value.strip()
    if text == "0":
        return 0
    ns = duration_ns(text)
    if ns is None:
        raise ValueError(f"{value!r} is not a duration such as 10s or 1m30s")
    return ns


def format_duration(ns: int) -> str:
    """Nanoseconds as the shortest Go duration text HCL accepts (``90s`` -> ``1m30s``)."""
    if ns == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("h", "m", "s", "ms", "us"):
        size = _UNIT_NS[unit]
        if ns >= size:
            parts.append(f"{ns // size}{unit}")
            ns %= size
    if ns:
        parts.append(f"{ns}ns")
    return "".join(parts)


# --- the reader -------------------------------------------------------------------------------

_DIGITS = re.compile(r"^[0-9]+$")


def at(path: str, key: Any) -> str:
    """The path of ``key`` inside ``path`` (``services[0] (web).port``); top level is ``""``."""
    return f"{path}.{key}" if path else str(key)


def kind(value: Any) -> str:
    """What a YAML value is, in the words a user knows (``a mapping``, ``a list``...)."""
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def plain(value: Any) -> Any:
    """Copy YAML/Ansible containers into plain dicts and lists (deterministic JSON later)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Reader:
    """Reads typed fields out of loosely typed YAML, recording a Problem for each refusal.

    Every getter returns a usable value (the default on a refusal), so parsing goes on and the
    caller raises one ``ModelError`` with ``problems`` at the end.

    ``numbers_as_text``: whether a number where text is expected is read as its text. The mesh
    model does (``tags: [1]``, an inventory habit); the Nomad settings do not, because a YAML
    number there is usually a misread (``perms: 0644`` loads as the integer 420).
    """

    def __init__(self, *, numbers_as_text: bool = True) -> None:
        self.problems: list[Problem] = []
        self.numbers_as_text = numbers_as_text

    def add(self, path: str, message: str, fix: str) -> None:
        self.problems.append(Problem(path, message, fix))

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        """``value`` as a mapping (nothing is an empty one); None, with a problem, otherwise."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, f"expected a mapping, got {kind(value)}", "write key: value pairs")
            return None
        return value

    def known_keys(self, data: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1)
                fix = f"did you mean {close[0]!r}?" if close else f"use one of {sorted(allowed)}"
                self.add(at(path, key), f"unknown key {key!r}", fix)

    def _text(self, value: Any) -> bool:
        if isinstance(value, str):
            return True
        return (
            self.numbers_as_text and isinstance(value, (int, float)) and not isinstance(value, bool)
        )

    def string(self, data: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        value = data.get(key, default)
        if value is None:
            return default
        if not self._text(value):
            self.add(at(path, key), f"expected a string, got {kind(value)}", "quote the value")
            return default
        return str(value)

    def choice(
        self, data: Mapping[str, Any], key: str, path: str, choices: Sequence[str], default: str
    ) -> str:
        """A string that must be one of ``choices`` (empty means the default)."""
        value = self.string(data, key, path, default)
        if value and value not in choices:
            self.add(
                at(path, key), f"{value!r} is not allowed", f"use one of: {', '.join(choices)}"
            )
            return default
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        """A boolean by Ansible's rules (``true``/``yes``/``on``/``1``, any case, and their
        opposites); anything else is refused."""
        value = data.get(key, default)
        if value is None:
            return default
        flag = boolean_of(value)
        if flag is None:
            self.add(at(path, key), f"expected true or false, got {value!r}", "write true or false")
            return default
        return flag

    @overload
    def integer(
        self, data: Mapping[str, Any], key: str, path: str, *, low: int, high: int, default: int
    ) -> int: ...

    @overload
    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        low: int,
        high: int,
        default: None = None,
    ) -> int | None: ...

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        low: int,
        high: int,
        default: int | None = None,
    ) -> int | None:
        """A whole number in ``low``-``high``; digits in a string count. Unset (or ``""``) is
        ``default``."""
        value = data.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, str) and _DIGITS.match(value.strip()):
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(at(path, key), f"expected a number, got {value!r}", f"use {low}-{high}")
            return default
        if not low <= value <= high:
            self.add(at(path, key), f"{value} is out of range", f"use {low}-{high}")
            return default
        return value

    def port(self, data: Mapping[str, Any], key: str, path: str) -> int | None:
        return self.integer(data, key, path, low=1, high=65535)

    def duration(self, data: Mapping[str, Any], key: str, path: str, default: int) -> int:
        """A Go duration (or integer nanoseconds), in nanoseconds."""
        if data.get(key) is None:
            return default
        try:
            return parse_duration(data[key])
        except ValueError as exc:
            self.add(at(path, key), str(exc), DURATION_FIX)
            return default

    def duration_text(self, value: str, path: str) -> None:
        """Check text that is passed on verbatim as a Go duration (``""`` is unset)."""
        if value and duration_ns(value) is None:
            self.add(path, f"{value!r} is not a duration", DURATION_FIX)

    def strings(
        self, data: Mapping[str, Any], key: str, path: str, *, non_empty: bool = False
    ) -> tuple[str, ...]:
        """A list of strings; ``non_empty`` refuses ``""`` items."""
        value = data.get(key)
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.add(at(path, key), f"expected a list of strings, got {kind(value)}", "[a, b]")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            where = f"{at(path, key)}[{i}]"
            if not self._text(item):
                self.add(where, f"expected a string, got {kind(item)}", "quote it")
            elif non_empty and item == "":
                self.add(where, "the string is empty", "remove the item or write a value")
            else:
                out.append(str(item))
        return tuple(out)

    def items(self, data: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """A list's items with their paths (``services[0]``); the items are read by the caller."""
        value = data.get(key)
        if value is None:
            return []
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            self.add(at(path, key), f"expected a list, got {kind(value)}", "write a YAML list")
            return []
        base = at(path, key)
        return [(f"{base}[{i}]", item) for i, item in enumerate(value)]

    def config(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        """A free-form mapping, copied into plain dicts and lists."""
        value = self.mapping(data.get(key), at(path, key))
        return plain(value) if value else {}

    def str_map(self, data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        """A mapping of names to scalars, as text (``true`` becomes ``"true"``)."""
        value = self.mapping(data.get(key), at(path, key)) or {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, (Mapping, list)) or v is None:
                self.add(at(at(path, key), k), "must map a name to a scalar", "quote the value")
                continue
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out
