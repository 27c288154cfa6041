# SPDX-License-Identifier: MPL-2.0
"""The agent itself and its local services: `/v1/agent/self`, `/members`, `/services`,
`/service/*`, `/reload`, and `/v1/status/*`."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from meshkit import __version__
from meshkit_tools.devagent import catalog as cat
from meshkit_tools.devagent.acl import Forbidden, request_token
from meshkit_tools.devagent.blocking import block_on_hash
from meshkit_tools.devagent.catalog import BadRequest, NotFound
from meshkit_tools.devagent.decode import SERVICE_API
from meshkit_tools.devagent.http import Area, Route, ServerError, empty, filtered, read_json, reply

log = logging.getLogger("meshkit_tools.devagent")


def drop_managed_proxy(defn: dict[str, Any]) -> None:
    """Consul 1.6+ accepts a managed proxy (`Connect.Proxy`) and ignores it; say so."""
    connect = defn.get("Connect") or {}
    if connect.pop("Proxy", None) is None:
        return
    log.warning(
        "service %r: Connect.Proxy (a managed proxy, removed in Consul 1.6) is ignored, as "
        "Consul 1.7 does; register Connect.SidecarService instead (upstreams under "
        "SidecarService.Proxy.Upstreams, with Datacenter for destination_datacenter) and run "
        "meshkit-proxy -sidecar-for",
        defn.get("ID") or defn.get("Name"),
    )


class AgentAPI(Area):
    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/agent/self", self.agent_self),
            Route("GET", "/v1/agent/members", self.agent_members),
            Route("GET", "/v1/status/leader", self.status_leader),
            Route("GET", "/v1/status/peers", self.status_peers),
            Route("GET", "/v1/agent/services", self.agent_services),
            Route("GET", "/v1/agent/service/{id}", self.agent_service),
            Route("PUT", "/v1/agent/service/register", self.register),
            Route("PUT", "/v1/agent/service/deregister/{id}", self.deregister),
            Route("PUT", "/v1/agent/reload", self.reload),
        ]

    async def agent_self(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.agent_read(self.agent.node.name))
        host, _, port = self.agent.http_addr.rpartition(":")
        n = self.agent.node
        return reply(
            {
                "Config": {
                    "Datacenter": n.datacenter,
                    "NodeName": n.name,
                    "NodeID": n.id,
                    "Revision": "meshkit",
                    "Server": True,
                    "Version": "1.7.14",
                },
                "DebugConfig": {
                    "ACLsEnabled": self.agent.acl.enabled,
                    "ACLDefaultPolicy": "allow" if self.agent.acl.default_allow else "deny",
                    "BindAddr": n.address,
                    "ClientAddrs": [host.strip("[]")],
                    "ConnectEnabled": True,
                    "ConnectSidecarMinPort": self.agent.state.port_range[0],
                    "ConnectSidecarMaxPort": self.agent.state.port_range[1],
                    "DataDir": str(self.agent.store.data_dir or ""),
                    "Datacenter": n.datacenter,
                    "DevMode": self.agent.store.data_dir is None,
                    "HTTPPort": int(port),
                    "NodeID": n.id,
                    "NodeName": n.name,
                    "PrimaryDatacenter": n.datacenter,
                    "Version": "1.7.14",
                    "MeshkitVersion": __version__,
                },
                "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
                "Member": self._member(),
                "Stats": {
                    "agent": {
                        "check_monitors": "0",
                        "check_ttls": str(
                            sum(c.type == "ttl" for c in self.agent.state.checks.values())
                        ),
                        "checks": str(len(self.agent.state.checks)),
                        "services": str(len(self.agent.state.services)),
                    },
                    "build": {"prerelease": "", "revision": "meshkit", "version": "1.7.14"},
                    "consul": {"known_datacenters": "1", "leader": "true", "server": "true"},
                    "raft": {"applied_index": str(self.agent.store.index), "state": "Leader"},
                    "runtime": {"arch": "", "os": "linux", "version": "python"},
                    "serf_lan": {"members": "1"},
                    "serf_wan": {"members": "1"},
                },
                "Meta": {"consul-network-segment": ""},
                "xDS": {"SupportedProxies": {"envoy": []}},
            }
        )

    def _member(self) -> dict[str, Any]:
        n = self.agent.node
        return {
            "Name": n.name,
            "Addr": n.address,
            "Port": 8301,
            "Tags": {
                "acls": "1" if self.agent.acl.enabled else "0",
                "build": "1.7.14:meshkit",
                "dc": n.datacenter,
                "id": n.id,
                "port": "8300",
                "raft_vsn": "3",
                "role": "consul",
                "segment": "",
                "vsn": "2",
                "vsn_max": "3",
                "vsn_min": "2",
                "wan_join_port": "8302",
            },
            "Status": 1,
            "ProtocolMin": 1,
            "ProtocolMax": 5,
            "ProtocolCur": 2,
            "DelegateMin": 2,
            "DelegateMax": 5,
            "DelegateCur": 4,
        }

    async def agent_members(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        return reply([self._member()] if r.node_read(self.agent.node.name) else [])

    def _server_addr(self) -> str:
        host = self.agent.node.address
        return f"[{host}]:8300" if ":" in host else f"{host}:8300"

    async def status_leader(self, request: web.Request) -> web.Response:
        return reply(self._server_addr())

    async def status_peers(self, request: web.Request) -> web.Response:
        return reply([self._server_addr()])

    async def agent_services(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        out = {
            sid: cat.agent_service(svc)
            for sid, svc in sorted(self.agent.state.services.items())
            if r.service_read(svc.name)
        }
        return reply(filtered(request, out))

    async def agent_service(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        rights = self.rights(request)  # an unknown token is refused before the lookup
        svc = self.agent.state.services.get(sid)
        if svc is None:
            raise NotFound(f"unknown service ID: {sid}")
        if not rights.service_read(svc.name):
            raise Forbidden("Permission denied")

        def current_hash() -> str | None:
            s = self.agent.state.services.get(sid)
            return None if s is None else str(cat.agent_service(s, with_hash=True)["ContentHash"])

        await block_on_hash(request, self.agent.store, current_hash)
        svc = self.agent.state.services.get(sid)
        if svc is None:
            raise NotFound(f"unknown service ID: {sid}")
        body = cat.agent_service(svc, with_hash=True)
        return reply(body, headers={"X-Consul-ContentHash": body["ContentHash"]})

    async def register(self, request: web.Request) -> web.Response:
        defn = await read_json(request, SERVICE_API)
        drop_managed_proxy(defn)
        regs = self.agent.state.build(defn, request_token(request), "api")
        names = [r.service.name for r in regs]
        names += [r.service.proxy["DestinationServiceName"] for r in regs if r.service.proxy]
        self.need_service_write(request, *names)
        replace = "replace-existing-checks" in request.query and request.query[
            "replace-existing-checks"
        ].lower() not in ("false", "0")
        self.agent.state.apply(regs, replace_checks=replace)
        return empty()

    async def deregister(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        svc = self.agent.state.services.get(sid)
        if svc is not None:
            self.need_service_write(request, svc.name)
            self.agent.state.deregister(sid)
        return empty()

    async def reload(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.agent_write(self.agent.node.name))
        if self.agent.reload_hook is None:
            return empty()
        try:
            self.agent.reload_hook()
        except (BadRequest, ValueError, OSError) as exc:
            raise ServerError(f"Failed to reload configs: {exc}") from None
        return empty()
