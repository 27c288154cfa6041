# SPDX-License-Identifier: MPL-2.0
"""Consul mode from a file: `meshkit-proxy -config FILE` where the file says `mode: consul`.

Flags cannot carry an upstream's datacenter or per-upstream timeouts; a file written by a
Nomad `template` block can. The shape is the static file's (docs/proxy.md) minus what Consul
supplies (tls, authorization, targets), and it parses into the same `Registration` the flag
mode builds, so everything after this point is shared. Unknown keys are errors naming the key
and the file, all collected before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshkit import bounded, fields
from meshkit.config import (
    DEFAULT_CONNECT_TIMEOUT_MS,
    DEFAULT_DRAIN_TIMEOUT_MS,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
    DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
    ConfigError,
)
from meshkit.consul.registration import Registration, UpstreamSpec
from meshkit.resolver import PREPARED_QUERY, SERVICE
from meshkit.static.file import PUBLIC_KEYS

TOP_KEYS = {
    "mode",
    "service",
    "public_listener",
    "upstreams",
    "admin",
    "drain_timeout_ms",
    "allow_non_loopback_service",
}
UPSTREAM_KEYS = {
    "destination_name",
    "destination_type",
    "datacenter",
    "local_bind_address",
    "local_bind_port",
    "connect_timeout_ms",
}
ADMIN_KEYS = {"bind"}


@dataclass(frozen=True, slots=True)
class ConsulFile:
    """What a Consul-mode file adds to the command line."""

    registration: Registration
    admin: tuple[str, int] | None
    drain_timeout_ms: float
    allow_non_loopback_service: bool
    source: str


def load(path_text: str) -> ConsulFile:
    """Parse and validate the whole file; ConfigError lists every problem."""
    path = Path(path_text)
    p = fields.Problems(str(path))
    try:
        raw = bounded.load_yaml(path)
    except bounded.FileError as exc:
        raise ConfigError([str(exc)]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    fields.check_keys(p, "", raw, TOP_KEYS)
    if raw.get("mode") != "consul":
        p.add("mode", f"must be consul in a Consul-mode file, got {raw.get('mode')!r}")
    service = fields.string(p, "service", raw.get("service"))
    if "service" not in raw:
        p.add("service", "missing: the service this proxy represents")

    pub = fields.section(p, raw, "public_listener", PUBLIC_KEYS)
    bind_host: str | None = None
    bind_port = 0
    local: tuple[str, int] | None = ("127.0.0.1", 0)
    if pub:
        bind_host = (
            fields.string(p, "public_listener.bind_address", pub.get("bind_address")) or "0.0.0.0"
        )
        port = fields.port(p, "public_listener.bind_port", pub.get("bind_port"))
        if "bind_port" not in pub:
            p.add("public_listener.bind_port", "missing")
        bind_port = port or 0
        local = fields.hostport(
            p, "public_listener.local_service_address", pub.get("local_service_address")
        )
        if "local_service_address" not in pub:
            p.add(
                "public_listener.local_service_address",
                "missing: HOST:PORT where the local app listens",
            )

    upstreams: list[UpstreamSpec] = []
    ups_raw = raw.get("upstreams")
    if ups_raw is not None and not isinstance(ups_raw, list):
        p.add("upstreams", "must be a list")
        ups_raw = []
    seen: set[str] = set()
    for i, item in enumerate(ups_raw or []):
        up = _upstream(p, f"upstreams[{i}]", item)
        if up is not None:
            if up.key in seen:
                p.add(f"upstreams[{i}]", f"{up.key} appears twice")
            seen.add(up.key)
            upstreams.append(up)

    admin_data = fields.section(p, raw, "admin", ADMIN_KEYS)
    admin = fields.hostport(p, "admin.bind", admin_data.get("bind"))
    drain = fields.millis(
        p, "drain_timeout_ms", raw.get("drain_timeout_ms"), DEFAULT_DRAIN_TIMEOUT_MS
    )
    allow_nl = fields.boolean(
        p, "allow_non_loopback_service", raw.get("allow_non_loopback_service")
    )
    local_connect = fields.millis(
        p,
        "public_listener.local_connect_timeout_ms",
        pub.get("local_connect_timeout_ms"),
        DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
    )
    handshake = fields.millis(
        p,
        "public_listener.handshake_timeout_ms",
        pub.get("handshake_timeout_ms"),
        DEFAULT_HANDSHAKE_TIMEOUT_MS,
    )
    if p.items:
        raise ConfigError(p.items)
    assert service is not None and local is not None
    reg = Registration(
        proxy_id="",
        service=service,
        service_id=service,
        bind_host=bind_host,
        bind_port=bind_port,
        local_host=local[0],
        local_port=local[1],
        local_connect_timeout_ms=local_connect,
        handshake_timeout_ms=handshake,
        upstreams=tuple(upstreams),
    )
    return ConsulFile(reg, admin, drain, allow_nl, str(path))


def _upstream(p: fields.Problems, where: str, item: Any) -> UpstreamSpec | None:
    if not isinstance(item, dict):
        p.add(where, "must be a mapping")
        return None
    before = len(p.items)
    fields.check_keys(p, where, item, UPSTREAM_KEYS)
    name = fields.string(p, f"{where}.destination_name", item.get("destination_name"))
    if "destination_name" not in item:
        p.add(f"{where}.destination_name", "missing")
    dst_type = item.get("destination_type", SERVICE)
    if dst_type not in (SERVICE, PREPARED_QUERY):
        p.add(f"{where}.destination_type", f"must be service or prepared_query, got {dst_type!r}")
    dc = fields.string(p, f"{where}.datacenter", item.get("datacenter")) or ""
    host = (
        fields.string(p, f"{where}.local_bind_address", item.get("local_bind_address"))
        or "127.0.0.1"
    )
    port = fields.port(p, f"{where}.local_bind_port", item.get("local_bind_port"))
    if "local_bind_port" not in item:
        p.add(f"{where}.local_bind_port", "missing")
    elif port == 0:
        p.add(f"{where}.local_bind_port", "must not be 0")
    timeout = fields.millis(
        p, f"{where}.connect_timeout_ms", item.get("connect_timeout_ms"), DEFAULT_CONNECT_TIMEOUT_MS
    )
    if len(p.items) != before or name is None or port is None:
        return None
    return UpstreamSpec(
        dst_type=dst_type,
        name=name,
        datacenter=dc,
        bind_host=host,
        bind_port=port,
        connect_timeout_ms=timeout,
    )
