# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""The sockets one host's services listen on, and the clashes between them.

``parse_mesh`` refuses a host whose services would bind the same address and port, or a fixed
port inside Consul's automatic sidecar range; ``meshkit render`` and the ``mesh_listeners``
filter list the same sockets for loopback and port audits.

The services are read through small protocols of the fields a socket needs, so this file does
not import the model that calls it (``mesh_model.py``).

Runs on managed hosts: Python 3.8 syntax at run time, stdlib only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import Problem

AUTO_PORT_MIN = 21000
AUTO_PORT_MAX = 21255
"""Consul's default ``sidecar_min_port``..``sidecar_max_port``: auto ports come from here."""

ADMIN_ADDRESS = "127.0.0.1"
"""meshkit-proxy's admin listener (/metrics, /ready) always binds loopback."""


class UpstreamSocket(Protocol):
    """What an upstream tells about the socket its app dials."""

    @property
    def destination_name(self) -> str: ...
    @property
    def local_bind_address(self) -> str: ...
    @property
    def local_bind_port(self) -> int: ...


class SidecarSockets(Protocol):
    """What a sidecar tells about its public, admin and upstream sockets."""

    @property
    def port(self) -> int | None: ...
    @property
    def address(self) -> str: ...
    @property
    def admin_port(self) -> int | None: ...
    @property
    def upstreams(self) -> Sequence[UpstreamSocket]: ...


class ServiceSockets(Protocol):
    """What a service tells about its own socket and its sidecar's."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def sidecar(self) -> SidecarSockets | None: ...


@dataclass(frozen=True)
class Listener:
    """One socket a host will listen on, with who owns it (for clash reports)."""

    address: str
    port: int
    owner: str  # e.g. "service 'web' port"
    path: str
    kind: str  # app | sidecar | upstream | admin


def host_listeners(services: Iterable[ServiceSockets]) -> list[Listener]:
    """Every fixed address:port the services of one host listen on (auto sidecar ports excluded)."""
    out: list[Listener] = []
    for i, svc in enumerate(services):
        base = f"services[{i}] ({svc.name})"
        if svc.port is not None:
            out.append(
                Listener(svc.address, svc.port, f"service {svc.name!r} port", f"{base}.port", "app")
            )
        side = svc.sidecar
        if side is None:
            continue
        if side.port is not None:
            out.append(
                Listener(
                    side.address or svc.address,
                    side.port,
                    f"service {svc.name!r} sidecar port",
                    f"{base}.sidecar.port",
                    "sidecar",
                )
            )
        if side.admin_port is not None:
            out.append(
                Listener(
                    ADMIN_ADDRESS,
                    side.admin_port,
                    f"service {svc.name!r} sidecar admin_port",
                    f"{base}.sidecar.admin_port",
                    "admin",
                )
            )
        for j, up in enumerate(side.upstreams):
            if up.local_bind_port:
                out.append(
                    Listener(
                        up.local_bind_address,
                        up.local_bind_port,
                        f"service {svc.name!r} upstream {up.destination_name!r} local_bind_port",
                        f"{base}.sidecar.upstreams[{j}] ({up.destination_name}).local_bind_port",
                        "upstream",
                    )
                )
    return out


def _overlap(a: str, b: str) -> bool:
    """Two bind addresses collide when equal or when either is a wildcard of the same family."""
    if a == b:
        return True
    try:
        ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a in ("localhost", "") or b in ("localhost", "")
    if ia.version != ib.version:
        return False
    return ia.is_unspecified or ib.is_unspecified


def listener_problems(services: Sequence[ServiceSockets]) -> list[Problem]:
    """Clashes between the host's fixed listeners, and fixed ports in the auto sidecar range."""
    problems: list[Problem] = []
    listeners = host_listeners(services)
    for i, one in enumerate(listeners):
        for other in listeners[:i]:
            if one.port == other.port and _overlap(one.address, other.address):
                problems.append(
                    Problem(
                        one.path,
                        f"{one.owner} {one.address}:{one.port} clashes with "
                        f"{other.owner} on the same host",
                        "pick another port",
                    )
                )
        if one.kind != "sidecar" and AUTO_PORT_MIN <= one.port <= AUTO_PORT_MAX:
            problems.append(
                Problem(
                    one.path,
                    f"{one.owner} {one.port} is inside {AUTO_PORT_MIN}-{AUTO_PORT_MAX}, where "
                    "Consul assigns sidecar ports automatically",
                    f"pick a port outside {AUTO_PORT_MIN}-{AUTO_PORT_MAX}",
                )
            )
    return problems
