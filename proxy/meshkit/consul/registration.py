# SPDX-License-Identifier: MPL-2.0
"""The proxy's own registration (`GET /v1/agent/service/<id>`) parsed into typed settings.

This is where agent mode decides what to listen on. It follows `consul connect proxy` except
where the built-in proxy is wrong: `Config.bind_address` /
`Config.bind_port` win over the service Address/Port (Nomad sets them; consul#10114), and
numeric options accept int, float or string (JSON numbers arrive as floats; consul#11603).
Consul merges `proxy-defaults` Config and `service-defaults` Protocol into what the agent
returns (`enable_central_service_config`), so the proxy reads one merged map. Keys it does not
support are collected in `Registration.unsupported` (never fatal: Consul merges in the
central `proxy-defaults` keys, Nomad adds its own such as `bind_address`, and other proxies of
the mesh may use them); `config_keys.py` warns about each once, naming its source.

The result holds the same `PublicListener` and `UpstreamListener` the runtime applies, so Consul
mode passes them on instead of copying them field by field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshkit import fields
from meshkit.config import (
    DEFAULT_CONNECT_TIMEOUT_MS,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
    DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
    PublicListener,
    UpstreamListener,
    parse_hostport,
)
from meshkit.consul.client import ConsulClient
from meshkit.resolver import PREPARED_QUERY, SERVICE

if TYPE_CHECKING:
    from meshkit.flags import CommandLine

log = logging.getLogger("meshkit.consul.registration")

# The `Config` keys meshkit-proxy applies (docs/consul-mode.md, "Central configuration").
PROXY_CONFIG_KEYS = frozenset(
    {
        "bind_address",
        "bind_port",
        "local_service_address",
        "local_connect_timeout_ms",
        "handshake_timeout_ms",
        "protocol",
    }
)
UPSTREAM_CONFIG_KEYS = frozenset({"connect_timeout_ms", "protocol"})
PROTOCOLS = ("tcp", "http", "http2", "grpc")
NOT_SUPPORTED = "not supported by meshkit-proxy"


class AgentConfigError(ValueError):
    """A registration the proxy cannot run from; the message names the field and the fix."""


@dataclass(frozen=True, slots=True)
class Registration:
    """Everything the proxy takes from its registration (or from flags or a Consul-mode file)."""

    proxy_id: str
    service: str  # Proxy.DestinationServiceName: our identity
    service_id: str
    public: PublicListener | None  # None: no public listener (port 0)
    # Resolvers are `config.NO_TARGETS` here; Consul mode gives each its watched resolver.
    upstreams: tuple[UpstreamListener, ...] = ()
    # (where, key, why) of every Config key not applied, e.g.
    # ("Proxy.Config", "envoy_stats_tags", "not supported by meshkit-proxy")
    unsupported: tuple[tuple[str, str, str], ...] = ()
    config: dict[str, Any] = field(default_factory=dict, compare=False)  # merged Proxy.Config


def _get(obj: Any, key: str) -> Any:
    """Consul returns CamelCase; accept any letter case as Go's decoder would."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    lower = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == lower:
            return v
    return None


def _port(source: str, where: str, value: Any) -> int:
    """`fields.port`, after JSON's leniency: 8080.0 and "8080" are 8080 to Consul's decoder."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    p = fields.Problems(source)
    found = fields.port(p, where, value)
    if found is None:
        raise AgentConfigError(p.items[0] if p.items else f"{source}: {where}: missing")
    return found


def _ms(source: str, where: str, value: Any, default: float) -> float:
    p = fields.Problems(source)
    found = fields.millis(p, where, value, default)
    if p.items:
        raise AgentConfigError(p.items[0])
    return found


def parse_registration(body: Any, proxy_id: str) -> Registration:
    """Validate once, at the boundary; raise AgentConfigError naming the field."""
    where = f"registration {proxy_id!r}"
    if not isinstance(body, dict):
        raise AgentConfigError(f"{where}: expected a JSON object from /v1/agent/service")
    kind = _get(body, "Kind") or ""
    if kind != "connect-proxy":
        raise AgentConfigError(
            f"{where} has Kind {kind!r}, not 'connect-proxy'; give -proxy-id the ID of the "
            "sidecar proxy (or use -sidecar-for with the application's service ID)"
        )
    proxy = _get(body, "Proxy")
    if not isinstance(proxy, dict):
        raise AgentConfigError(f"{where}: no Proxy block")
    service = _get(proxy, "DestinationServiceName") or ""
    if not isinstance(service, str) or not service or service == "*":
        raise AgentConfigError(f"{where}: Proxy.DestinationServiceName is missing or '*'")
    config = _get(proxy, "Config") or {}
    if not isinstance(config, dict):
        raise AgentConfigError(f"{where}: Proxy.Config is not an object")

    port = _port(where, "Port", _get(body, "Port") or 0)
    bind_port = port
    if config.get("bind_port") is not None:
        bind_port = _port(where, "Proxy.Config.bind_port", config["bind_port"])
    address = _get(body, "Address") or ""
    bind_host: str | None = config.get("bind_address") or address or "0.0.0.0"
    if not isinstance(bind_host, str):
        raise AgentConfigError(f"{where}: Proxy.Config.bind_address must be a string")
    if bind_port == 0:
        bind_host = None

    local_host = _get(proxy, "LocalServiceAddress") or "127.0.0.1"
    local_port = _port(where, "Proxy.LocalServicePort", _get(proxy, "LocalServicePort") or 0)
    if config.get("local_service_address") is not None:
        local_host, local_port = _local_address(
            config["local_service_address"],
            local_port,
            f"{where}: Proxy.Config.local_service_address",
        )
    unsupported = [
        ("Proxy.Config", str(k), NOT_SUPPORTED) for k in config if k not in PROXY_CONFIG_KEYS
    ]
    if bind_host is not None and local_port == 0:
        raise AgentConfigError(
            f"{where}: Proxy.LocalServicePort is not set; register the proxy with the port "
            "of the local application"
        )

    upstreams: list[UpstreamListener] = []
    for i, raw in enumerate(_get(proxy, "Upstreams") or []):
        up_field = f"Proxy.Upstreams[{i}]"
        up_where = f"{where}: {up_field}"
        dst_type = _get(raw, "DestinationType") or SERVICE
        name = _get(raw, "DestinationName") or ""
        if dst_type not in (SERVICE, PREPARED_QUERY):
            raise AgentConfigError(f"{up_where}: unknown DestinationType {dst_type!r}")
        if not name:
            raise AgentConfigError(f"{up_where}: DestinationName is missing")
        if _get(raw, "LocalBindSocketPath"):
            log.error("%s: LocalBindSocketPath is not supported; upstream skipped", up_where)
            continue
        up_config = _get(raw, "Config") or {}
        if isinstance(up_config, dict):
            unsupported += [
                (f"Proxy.Upstreams[{i}].Config ({name})", str(k), NOT_SUPPORTED)
                for k in up_config
                if k not in UPSTREAM_CONFIG_KEYS
            ]
        up_port = _port(where, f"{up_field}.LocalBindPort", _get(raw, "LocalBindPort") or 0)
        upstreams.append(
            UpstreamListener(
                dst_type=dst_type,
                name=name,
                datacenter=_get(raw, "Datacenter") or "",
                bind_host=_get(raw, "LocalBindAddress") or "127.0.0.1",
                bind_port=up_port,
                connect_timeout_ms=_ms(
                    where,
                    f"{up_field}.Config.connect_timeout_ms",
                    up_config.get("connect_timeout_ms") if isinstance(up_config, dict) else None,
                    DEFAULT_CONNECT_TIMEOUT_MS,
                ),
                protocol=_protocol(up_config, f"Proxy.Upstreams[{i}].Config ({name})", unsupported),
            )
        )
    # Checked (and a bad protocol reported) even when there is no public listener.
    local_connect_timeout_ms = _ms(
        where,
        "Proxy.Config.local_connect_timeout_ms",
        config.get("local_connect_timeout_ms"),
        DEFAULT_LOCAL_CONNECT_TIMEOUT_MS,
    )
    handshake_timeout_ms = _ms(
        where,
        "Proxy.Config.handshake_timeout_ms",
        config.get("handshake_timeout_ms"),
        DEFAULT_HANDSHAKE_TIMEOUT_MS,
    )
    protocol = _protocol(config, "Proxy.Config", unsupported)
    public = None
    if bind_host is not None:
        public = PublicListener(
            bind_host=bind_host,
            bind_port=bind_port,
            local_host=local_host,
            local_port=local_port,
            local_connect_timeout_ms=local_connect_timeout_ms,
            handshake_timeout_ms=handshake_timeout_ms,
            protocol=protocol,
        )
    return Registration(
        proxy_id=_get(body, "ID") or proxy_id,
        service=service,
        service_id=_get(proxy, "DestinationServiceID") or "",
        public=public,
        upstreams=tuple(upstreams),
        unsupported=tuple(unsupported),
        config=dict(config),
    )


def _protocol(config: Any, where: str, unsupported: list[tuple[str, str, str]]) -> str:
    """`Config.protocol` (Consul's default: tcp). Only a label here: the proxy stays L4.

    Consul 1.7 stores any protocol string in service-defaults unchecked, so an unknown one must not
    stop the proxy: it is reported like an unsupported key and the label stays tcp.
    """
    value = config.get("protocol") if isinstance(config, dict) else None
    if value is None or value == "":
        return "tcp"
    if not isinstance(value, str) or value.lower() not in PROTOCOLS:
        why = f"value {str(value)[:40]!r} is not one of {', '.join(PROTOCOLS)}; tcp assumed"
        unsupported.append((where, "protocol", why))
        return "tcp"
    return value.lower()


def _local_address(value: Any, default_port: int, where: str) -> tuple[str, int]:
    """`local_service_address` as `consul connect proxy` reads it: HOST:PORT, or a HOST alone."""
    if not isinstance(value, str) or not value.strip():
        raise AgentConfigError(f"{where}: {value!r} is not HOST:PORT")
    text = value.strip()
    try:
        return parse_hostport(text)
    except ValueError:
        if ":" in text and not text.startswith("["):
            raise AgentConfigError(f"{where}: {value!r} is not HOST:PORT") from None
        return text.strip("[]"), default_port


def registration_from_flags(cmd: CommandLine) -> Registration:
    """Flag mode (`-service`, `-listen`, `-service-addr`, `-upstream`): the same shape."""
    assert cmd.service is not None
    public = None
    if cmd.listen is not None and cmd.service_addr is not None:
        public = PublicListener(
            bind_host=cmd.listen[0],
            bind_port=cmd.listen[1],
            local_host=cmd.service_addr[0],
            local_port=cmd.service_addr[1],
        )
    return Registration(
        proxy_id="",
        service=cmd.service,
        service_id=cmd.service,
        public=public,
        upstreams=tuple(
            UpstreamListener(name=u.name, dst_type=u.dst_type, bind_host=u.host, bind_port=u.port)
            for u in cmd.upstreams
        ),
    )


def pick_sidecar(services: Any, parent_id: str) -> str:
    """`-sidecar-for`: the one connect-proxy whose DestinationServiceID is the parent's ID.

    Compared case-insensitively, with Consul's messages for none and for several.
    """
    if not isinstance(services, dict):
        raise AgentConfigError("unexpected /v1/agent/services response (not an object)")
    wanted = parent_id.lower()
    found = sorted(
        sid
        for sid, svc in services.items()
        if _get(svc, "Kind") == "connect-proxy"
        and str(_get(_get(svc, "Proxy"), "DestinationServiceID") or "").lower() == wanted
    )
    if not found:
        raise AgentConfigError(f"No sidecar proxy registered for {parent_id}")
    if len(found) > 1:
        raise AgentConfigError(
            f"More than one sidecar proxy registered for {parent_id}.\n"
            "    Start proxy with -proxy-id and one of the following IDs: " + ", ".join(found)
        )
    return str(found[0])


async def lookup_sidecar(client: ConsulClient, parent_id: str) -> str:
    resp = await client.get("/v1/agent/services")
    return pick_sidecar(resp.body, parent_id)
