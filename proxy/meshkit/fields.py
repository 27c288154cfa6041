# SPDX-License-Identifier: MPL-2.0
"""Typed readers for the fields of the proxy's YAML files, shared by static mode and the
Consul-mode file.

Each reader takes the `Problems` collector and the key's dotted path, returns the typed value
(or a default), and records a message naming the file, the key and what was expected; the
loaders report every problem at once and apply nothing unless all of them are clean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshkit.config import parse_hostport, parse_ms


class Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, text: str) -> None:
        self.items.append(f"{self.source}: {where}: {text}" if where else f"{self.source}: {text}")


def check_keys(p: Problems, where: str, data: dict[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            import difflib  # only a bad file pays for it

            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            extra = (
                f" (did you mean {hint[0]!r}?)"
                if hint
                else f" (known: {', '.join(sorted(allowed))})"
            )
            p.add(f"{where}.{key}" if where else str(key), f"unknown key{extra}")


def section(p: Problems, data: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        p.add(key, f"must be a mapping, got {type(value).__name__}")
        return {}
    check_keys(p, key, value, allowed)
    return value


def string(p: Problems, where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        p.add(where, f"must be a non-empty string, got {value!r}")
        return None
    return value


def boolean(p: Problems, where: str, value: object, default: bool = False) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        p.add(where, f"must be true or false, got {value!r}")
        return default
    return value


def millis(p: Problems, where: str, value: object, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_ms(value)
    except ValueError as exc:
        p.add(where, str(exc))
        return default


def port(p: Problems, where: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        p.add(where, f"must be a port number 0-65535, got {value!r}")
        return None
    return value


def hostport(p: Problems, where: str, value: object) -> tuple[str, int] | None:
    text = string(p, where, value)
    if text is None:
        return None
    try:
        return parse_hostport(text)
    except ValueError as exc:
        p.add(where, str(exc))
        return None


def existing_file(p: Problems, where: str, value: object, base: Path) -> Path | None:
    text = string(p, where, value)
    if text is None:
        return None
    path = Path(text)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        p.add(where, f"file {str(path)!r} does not exist or is not a regular file")
        return None
    return path


def names(p: Problems, where: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        p.add(where, "must be a list of service names (`*` wildcards allowed)")
        return ()
    return tuple(value)
