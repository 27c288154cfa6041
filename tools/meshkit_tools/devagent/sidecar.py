# SPDX-License-Identifier: MPL-2.0
"""`connect.sidecar_service` expansion, with every default Consul fills."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from meshkit_tools.devagent.catalog import BadRequest, Service

SIDECAR_SUFFIX = "-sidecar-proxy"


def sidecar_id(parent_id: str) -> str:
    return parent_id + SIDECAR_SUFFIX


def expand(
    parent: Service,
    spec: dict[str, Any],
    request_token: str,
    others: Iterable[Service],
    port_range: tuple[int, int],
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The sidecar's service definition (canonical keys) and its checks (None = defaults).

    Raises BadRequest with Consul's `Invalid SidecarService: ...` wording.
    """
    spec = copy.deepcopy(spec)
    if spec.get("ID"):
        raise BadRequest(
            "Invalid SidecarService: A SidecarService cannot specify an ID as this is managed "
            "by the agent"
        )
    connect = spec.pop("Connect", None) or {}
    if connect.get("SidecarService") is not None:
        raise BadRequest(
            "Invalid SidecarService: A SidecarService cannot have a nested SidecarService"
        )
    if connect.get("Native"):
        raise BadRequest("Invalid SidecarService: A SidecarService cannot have Connect.Native set")
    sid = sidecar_id(parent.id)
    out: dict[str, Any] = dict(spec)
    out["ID"] = sid
    if not spec.get("Meta"):
        out["Meta"] = dict(parent.meta)
    if not spec.get("Tags"):
        out["Tags"] = list(parent.tags)
    out["Token"] = spec.get("Token") or request_token
    out["Kind"] = spec.get("Kind") or "connect-proxy"
    out["Name"] = spec.get("Name") or parent.name + SIDECAR_SUFFIX
    out["Address"] = spec.get("Address") or parent.address
    proxy = dict(spec.get("Proxy") or {})
    proxy["DestinationServiceName"] = proxy.get("DestinationServiceName") or parent.name
    proxy["DestinationServiceID"] = proxy.get("DestinationServiceID") or parent.id
    if not proxy.get("LocalServiceAddress") or (proxy.get("LocalServicePort") or 0) < 1:
        if not proxy.get("LocalServiceAddress"):
            proxy["LocalServiceAddress"] = "127.0.0.1"
        if (proxy.get("LocalServicePort") or 0) < 1:
            proxy["LocalServicePort"] = parent.port
    out["Proxy"] = proxy
    if (spec.get("Port") or 0) < 1:
        out["Port"] = _allocate_port(sid, others, port_range)
    checks: list[dict[str, Any]] | None = None
    if spec.get("Check") or spec.get("Checks"):
        checks = [c for c in [spec.get("Check"), *(spec.get("Checks") or [])] if c]
    out.pop("Check", None)
    out.pop("Checks", None)
    if checks is None:
        # Consul 1.7 (agent/sidecar_service.go, sidecarDefaultChecks) dials the proxy's
        # LocalServiceAddress, never the sidecar's Address: a proxy that listens only on a host
        # address fails this check there, and so it must here (issue 12). Later Consul versions
        # dial Address first; 1.7 is the version we answer as.
        address = proxy["LocalServiceAddress"]
        host = f"[{address}]" if ":" in address else address
        checks = [
            {"Name": "Connect Sidecar Listening", "TCP": f"{host}:{out['Port']}", "Interval": 10.0},
            {"Name": f"Connect Sidecar Aliasing {parent.id}", "AliasService": parent.id},
        ]
    return out, checks


def _allocate_port(sid: str, others: Iterable[Service], port_range: tuple[int, int]) -> int:
    low, high = port_range
    if low <= 0 or high <= 0:
        raise BadRequest(
            "Invalid SidecarService: no port provided for sidecar_service and auto-assignment "
            "disabled in config"
        )
    used: set[int] = set()
    for svc in others:
        if low <= svc.port <= high:
            if svc.id == sid:
                return svc.port  # re-registration keeps its port
            used.add(svc.port)
    for port in range(low, high + 1):
        if port not in used:
            return port
    raise BadRequest(
        "Invalid SidecarService: no port provided for sidecar_service and none left in the "
        f"configured range [{low}, {high}]"
    )
