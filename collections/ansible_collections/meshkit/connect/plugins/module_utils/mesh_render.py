# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Render mesh model objects into the shapes Consul accepts.

The agent API wants CamelCase and the agent's config files want snake_case (Consul 1.7 refuses
CamelCase in a config file):
mixing the two is the classic bug, so both forms are produced here from one walk over the
model and nowhere else. Output is deterministic (fixed key order, sorted JSON), so a re-render
of an unchanged model is byte-for-byte identical and config-file templates never flap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    Check,
    Intention,
    PreparedQuery,
    Service,
    Sidecar,
    Upstream,
    as_plain,
)

CHECKS_META_KEY = "meshkit-checks"
"""Meta key holding a fingerprint of the service's check definitions.

Consul's ``/v1/agent/checks`` does not return check definitions (``Definition`` is empty), so
without this a changed interval would go unseen and an unchanged one could not be proven."""

# (model attribute, API key, config-file key)
_CHECK_FIELDS = (
    ("name", "Name", "name"),
    ("id", "CheckID", "id"),
    ("tcp", "TCP", "tcp"),
    ("http", "HTTP", "http"),
    ("method", "Method", "method"),
    ("header", "Header", "header"),
    ("tls_skip_verify", "TLSSkipVerify", "tls_skip_verify"),
    ("ttl", "TTL", "ttl"),
    ("args", "Args", "args"),
    ("alias_service", "AliasService", "alias_service"),
    ("interval", "Interval", "interval"),
    ("timeout", "Timeout", "timeout"),
    ("deregister_critical_service_after", "DeregisterCriticalServiceAfter",
     "deregister_critical_service_after"),
    ("notes", "Notes", "notes"),
    ("status", "Status", "status"),
)  # fmt: skip


def _check(check: Check, api: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, api_key, file_key in _CHECK_FIELDS:
        value = getattr(check, attr)
        if value:  # unset fields are left out: Consul fills its own defaults
            out[api_key if api else file_key] = as_plain(value)
    return out


def checks_fingerprint(checks: Iterable[Check]) -> str:
    """A short stable hash of the check definitions (see ``CHECKS_META_KEY``)."""
    body = json.dumps([_check(c, True) for c in checks], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def service_meta(service: Service) -> dict[str, str]:
    """The registered Meta: the user's, plus the checks fingerprint when there are checks."""
    meta = dict(service.meta)
    if service.checks:
        meta[CHECKS_META_KEY] = checks_fingerprint(service.checks)
    return meta


def _upstream(up: Upstream, api: bool) -> dict[str, Any]:
    k = _keys(api)
    out: dict[str, Any] = {
        k("destination_type"): up.destination_type,
        k("destination_name"): up.destination_name,
    }
    if up.datacenter:
        out[k("datacenter")] = up.datacenter
    out[k("local_bind_address")] = up.local_bind_address
    out[k("local_bind_port")] = up.local_bind_port
    if up.config:
        out[k("config")] = as_plain(up.config)
    return out


def _proxy(service: Service, side: Sidecar, api: bool) -> dict[str, Any]:
    k = _keys(api)
    proxy: dict[str, Any] = {
        k("local_service_address"): side.local_service_address,
        k("local_service_port"): side.local_service_port,
    }
    if side.config:
        proxy[k("config")] = as_plain(side.config)
    proxy[k("upstreams")] = [_upstream(u, api) for u in side.upstreams]
    return proxy


def _service(service: Service, api: bool) -> dict[str, Any]:
    k = _keys(api)
    body: dict[str, Any] = {k("id"): service.id, k("name"): service.name}
    if service.port is not None:
        body[k("port")] = service.port
    body[k("address")] = service.address
    body[k("tags")] = list(service.tags)
    body[k("meta")] = service_meta(service)
    if service.checks:
        body[k("checks")] = [_check(c, api) for c in service.checks]
    side = service.sidecar
    if side is not None:
        sidecar: dict[str, Any] = {}
        if side.port is not None:
            sidecar[k("port")] = side.port
        if side.address:
            sidecar[k("address")] = side.address
        sidecar[k("proxy")] = _proxy(service, side, api)
        checks = sidecar_checks(service)
        if checks:
            sidecar[k("checks")] = [_check(c, api) for c in checks]
        body[k("connect")] = {k("sidecar_service"): sidecar}
    elif service.native:
        body[k("connect")] = {k("native"): True}
    return body


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _listener_checks(service: Service, address: str, port: int) -> tuple[Check, ...]:
    """Consul's two sidecar checks (names, 10 s TCP, alias), dialling ``address:port``."""
    return (
        Check(name="Connect Sidecar Listening", tcp=_host_port(address, port), interval="10s"),
        Check(name=f"Connect Sidecar Aliasing {service.id}", alias_service=service.id),
    )


def sidecar_checks(service: Service) -> tuple[Check, ...]:
    """Explicit sidecar checks, only where Consul 1.7's defaults would dial the wrong address.

    Consul 1.7 (agent/sidecar_service.go, sidecarDefaultChecks) dials
    ``Proxy.LocalServiceAddress:<sidecar port>``, not the sidecar's ``Address``. meshkit-proxy
    listens only on the registration's address (the app's loopback stays private), so a
    sidecar on a host address would never pass there. Then the same two checks are rendered
    with the listener's address; elsewhere Consul's defaults are left alone (no change for
    loopback meshes). The model requires a fixed port in that case (mesh_model).
    """
    side = service.sidecar
    if side is None or side.port is None:
        return ()
    address = side.address or service.address
    if not address or address == side.local_service_address:
        return ()  # "" binds every address; equal: the default check dials the listener
    return _listener_checks(service, address, side.port)


_API_KEYS = {
    "id": "ID",
    "name": "Name",
    "port": "Port",
    "address": "Address",
    "tags": "Tags",
    "meta": "Meta",
    "checks": "Checks",
    "connect": "Connect",
    "sidecar_service": "SidecarService",
    "native": "Native",
    "proxy": "Proxy",
    "local_service_address": "LocalServiceAddress",
    "local_service_port": "LocalServicePort",
    "config": "Config",
    "upstreams": "Upstreams",
    "destination_type": "DestinationType",
    "destination_name": "DestinationName",
    "datacenter": "Datacenter",
    "local_bind_address": "LocalBindAddress",
    "local_bind_port": "LocalBindPort",
}


def _keys(api: bool) -> Any:
    if api:
        return _API_KEYS.__getitem__
    return lambda key: key


def agent_registration(service: Service) -> dict[str, Any]:
    """The CamelCase body for ``PUT /v1/agent/service/register?replace-existing-checks``."""
    return _service(service, api=True)


def agent_parent_registration(service: Service) -> dict[str, Any]:
    """The service's API body without its ``Connect`` block (for a standalone proxy)."""
    body = agent_registration(service)
    body.pop("Connect", None)
    return body


def agent_proxy_registration(service: Service) -> dict[str, Any]:
    """The sidecar as a standalone ``connect-proxy`` registration (CamelCase API body).

    Registers what ``sidecar_service`` would have made, with the same ID and name, for proxies
    whose lifecycle is managed apart from the service's. Consul assigns no port and adds no
    default checks to such a registration, so the port must be fixed and meshkit adds the two
    sidecar checks itself, dialling the listener's own address.
    """
    side = service.sidecar
    if side is None or side.port is None:
        raise ValueError(f"service {service.name!r}: a standalone proxy needs a fixed sidecar port")
    address = side.address or service.address
    dialled = address or side.local_service_address or "127.0.0.1"  # "" binds every address
    proxy = _proxy(service, side, api=True)
    return {
        "Kind": "connect-proxy",
        "ID": service.sidecar_id,
        "Name": service.sidecar_name,
        "Port": side.port,
        "Address": address,
        "Tags": list(service.tags),
        "Meta": service_meta(service),
        "Proxy": {
            "DestinationServiceName": service.name,
            "DestinationServiceID": service.id,
            **proxy,
        },
        "Checks": [_check(c, True) for c in _listener_checks(service, dialled, side.port)],
    }


def agent_config_service(service: Service) -> dict[str, Any]:
    """One service in the snake_case form of an agent config file."""
    return _service(service, api=False)


def agent_config_file(services: Iterable[Service]) -> str:
    """A whole ``/etc/consul.d/*.json`` file: ``{"services": [...]}``, snake_case, sorted."""
    doc = {"services": [agent_config_service(s) for s in services]}
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def prepared_query_body(q: PreparedQuery) -> dict[str, Any]:
    """The body for ``POST /v1/query`` and ``PUT /v1/query/<id>``."""
    return {
        "Name": q.name,
        "Service": {
            "Service": q.service,
            "Failover": {
                "NearestN": q.failover_nearest_n,
                "Datacenters": list(q.failover_datacenters),
            },
            "OnlyPassing": q.only_passing,
            "Near": q.near,
            "Tags": list(q.tags),
            "Connect": q.connect,
        },
    }


def intention_body(i: Intention) -> dict[str, Any]:
    """The body for the legacy ``/v1/connect/intentions`` API."""
    return {
        "SourceName": i.source,
        "DestinationName": i.destination,
        "SourceType": "consul",
        "Action": i.action,
        "Description": i.description,
    }


def intention_source(i: Intention) -> dict[str, Any]:
    """One entry of ``Sources`` in a ``service-intentions`` config entry."""
    return {
        "Name": i.source,
        "Action": i.action,
        "Type": "consul",
        "Description": i.description,
    }


def intentions_config_entries(intentions: Iterable[Intention]) -> list[dict[str, Any]]:
    """``service-intentions`` config entries, one per destination, sorted by name and source."""
    by_dest: dict[str, list[Intention]] = {}
    for i in intentions:
        by_dest.setdefault(i.destination, []).append(i)
    return [
        {
            "Kind": "service-intentions",
            "Name": dest,
            "Sources": [intention_source(i) for i in sorted(by_dest[dest], key=_source_order)],
        }
        for dest in sorted(by_dest)
    ]


def _source_order(i: Intention) -> tuple[bool, str]:
    return (i.source == "*", i.source)


def dumps(value: Mapping[str, Any] | list[Any]) -> str:
    """Canonical JSON used wherever rendered output is compared or printed."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
