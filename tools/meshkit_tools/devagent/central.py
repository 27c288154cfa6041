# SPDX-License-Identifier: MPL-2.0
"""Central service configuration: config entries merged into sidecar proxy registrations.

With `-enable-central-service-config` (Consul's `enable_central_service_config`), Consul 1.7
resolves, for every *sidecar* proxy (a `connect-proxy` with `Proxy.DestinationServiceID`):

- the `proxy-defaults` `global` Config, then the destination's `service-defaults` Protocol as
  `protocol` (so a service's protocol beats the global one);
- MeshGateway and Expose from `proxy-defaults`, overridden by `service-defaults`;
- for each `service`-type upstream that has a `service-defaults` entry, `{"protocol": ...}`
  (its own Protocol, else the global `protocol`); prepared-query upstreams get nothing;

and merges that *under* the registration (mergo.Merge without override: a key the registration
sets wins, a missing or null one is filled, nested maps merge key by key). Other services,
including a `connect-proxy` without a DestinationServiceID, are registered as they are. The
merged result is what `/v1/agent/service/:id`, the catalog and health return; the registration
as sent is kept so a later change to an entry can be merged again (recorded in
consul-1.7.14-edges e22-e28 and e34-e35).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from meshkit_tools.devagent.configentries import (
    GLOBAL,
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    ConfigEntries,
)


@dataclass(frozen=True)
class Resolved:
    """Consul's ServiceConfigResponse: what the entries say for one proxy."""

    proxy_config: dict[str, Any] | None = None
    mesh_gateway: dict[str, Any] = field(default_factory=dict)
    expose: dict[str, Any] = field(default_factory=dict)
    upstream_configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def is_sidecar(kind: str, proxy: dict[str, Any] | None) -> bool:
    """Only sidecar proxies go through Consul 1.7's service manager."""
    return kind == "connect-proxy" and bool((proxy or {}).get("DestinationServiceID"))


def _service_upstreams(proxy: dict[str, Any]) -> list[str]:
    return [
        str(up.get("DestinationName") or "")
        for up in proxy.get("Upstreams") or []
        if (up.get("DestinationType") or "service") == "service"
    ]


def resolve(entries: ConfigEntries, proxy: dict[str, Any]) -> Resolved:
    service = str(proxy.get("DestinationServiceName") or "")
    global_entry = entries.raw(PROXY_DEFAULTS, GLOBAL)
    service_entry = entries.raw(SERVICE_DEFAULTS, service)
    config: dict[str, Any] | None = None
    mesh_gateway: dict[str, Any] = {}
    expose: dict[str, Any] = {}
    global_protocol: Any = None
    if global_entry is not None:
        raw_config = global_entry.get("Config")
        config = copy.deepcopy(raw_config) if raw_config is not None else None
        mesh_gateway = dict(global_entry.get("MeshGateway") or {})
        expose = copy.deepcopy(global_entry.get("Expose") or {})
        global_protocol = (raw_config or {}).get("protocol")
    if service_entry is not None:
        svc_expose = service_entry.get("Expose") or {}
        if svc_expose.get("Checks"):
            expose["Checks"] = True
        if svc_expose.get("Paths"):
            expose["Paths"] = copy.deepcopy(svc_expose["Paths"])
        mode = (service_entry.get("MeshGateway") or {}).get("Mode")
        if mode:
            mesh_gateway["Mode"] = mode
        if service_entry.get("Protocol"):
            config = {**(config or {}), "protocol": service_entry["Protocol"]}
    upstream_configs: dict[str, dict[str, Any]] = {}
    for name in _service_upstreams(proxy):
        up_entry = entries.raw(SERVICE_DEFAULTS, name)
        if up_entry is None:
            continue  # Consul 1.7: no entry for the upstream, nothing to merge
        protocol = up_entry.get("Protocol") or global_protocol
        if protocol is not None:
            upstream_configs[name] = {"protocol": protocol}
    return Resolved(config, mesh_gateway, expose, upstream_configs)


def merge_map(registered: Any, defaults: Any) -> Any:
    """mergo.Merge(&registered, defaults) for JSON maps: fill, never override."""
    if not isinstance(defaults, dict):
        return registered
    if registered is not None and not isinstance(registered, dict):
        return registered
    out = dict(registered or {})
    for key, value in defaults.items():
        if value is None:
            continue
        mine = out.get(key)
        if mine is None:
            out[key] = copy.deepcopy(value)
        elif isinstance(mine, dict) and isinstance(value, dict):
            out[key] = merge_map(mine, value)
    return out


def merge(proxy: dict[str, Any], resolved: Resolved) -> dict[str, Any]:
    """The sidecar's Proxy block as Consul 1.7's service manager stores it."""
    out = copy.deepcopy(proxy)
    if resolved.proxy_config is not None:
        out["Config"] = merge_map(out.get("Config"), resolved.proxy_config)
    expose = dict(out.get("Expose") or {})
    for key in ("Checks", "Paths"):
        if not expose.get(key) and resolved.expose.get(key):
            expose[key] = copy.deepcopy(resolved.expose[key])
    if expose:
        out["Expose"] = expose
    mode = (out.get("MeshGateway") or {}).get("Mode") or resolved.mesh_gateway.get("Mode") or ""
    if mode:
        out["MeshGateway"] = {**(out.get("MeshGateway") or {}), "Mode": mode}
    upstreams = []
    for up in out.get("Upstreams") or []:
        up = dict(up)
        if (up.get("DestinationType") or "service") == "service":
            if not (up.get("MeshGateway") or {}).get("Mode") and mode:
                up["MeshGateway"] = {**(up.get("MeshGateway") or {}), "Mode": mode}
            defaults = resolved.upstream_configs.get(str(up.get("DestinationName") or ""))
            if defaults is not None:
                up["Config"] = merge_map(up.get("Config"), defaults)
        upstreams.append(up)
    if "Upstreams" in out:
        out["Upstreams"] = upstreams
    return out


class Resolver:
    """Bound to one agent's config entries; State calls it for each sidecar it stores."""

    def __init__(self, entries: ConfigEntries) -> None:
        self.entries = entries

    def __call__(self, kind: str, proxy: dict[str, Any] | None) -> dict[str, Any] | None:
        if proxy is None or not is_sidecar(kind, proxy):
            return proxy
        return merge(proxy, resolve(self.entries, proxy))
