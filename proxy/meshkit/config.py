# SPDX-License-Identifier: MPL-2.0
"""The proxy's runtime configuration: what `Proxy.apply` takes, whatever mode produced it.

Static mode builds it from the flags and a YAML file (static/file.py); Consul mode from the
proxy's registration (consul/registration.py, consul/configfile.py), which holds the same
`PublicListener` and `UpstreamListener` types. Both go through `check()`, so the safety
rules (loopback local service, loopback upstream binds) hold in both modes.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from meshkit.authz import Authorizer, StaticAuthorizer
from meshkit.resolver import SERVICE, Resolver, StaticResolver

DEFAULT_HANDSHAKE_TIMEOUT_MS = 10000
DEFAULT_LOCAL_CONNECT_TIMEOUT_MS = 1000
DEFAULT_CONNECT_TIMEOUT_MS = 10000
DEFAULT_DRAIN_TIMEOUT_MS = 15000


class ConfigError(ValueError):
    """One or more problems, each its own line naming the source and the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_hostport(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, or `port` alone when a default host is given."""
    text = text.strip()
    if default_host is not None and text.isdigit():
        host, port_text = default_host, text
    elif text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise ValueError(f"{text!r} is not [IPv6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} is not HOST:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be a number 0-65535")
    return host, int(port_text)


def parse_ms(value: object) -> float:
    """Milliseconds as int, float or numeric string (Consul's JSON floats must work too)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number of milliseconds")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number of milliseconds") from None
    else:
        raise ValueError(f"{value!r} is not a number of milliseconds")
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{value!r} must be a positive number of milliseconds")
    return number


@dataclass(frozen=True)
class PublicListener:
    bind_host: str
    bind_port: int
    local_host: str
    local_port: int
    local_connect_timeout_ms: float = DEFAULT_LOCAL_CONNECT_TIMEOUT_MS
    handshake_timeout_ms: float = DEFAULT_HANDSHAKE_TIMEOUT_MS
    protocol: str = "tcp"  # Config.protocol: a metrics label (the proxy forwards bytes)


# The resolver of an upstream read from a registration or a Consul-mode file: Consul mode
# replaces it with its watched `ConsulResolver` before the upstream reaches `Proxy.apply`.
NO_TARGETS = StaticResolver(())


@dataclass(frozen=True)
class UpstreamListener:
    """One upstream, in every mode: the local bind the app dials, the destination, its resolver."""

    name: str  # destination name
    resolver: Resolver = field(default=NO_TARGETS, compare=False)
    bind_host: str = "127.0.0.1"
    bind_port: int = 0
    dst_type: str = SERVICE  # "service" or "prepared_query"
    connect_timeout_ms: float = DEFAULT_CONNECT_TIMEOUT_MS
    allow_non_loopback: bool = False
    datacenter: str = ""
    protocol: str = "tcp"  # the upstream's Config.protocol: a metrics label

    @property
    def key(self) -> str:
        """Identity of the listener across reconfigurations (Consul's upstream identifier)."""
        dc = f"?dc={self.datacenter}" if self.datacenter else ""
        return f"{self.dst_type}:{self.name}{dc}"


@dataclass(frozen=True)
class ProxyConfig:
    service: str
    public: PublicListener | None = None
    upstreams: tuple[UpstreamListener, ...] = ()
    authorizer: Authorizer = field(default_factory=StaticAuthorizer, compare=False)
    admin: tuple[str, int] | None = None
    allow_non_loopback_service: bool = False
    drain_timeout_ms: float = DEFAULT_DRAIN_TIMEOUT_MS
    source: str = "config"  # where this came from, for messages

    def check(self) -> None:
        """Refuse unsafe or contradictory settings, one message per problem."""
        problems: list[str] = []
        where = self.source
        pub = self.public
        if pub is not None:
            if not is_loopback(pub.local_host) and not self.allow_non_loopback_service:
                problems.append(
                    f"{where}: local_service_address {pub.local_host}:{pub.local_port} is not a "
                    "loopback address. The proxy hands decrypted, already-authorized traffic to "
                    "the local service, so that service must only be reachable through the mesh "
                    "(bind it to 127.0.0.1 or ::1). Use -allow-non-loopback-service to override."
                )
            if pub.local_port == 0:
                problems.append(f"{where}: local_service_address needs a non-zero port")
        if self.admin is not None and not is_loopback(self.admin[0]):
            problems.append(
                f"{where}: admin bind {self.admin[0]} is not loopback; the admin listener "
                "exposes metrics and must stay on 127.0.0.1 or ::1"
            )
        seen: dict[str, str] = {}
        binds: dict[tuple[str, int], str] = {}
        for up in self.upstreams:
            if up.key in seen:
                problems.append(f"{where}: upstream {up.name!r} is defined twice")
            seen[up.key] = up.name
            if not is_loopback(up.bind_host) and not up.allow_non_loopback:
                problems.append(
                    f"{where}: upstream {up.name!r} binds {up.bind_host}, which is not loopback; "
                    "anyone who can reach it would borrow this service's identity. Set "
                    "allow_non_loopback: true on that upstream if you mean it."
                )
            if up.bind_port != 0:
                bind = (up.bind_host, up.bind_port)
                if bind in binds:
                    problems.append(
                        f"{where}: upstreams {binds[bind]!r} and {up.name!r} both bind "
                        f"{up.bind_host}:{up.bind_port}"
                    )
                binds[bind] = up.name
        if problems:
            raise ConfigError(problems)
