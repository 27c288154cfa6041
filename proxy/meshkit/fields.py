# SPDX-License-Identifier: MPL-2.0
"""Typed readers for the fields of the proxy's YAML files, shared by static mode and the
Consul-mode file: one reader per field, and one per shared section (`public_listener`, an
`upstreams` entry), so the two files cannot drift apart.

Each reader takes the `Problems` collector and the key's dotted path, returns the typed value
(or a default), and records a message naming the file, the key and what was expected; the
loaders report every problem at once and apply nothing unless all of them are clean.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshkit.config import (
    DEFAULT_CONNECT_TIMEOUT_MS,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
    DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
    PublicListener,
    UpstreamListener,
    parse_hostport,
    parse_ms,
)
from meshkit.resolver import PREPARED_QUERY, SERVICE

# The keys both files accept in these sections (static mode adds its own to an upstream).
PUBLIC_KEYS = {
    "bind_address",
    "bind_port",
    "local_service_address",
    "local_connect_timeout_ms",
    "handshake_timeout_ms",
}
UPSTREAM_KEYS = {
    "destination_name",
    "destination_type",
    "datacenter",
    "local_bind_address",
    "local_bind_port",
    "connect_timeout_ms",
}


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


def public_listener(
    p: Problems,
    data: dict[str, Any],
    *,
    listen: tuple[str, int] | None = None,
    bind_address: str | None = None,
    service_addr: tuple[str, int] | None = None,
    flag_hints: bool = False,
) -> PublicListener | None:
    """The `public_listener` section (`section()` already checked its keys); None without one.

    `listen`, `bind_address` and `service_addr` are static mode's -listen, -bind-address and
    -service-addr, which win over the file; `flag_hints` names them in the "missing" texts.
    """
    where = "public_listener"
    bind = listen
    if bind is None and data:
        host = string(p, f"{where}.bind_address", data.get("bind_address")) or "0.0.0.0"
        bind_port = port(p, f"{where}.bind_port", data.get("bind_port"))
        if "bind_port" not in data:
            hint = " (or pass -listen HOST:PORT)" if flag_hints else ""
            p.add(f"{where}.bind_port", f"missing{hint}")
        bind = (host, bind_port) if bind_port is not None else None
    if bind is not None and bind_address:
        bind = (bind_address, bind[1])
    if bind is None and not data:
        if service_addr is not None:
            p.add(where, "-service-addr given without -listen or public_listener")
        return None
    local = service_addr or hostport(
        p, f"{where}.local_service_address", data.get("local_service_address")
    )
    if local is None and "local_service_address" not in data:
        hint = " (or pass -service-addr HOST:PORT)" if flag_hints else ""
        p.add(
            f"{where}.local_service_address",
            f"missing: HOST:PORT where the local app listens{hint}",
        )
    local_connect = millis(
        p,
        f"{where}.local_connect_timeout_ms",
        data.get("local_connect_timeout_ms"),
        DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
    )
    handshake = millis(
        p,
        f"{where}.handshake_timeout_ms",
        data.get("handshake_timeout_ms"),
        DEFAULT_HANDSHAKE_TIMEOUT_MS,
    )
    if bind is None or local is None:
        return None
    return PublicListener(
        bind_host=bind[0],
        bind_port=bind[1],
        local_host=local[0],
        local_port=local[1],
        local_connect_timeout_ms=local_connect,
        handshake_timeout_ms=handshake,
    )


def upstream(
    p: Problems,
    where: str,
    item: dict[str, Any],
    *,
    allowed: set[str],
    bind_flag: tuple[str, int, str] | None = None,
    flag_hints: bool = False,
) -> UpstreamListener | None:
    """One `upstreams` entry (a mapping); None when any of it is wrong (the problems say why).

    `bind_flag` is static mode's -upstream for this name: (host, port, destination type), which
    wins over the entry's bind. A local bind port of 0 is refused in both files, as -upstream
    refuses it: the kernel would pick a port the application cannot know.
    """
    before = len(p.items)
    check_keys(p, where, item, allowed)
    name = string(p, f"{where}.destination_name", item.get("destination_name"))
    if "destination_name" not in item:
        p.add(f"{where}.destination_name", "missing")
    dst_type = item.get("destination_type", SERVICE)
    if dst_type not in (SERVICE, PREPARED_QUERY):
        p.add(f"{where}.destination_type", f"must be service or prepared_query, got {dst_type!r}")
    datacenter = string(p, f"{where}.datacenter", item.get("datacenter")) or ""
    bind_port: int | None
    if bind_flag is not None:
        host, bind_port, dst_type = bind_flag
    else:
        host = (
            string(p, f"{where}.local_bind_address", item.get("local_bind_address")) or "127.0.0.1"
        )
        bind_port = port(p, f"{where}.local_bind_port", item.get("local_bind_port"))
        if "local_bind_port" not in item:
            hint = " (or pass -upstream NAME:PORT)" if flag_hints else ""
            p.add(f"{where}.local_bind_port", f"missing{hint}")
        elif bind_port == 0:
            p.add(f"{where}.local_bind_port", "must not be 0")
    timeout = millis(
        p, f"{where}.connect_timeout_ms", item.get("connect_timeout_ms"), DEFAULT_CONNECT_TIMEOUT_MS
    )
    if len(p.items) != before or name is None or bind_port is None:
        return None
    return UpstreamListener(
        name=name,
        bind_host=host,
        bind_port=bind_port,
        dst_type=dst_type,
        connect_timeout_ms=timeout,
        datacenter=datacenter,
    )


def upstreams(
    p: Problems, value: object, read: Callable[[str, dict[str, Any]], UpstreamListener | None]
) -> tuple[UpstreamListener, ...]:
    """The `upstreams` list: each mapping entry through `read`, each listener key at most once.

    The key (type, name, datacenter) is what identifies a listener across reloads, so two
    entries with one key are refused, in both files, naming the second entry.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        p.add("upstreams", "must be a list")
        return ()
    out: list[UpstreamListener] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"upstreams[{i}]"
        if not isinstance(item, dict):
            p.add(where, "must be a mapping")
            continue
        up = read(where, item)
        if up is None:
            continue
        if up.key in seen:
            p.add(where, f"{up.key} appears twice")
            continue
        seen.add(up.key)
        out.append(up)
    return tuple(out)
