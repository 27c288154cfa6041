# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""A service registration as Consul holds it, normalised so it compares with the model.

Shared by ``consul_service`` (idempotent registration) and ``consul_mesh_info`` (drift).
The normalised view is the agent API body (CamelCase) minus what Consul fills in by itself
(auto sidecar port, inherited sidecar address, default sidecar checks, tagged addresses).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.consul_answers import (
    field_list,
    field_object,
    map_of_objects,
    object_or_none,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    ConsulClient,
    segment,
)
from ansible_collections.meshkit.connect.plugins.module_utils.consul_central import unmerge
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import Service
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    CHECKS_META_KEY,
    agent_parent_registration,
    agent_proxy_registration,
    agent_registration,
    checks_fingerprint,
    sidecar_checks,
)

# Keys of a check's ``Definition`` in /v1/agent/checks (filled by newer Consul versions).
_DEFINITION_KEYS = (
    "TCP",
    "HTTP",
    "Method",
    "Header",
    "TLSSkipVerify",
    "Interval",
    "Timeout",
    "DeregisterCriticalServiceAfter",
)


def desired_view(service: Service) -> dict[str, Any]:
    """What ``read_view`` returns once ``service`` is registered."""
    view = agent_registration(service)
    view["Meta"] = {k: v for k, v in view["Meta"].items() if k != CHECKS_META_KEY}
    # Rendered sidecar checks follow from the sidecar's address and port (compared below);
    # Consul 1.7's /v1/agent/checks has no definitions to read them back from.
    side = (view.get("Connect") or {}).get("SidecarService")
    if isinstance(side, dict):
        side.pop("Checks", None)
    return view


def read_view(
    client: ConsulClient,
    service_id: str,
    want: Service | None = None,
    checks: dict[str, Any] | None = None,
    agent_services: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The registration of ``service_id`` on the agent, or None when it is not registered.

    ``want`` decides what Consul may fill in freely (an auto sidecar port) and lets unchanged
    checks be proven through the fingerprint in Meta; ``checks`` is ``/v1/agent/checks`` when
    the caller already has it, ``agent_services`` likewise ``/v1/agent/services`` (one request
    for many services instead of two per service).
    """
    path = f"/v1/agent/service/{segment(service_id)}"
    if agent_services is not None:
        svc = object_or_none(agent_services.get(service_id), "/v1/agent/services")
    else:
        svc = object_or_none(client.get(path, missing_ok=True), path)
    if not svc:
        return None
    view: dict[str, Any] = {"ID": svc.get("ID", service_id), "Name": svc.get("Service", "")}
    if svc.get("Port"):
        view["Port"] = svc["Port"]
    view["Address"] = svc.get("Address") or ""
    view["Tags"] = list(svc.get("Tags") or [])
    meta = dict(field_object(svc, "Meta"))
    fingerprint = meta.pop(CHECKS_META_KEY, None)
    view["Meta"] = meta
    if checks is None:
        checks = map_of_objects(client.get("/v1/agent/checks"), "/v1/agent/checks")
    own = sorted(
        (c for c in checks.values() if c.get("ServiceID") == view["ID"]),
        key=lambda c: str(c.get("CheckID", "")),
    )
    if own:
        want_body = agent_registration(want) if want is not None else {}
        names = sorted(str(c.get("Name", "")) for c in own)
        if (
            want is not None
            and want.checks
            and fingerprint == checks_fingerprint(want.checks)
            and names == sorted(c.name for c in want.checks)
        ):
            view["Checks"] = want_body["Checks"]
        else:
            view["Checks"] = [_check_view(c) for c in own]
    sidecar_id = f"{view['ID']}-sidecar-proxy"
    sidecar_path = f"/v1/agent/service/{segment(sidecar_id)}"
    if agent_services is not None:
        sidecar = object_or_none(agent_services.get(sidecar_id), "/v1/agent/services")
    else:
        sidecar = object_or_none(client.get(sidecar_path, missing_ok=True), sidecar_path)
    if sidecar and sidecar.get("Kind") == "connect-proxy":
        side_view = _sidecar_view(sidecar, view, want)
        dialled = _stale_listening_check(checks, sidecar, want)
        if dialled:
            # Shown (and so a difference from desired_view, which has no sidecar Checks) only
            # when the check provably dials elsewhere than the registration would make it.
            side_view["Checks"] = [{"Name": "Connect Sidecar Listening", "TCP": dialled}]
        view["Connect"] = {"SidecarService": side_view}
        if want is not None and want.sidecar is not None:  # central config merged by the agent
            want_proxy = desired_view(want)["Connect"]["SidecarService"]["Proxy"]
            unmerge(client, want.name, side_view["Proxy"], want_proxy)
    elif isinstance(svc.get("Connect"), dict) and svc["Connect"].get("Native"):
        view["Connect"] = {"Native": True}
    return view


_DIALLED = re.compile(r"^(?:TCP connect|dial tcp) (\S+?):? ")


def _stale_listening_check(
    checks: dict[str, Any], sidecar: dict[str, Any], want: Service | None
) -> str:
    """What the sidecar's Listening check dials, when that is not what ``want`` registers.

    Consul 1.7 returns no check definitions, but a TCP check's Output names the address it
    dialled (``TCP connect 127.0.0.1:21000: Success``). A sidecar registered before meshkit
    rendered explicit checks for host addresses keeps Consul's default, which dials
    ``local_service_address``; this finds it so the next run registers it again. "" when the
    check matches, has not run yet, or there is nothing to compare with.
    """
    if want is None or want.sidecar is None:
        return ""
    port = sidecar.get("Port")
    if not isinstance(port, int) or port <= 0:
        return ""
    rendered = sidecar_checks(want)
    if rendered:
        expected = rendered[0].tcp
    else:
        host = want.sidecar.local_service_address or "127.0.0.1"
        expected = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sid = sidecar.get("ID")
    for check in checks.values():
        if not isinstance(check, dict) or check.get("ServiceID") != sid:
            continue
        if check.get("Name") != "Connect Sidecar Listening":
            continue
        definition = field_object(check, "Definition")
        dialled = definition.get("TCP")
        if not isinstance(dialled, str) or not dialled:
            found = _DIALLED.match(str(check.get("Output") or ""))
            dialled = found.group(1) if found else ""
        if dialled and dialled != expected:
            return dialled
    return ""


def _check_view(check: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": check.get("Name", "")}
    definition = field_object(check, "Definition")
    for key in _DEFINITION_KEYS:
        if definition.get(key):
            out[key] = definition[key]
    if len(out) == 1:  # Consul did not say how the check is defined
        out["Type"] = check.get("Type", "")
    return out


def _sidecar_view(
    sidecar: dict[str, Any], parent: dict[str, Any], want: Service | None
) -> dict[str, Any]:
    want_side = want.sidecar if want is not None else None
    out: dict[str, Any] = {}
    if want_side is None or want_side.port is not None:
        out["Port"] = sidecar.get("Port", 0)
    address = sidecar.get("Address") or ""
    if address != parent["Address"] or (want_side is not None and want_side.address):
        out["Address"] = address
    proxy = field_object(sidecar, "Proxy")
    view: dict[str, Any] = {
        "LocalServiceAddress": proxy.get("LocalServiceAddress") or "",
        "LocalServicePort": proxy.get("LocalServicePort") or 0,
    }
    if proxy.get("Config"):
        view["Config"] = proxy["Config"]
    view["Upstreams"] = [
        _upstream_view(u) for u in field_list(proxy, "Upstreams", "/v1/agent/service (Proxy)")
    ]
    out["Proxy"] = view
    return out


def _upstream_view(up: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "DestinationType": up.get("DestinationType") or "service",
        "DestinationName": up.get("DestinationName", ""),
    }
    if up.get("Datacenter"):
        out["Datacenter"] = up["Datacenter"]
    out["LocalBindAddress"] = up.get("LocalBindAddress") or ""
    out["LocalBindPort"] = up.get("LocalBindPort") or 0
    if up.get("Config"):
        out["Config"] = up["Config"]
    return out


def register(client: ConsulClient, service: Service, *, standalone_proxy: bool = False) -> None:
    """Register the service with its sidecar nested (``sidecar_service``), or with the sidecar
    as a separate ``connect-proxy`` registration (``standalone_proxy``)."""
    query = {"replace-existing-checks": "true"}
    if not standalone_proxy or service.sidecar is None:
        client.put("/v1/agent/service/register", agent_registration(service), query=query)
        return
    client.put("/v1/agent/service/register", agent_parent_registration(service), query=query)
    client.put("/v1/agent/service/register", agent_proxy_registration(service), query=query)


def deregister(client: ConsulClient, service_id: str) -> None:
    """Deregister the service and its proxy (a standalone proxy does not go with it)."""
    client.put(f"/v1/agent/service/deregister/{segment(service_id)}")
    proxy = f"{service_id}-sidecar-proxy"
    if client.get(f"/v1/agent/service/{segment(proxy)}", missing_ok=True):
        client.put(f"/v1/agent/service/deregister/{segment(proxy)}")


class ServiceStore:
    """One service registration (its sidecar included) on the local agent, by service ID.

    ``service`` is what the module registers (None when it only removes by ID); it also
    decides what ``read_view`` lets Consul fill in. ``standalone_proxy`` registers the sidecar
    as its own ``connect-proxy`` service.
    """

    def __init__(
        self,
        client: ConsulClient,
        service_id: str,
        service: Service | None,
        *,
        standalone_proxy: bool = False,
    ) -> None:
        self.client, self.service_id, self.service = client, service_id, service
        self.standalone_proxy = standalone_proxy

    def read(self, checks: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The registration's view; ``checks`` is ``/v1/agent/checks`` if already fetched."""
        return read_view(self.client, self.service_id, self.service, checks)

    def write(self, view: dict[str, Any]) -> None:
        """Register ``service`` (``view`` is its ``desired_view``, rendered from the same)."""
        if self.service is None:
            raise AssertionError("a service to register is known whenever one is desired")
        register(self.client, self.service, standalone_proxy=self.standalone_proxy)

    def delete(self) -> None:
        deregister(self.client, self.service_id)

    def sidecar_port(self) -> int | None:
        """The sidecar's public port as the agent holds it (auto-assigned ones included)."""
        path = f"/v1/agent/service/{segment(self.service_id + '-sidecar-proxy')}"
        sidecar = object_or_none(self.client.get(path, missing_ok=True), path)
        port = sidecar.get("Port") if sidecar else None
        return port if isinstance(port, int) and port > 0 else None


class ServicesStore:
    """Several registrations as one object, ``{service id: view}``, read with one request for
    every service's checks; a write touches only the services whose view differs."""

    def __init__(
        self,
        client: ConsulClient,
        services: Mapping[str, Service],
        *,
        standalone_proxy: bool = False,
    ) -> None:
        self.client = client
        self.stores = {
            sid: ServiceStore(client, sid, svc, standalone_proxy=standalone_proxy)
            for sid, svc in services.items()
        }
        self.registered: dict[str, Any] = {}

    def read(self) -> dict[str, Any]:
        checks = map_of_objects(self.client.get("/v1/agent/checks"), "/v1/agent/checks")
        found = {sid: store.read(checks) for sid, store in self.stores.items()}
        self.registered = {sid: view for sid, view in found.items() if view is not None}
        return self.registered

    def write(self, view: dict[str, Any]) -> None:
        for sid in self.registered:
            if sid not in view:
                self.stores[sid].delete()
        for sid, one in view.items():
            if self.registered.get(sid) != one:
                self.stores[sid].write(one)

    def delete(self) -> None:
        self.write({})
