# SPDX-License-Identifier: MPL-2.0
"""Services and checks of the one node, and the JSON shapes Consul serves them in.

The agent's local state and the catalog are the same thing here (one node, no
anti-entropy lag), but the views differ exactly as Consul's do: `/v1/agent/*` omits empty
fields the catalog spells out (`Datacenter: ""`, `Config: null` in upstreams, `Meta: null`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from meshkit_tools.devagent.decode import format_duration

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
_STATUS_RANK = {PASSING: 0, WARNING: 1, CRITICAL: 2}
SERF_CHECK_ID = "serfHealth"


class BadRequest(ValueError):
    """A 400 with Consul's text."""


class NotFound(LookupError):
    """A 404 with Consul's text."""


@dataclass
class Service:
    id: str
    name: str
    kind: str = ""
    tags: list[str] = field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    enable_tag_override: bool = False
    proxy: dict[str, Any] | None = None
    native: bool = False
    sidecar_parent: str = ""  # LocallyRegisteredAsSidecar: the parent's ID
    source: str = "api"  # "api" or "config" (config-dir services are replaced on reload)
    token: str = ""
    create_index: int = 0
    modify_index: int = 0
    # The Proxy block as registered, when `proxy` holds it merged with central config.
    registered_proxy: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Service:
        return cls(**row)

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def same_definition(self, other: Service) -> bool:
        mine, theirs = self.row(), other.row()
        for k in ("create_index", "modify_index"):
            mine.pop(k)
            theirs.pop(k)
        return mine == theirs

    @property
    def destination(self) -> str:
        """The service a proxy (or a native service) answers for."""
        if self.kind == "connect-proxy" and self.proxy:
            return str(self.proxy.get("DestinationServiceName", ""))
        return self.name if self.native else ""


@dataclass
class Check:
    check_id: str
    name: str
    service_id: str = ""
    service_name: str = ""
    type: str = ""
    status: str = CRITICAL
    output: str = ""
    notes: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    source: str = "api"
    create_index: int = 0
    modify_index: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Check:
        return cls(**row)

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def worst(statuses: list[str]) -> str:
    return max(statuses, key=lambda s: _STATUS_RANK.get(s, 2), default=PASSING)


# -- rendering ----------------------------------------------------------------------------------


def _auto_tagged(svc: Service) -> dict[str, Any]:
    """Consul 1.7 adds lan/wan tagged addresses for an IP service address."""
    out: dict[str, Any] = {}
    try:
        ip = ipaddress.ip_address(svc.address) if svc.address else None
    except ValueError:
        ip = None
    if ip is not None:
        fam = "ipv4" if ip.version == 4 else "ipv6"
        out[f"lan_{fam}"] = {"Address": svc.address, "Port": svc.port}
        out[f"wan_{fam}"] = {"Address": svc.address, "Port": svc.port}
    for k, v in svc.tagged_addresses.items():
        out[k] = {"Address": v.get("Address", ""), "Port": v.get("Port", 0)}
    return out


def _mesh_gateway(value: Any) -> dict[str, Any]:
    mode = (value or {}).get("Mode", "")
    return {"Mode": mode} if mode else {}


def _expose(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if value and value.get("Checks"):
        out["Checks"] = True
    if value and value.get("Paths"):
        out["Paths"] = value["Paths"]
    return out


def render_upstream(up: dict[str, Any], *, catalog: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"DestinationType": up.get("DestinationType") or "service"}
    if up.get("DestinationNamespace"):
        out["DestinationNamespace"] = up["DestinationNamespace"]
    out["DestinationName"] = up.get("DestinationName", "")
    if catalog or up.get("Datacenter"):
        out["Datacenter"] = up.get("Datacenter", "")
    for key in ("DestinationPartition", "DestinationPeer", "LocalBindAddress"):
        if up.get(key):
            out[key] = up[key]
    if catalog or up.get("LocalBindPort"):
        out["LocalBindPort"] = up.get("LocalBindPort", 0)
    for key in ("LocalBindSocketPath", "LocalBindSocketMode"):
        if up.get(key):
            out[key] = up[key]
    if catalog or up.get("Config"):
        out["Config"] = up.get("Config") or None
    out["MeshGateway"] = _mesh_gateway(up.get("MeshGateway"))
    return out


def render_proxy(proxy: dict[str, Any] | None, *, catalog: bool) -> dict[str, Any]:
    p = proxy or {}
    out: dict[str, Any] = {}
    for key in ("DestinationServiceName", "DestinationServiceID", "LocalServiceAddress"):
        if p.get(key):
            out[key] = p[key]
    if p.get("LocalServicePort"):
        out["LocalServicePort"] = p["LocalServicePort"]
    for key in ("LocalServiceSocketPath", "Mode", "TransparentProxy", "AccessLogs"):
        if p.get(key):
            out[key] = p[key]
    if p.get("Config"):
        out["Config"] = p["Config"]
    if p.get("Upstreams"):
        out["Upstreams"] = [render_upstream(u, catalog=catalog) for u in p["Upstreams"]]
    out["MeshGateway"] = _mesh_gateway(p.get("MeshGateway"))
    out["Expose"] = _expose(p.get("Expose"))
    return out


def agent_service(svc: Service, *, with_hash: bool = False) -> dict[str, Any]:
    """The `AgentService` shape of `/v1/agent/services` and `/v1/agent/service/:id`."""
    out: dict[str, Any] = {}
    if svc.kind:
        out["Kind"] = svc.kind
    out.update(
        ID=svc.id,
        Service=svc.name,
        Tags=list(svc.tags),
        Meta=dict(svc.meta),
        Port=svc.port,
        Address=svc.address,
    )
    tagged = _auto_tagged(svc)
    if tagged:
        out["TaggedAddresses"] = tagged
    out["Weights"] = dict(svc.weights)
    out["EnableTagOverride"] = svc.enable_tag_override
    if svc.kind == "connect-proxy":
        out["Proxy"] = render_proxy(svc.proxy, catalog=False)
    if svc.native:
        out["Connect"] = {"Native": True}
    if with_hash:
        out = {**_before_proxy(out), "ContentHash": content_hash(out), **_from_proxy(out)}
    return out


def _before_proxy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("Proxy", "Connect")}


def _from_proxy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k in ("Proxy", "Connect")}


def content_hash(body: dict[str, Any]) -> str:
    """An opaque 16-hex digest of the response without the hash, as Consul's ContentHash."""
    raw = json.dumps(body, sort_keys=True).encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def node_service(svc: Service, *, query: bool = False) -> dict[str, Any]:
    """The `NodeService` shape inside health entries and query results.

    Consul 1.7's prepared-query path returns empty tags as `null` where health returns `[]`.
    """
    out: dict[str, Any] = {}
    if svc.kind:
        out["Kind"] = svc.kind
    tags: list[str] | None = list(svc.tags) if svc.tags or not query else None
    out.update(ID=svc.id, Service=svc.name, Tags=tags, Address=svc.address)
    tagged = _auto_tagged(svc)
    if tagged:
        out["TaggedAddresses"] = tagged
    out.update(
        Meta=dict(svc.meta) or None,
        Port=svc.port,
        Weights=dict(svc.weights),
        EnableTagOverride=svc.enable_tag_override,
        Proxy=render_proxy(svc.proxy, catalog=True),
        Connect={"Native": True} if svc.native else {},
        CreateIndex=svc.create_index,
        ModifyIndex=svc.modify_index,
    )
    return out


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    address: str
    datacenter: str

    def render(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": self.tagged(),
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    def tagged(self) -> dict[str, str]:
        a = self.address
        return {"lan": a, "lan_ipv4": a, "wan": a, "wan_ipv4": a}


def catalog_service(node: Node, svc: Service) -> dict[str, Any]:
    """The flat `CatalogService` shape of `/v1/catalog/service/:s` and `/v1/catalog/connect/:s`."""
    out: dict[str, Any] = {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": node.tagged(),
        "NodeMeta": {"consul-network-segment": ""},
        "ServiceKind": svc.kind,
        "ServiceID": svc.id,
        "ServiceName": svc.name,
        "ServiceTags": list(svc.tags),
        "ServiceAddress": svc.address,
    }
    tagged = _auto_tagged(svc)
    if tagged:
        out["ServiceTaggedAddresses"] = tagged
    out.update(
        ServiceWeights=dict(svc.weights),
        ServiceMeta=dict(svc.meta),
        ServicePort=svc.port,
        ServiceEnableTagOverride=svc.enable_tag_override,
        ServiceProxy=render_proxy(svc.proxy, catalog=True),
        ServiceConnect={"Native": True} if svc.native else {},
        CreateIndex=svc.create_index,
        ModifyIndex=svc.modify_index,
    )
    return out


def render_check(
    chk: Check,
    node_name: str,
    tags: list[str],
    *,
    agent: bool = False,
    full_definition: bool = False,
    query: bool = False,
) -> dict[str, Any]:
    service_tags: list[str] | None = list(tags)
    if full_definition or (query and not tags):
        service_tags = None
    return {
        "Node": node_name,
        "CheckID": chk.check_id,
        "Name": chk.name,
        "Status": chk.status,
        "Notes": chk.notes,
        "Output": chk.output,
        "ServiceID": chk.service_id,
        "ServiceName": chk.service_name,
        "ServiceTags": service_tags,
        "Type": chk.type if not full_definition else "",
        "Definition": check_definition(chk) if full_definition else {},
        "CreateIndex": 0 if agent else chk.create_index,
        "ModifyIndex": 0 if agent else chk.modify_index,
    }


def check_definition(chk: Check) -> dict[str, Any]:
    d = chk.definition
    return {
        "Interval": format_duration(d.get("Interval") or 0),
        "Timeout": format_duration(d.get("Timeout") or 0),
        "DeregisterCriticalServiceAfter": format_duration(
            d.get("DeregisterCriticalServiceAfter") or 0
        ),
        "HTTP": d.get("HTTP", ""),
        "Header": d.get("Header"),
        "Method": d.get("Method", ""),
        "Body": d.get("Body", ""),
        "TLSSkipVerify": bool(d.get("TLSSkipVerify", False)),
        "TCP": d.get("TCP", ""),
    }


def serf_check(node_name: str) -> Check:
    return Check(
        check_id=SERF_CHECK_ID,
        name="Serf Health Status",
        status=PASSING,
        output="Agent alive and reachable",
        create_index=1,
        modify_index=1,
    )
