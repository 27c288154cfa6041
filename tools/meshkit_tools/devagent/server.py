# SPDX-License-Identifier: MPL-2.0
"""The aiohttp application: Consul's routes, status codes, error texts and headers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from meshkit import __version__
from meshkit.spiffe import SpiffeError, parse_service_uri
from meshkit_tools.devagent import catalog as cat
from meshkit_tools.devagent.acl import ACL, ACLServerError, Forbidden, Rights, request_token
from meshkit_tools.devagent.blocking import (
    BadQuery,
    block_on_hash,
    block_on_index,
    min_index,
    wait_time,
)
from meshkit_tools.devagent.ca import CA
from meshkit_tools.devagent.catalog import BadRequest, NotFound
from meshkit_tools.devagent.central import Resolver
from meshkit_tools.devagent.checks import CheckRunner
from meshkit_tools.devagent.configentries import KNOWN_KINDS, ConfigEntries
from meshkit_tools.devagent.decode import (
    AUTHORIZE,
    CHECK_DEFINITION,
    INTENTION,
    QUERY,
    SERVICE_API,
    DecodeError,
    Schema,
    decode,
)
from meshkit_tools.devagent.filters import FilterError, compile_filter
from meshkit_tools.devagent.intentions import Intentions
from meshkit_tools.devagent.queries import Queries
from meshkit_tools.devagent.queries import render as render_query
from meshkit_tools.devagent.state import State
from meshkit_tools.devagent.store import Store

log = logging.getLogger("meshkit_tools.devagent")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"


class ServerError(RuntimeError):
    """A 500 with Consul's text."""


def meta_headers(index: int) -> dict[str, str]:
    """X-Consul-Index and the leader headers Consul's blocking endpoints send."""
    return {
        "X-Consul-Index": str(max(index, 1)),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
    }


def reply(
    body: Any,
    *,
    status: int = 200,
    index: int | None = None,
    meta: bool = False,
    consistency: bool = False,
    headers: dict[str, str] | None = None,
) -> web.Response:
    h: dict[str, str] = {}
    if index is not None:
        h["X-Consul-Index"] = str(max(index, 1))
    if meta:
        h["X-Consul-KnownLeader"] = "true"
        h["X-Consul-LastContact"] = "0"
    if consistency:
        h["X-Consul-Effective-Consistency"] = "leader"
    h.update(headers or {})
    return web.Response(body=json.dumps(body).encode(), status=status, content_type=JSON, headers=h)


def filtered(request: web.Request, rows: Any) -> Any:
    """Apply `?filter=` to a list or to the values of a map (as Consul does)."""
    text = request.query.get("filter")
    if not text:
        return rows
    try:
        pred = compile_filter(text)
    except FilterError as exc:
        raise BadRequest(str(exc)) from None
    if isinstance(rows, dict):
        return {k: v for k, v in rows.items() if pred(v)}
    return [r for r in rows if pred(r)]


def empty() -> web.Response:
    return web.Response(status=200)


def truthy(request: web.Request, name: str) -> bool:
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("false", "0", "no")


async def read_json(request: web.Request, schema: Schema | None = None) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("Request decode failed: EOF")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    if not isinstance(data, dict):
        name = schema.name if schema else "object"
        raise BadRequest(
            f"Request decode failed: json: cannot unmarshal {type(data).__name__} "
            f"into Go value of type {name}"
        )
    if schema is None:
        return data
    try:
        return decode(data, schema, "api")
    except DecodeError as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None


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


class Agent:
    """Everything one dev-agent process holds; `app()` wires it to HTTP."""

    def __init__(
        self,
        store: Store,
        state: State,
        ca: CA,
        intentions: Intentions,
        queries: Queries,
        acl: ACL,
        runner: CheckRunner,
        *,
        reload_hook: Callable[[], None] | None = None,
        http_addr: str = "127.0.0.1:8500",
        central_config: bool = False,
    ) -> None:
        self.store = store
        self.state = state
        self.ca = ca
        self.intentions = intentions
        self.queries = queries
        self.acl = acl
        self.runner = runner
        self.reload_hook = reload_hook
        self.http_addr = http_addr
        self.config = ConfigEntries(store, intentions)
        if central_config:
            state.resolver = Resolver(self.config)
        self.config.on_change = self.state.remerge
        self.state.remerge()  # services stored before (config dir, restart) get today's entries
        self.started = time.time()

    @property
    def node(self) -> cat.Node:
        return self.state.node

    # -- plumbing -----------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            dc = request.query.get("dc")
            if dc and dc != self.node.datacenter:
                raise ServerError("No path to datacenter")
            resp = await handler(request)
            if "pretty" in request.query and isinstance(resp, web.Response):
                body = resp.body
                if resp.content_type == JSON and isinstance(body, bytes):
                    resp.body = (json.dumps(json.loads(body), indent=4) + "\n").encode()
            return resp
        except BadRequest as exc:
            return web.Response(status=400, text=str(exc))
        except BadQuery as exc:
            return web.Response(status=400, text=str(exc))
        except NotFound as exc:
            return web.Response(status=404, text=str(exc))
        except Forbidden as exc:
            return web.Response(status=403, text=str(exc))
        except (ServerError, ACLServerError) as exc:
            return web.Response(status=500, text=str(exc))

    def rights(self, request: web.Request) -> Rights:
        return self.acl.rights(request)

    def need_service_write(self, request: web.Request, *names: str) -> None:
        r = self.rights(request)
        if not all(r.service_write(n) for n in names):
            raise Forbidden("Permission denied")

    def need_service_read(self, request: web.Request, name: str) -> None:
        if not self.rights(request).service_read(name):
            raise Forbidden("Permission denied")

    def need(self, request: web.Request, allowed: Callable[[Rights], bool]) -> Rights:
        """Resolve the request's token; 403 Permission denied unless `allowed` says yes."""
        r = self.rights(request)
        if not allowed(r):
            raise Forbidden("Permission denied")
        return r

    def need_any_read(self, request: web.Request) -> Rights:
        return self.need(request, lambda r: r.node_read(self.node.name))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=8 * 1024 * 1024)
        r = app.router
        get, put = r.add_get, r.add_put
        get("/v1/agent/self", self.agent_self)
        get("/v1/agent/members", self.agent_members)
        get("/v1/status/leader", self.status_leader)
        get("/v1/status/peers", self.status_peers)
        get("/v1/agent/services", self.agent_services)
        get("/v1/agent/service/{id}", self.agent_service)
        put("/v1/agent/service/register", self.register)
        put("/v1/agent/service/deregister/{id}", self.deregister)
        get("/v1/agent/checks", self.agent_checks)
        put("/v1/agent/check/register", self.check_register)
        put("/v1/agent/check/deregister/{id}", self.check_deregister)
        for verb, status in (("pass", cat.PASSING), ("warn", cat.WARNING), ("fail", cat.CRITICAL)):
            put(f"/v1/agent/check/{verb}/{{id}}", self._ttl_handler(status))
        put("/v1/agent/check/update/{id}", self.check_update)
        get("/v1/agent/health/service/name/{name}", self.agent_health_name)
        get("/v1/agent/health/service/id/{id}", self.agent_health_id)
        put("/v1/agent/reload", self.reload)
        get("/v1/catalog/services", self.catalog_services)
        get("/v1/catalog/service/{name}", self.catalog_service)
        get("/v1/catalog/connect/{name}", self.catalog_connect)
        get("/v1/catalog/nodes", self.catalog_nodes)
        get("/v1/catalog/datacenters", self.catalog_datacenters)
        get("/v1/health/service/{name}", self.health_service)
        get("/v1/health/connect/{name}", self.health_connect)
        get("/v1/health/checks/{name}", self.health_checks)
        get("/v1/agent/connect/ca/roots", self.ca_roots)
        get("/v1/connect/ca/roots", self.ca_roots)
        get("/v1/agent/connect/ca/leaf/{service}", self.ca_leaf)
        get("/v1/connect/ca/configuration", self.ca_config_get)
        put("/v1/connect/ca/configuration", self.ca_config_put)
        r.add_post("/v1/agent/connect/authorize", self.authorize)
        get("/v1/connect/intentions", self.intentions_list)
        r.add_post("/v1/connect/intentions", self.intention_create)
        get("/v1/connect/intentions/match", self.intentions_match)
        get("/v1/connect/intentions/check", self.intentions_check)
        get("/v1/connect/intentions/exact", self.intention_exact_get)
        put("/v1/connect/intentions/exact", self.intention_exact_put)
        r.add_delete("/v1/connect/intentions/exact", self.intention_exact_delete)
        get("/v1/connect/intentions/{id}", self.intention_get)
        put("/v1/connect/intentions/{id}", self.intention_update)
        r.add_delete("/v1/connect/intentions/{id}", self.intention_delete)
        get("/v1/query", self.query_list)
        r.add_post("/v1/query", self.query_create)
        get("/v1/query/{id}", self.query_get)
        put("/v1/query/{id}", self.query_update)
        r.add_delete("/v1/query/{id}", self.query_delete)
        get("/v1/query/{id}/execute", self.query_execute)
        get("/v1/query/{id}/explain", self.query_explain)
        put("/v1/config", self.config_put)
        get("/v1/config/{kind}", self.config_list)
        get("/v1/config/{kind}/{name}", self.config_get)
        r.add_delete("/v1/config/{kind}/{name}", self.config_delete)
        put("/v1/acl/token", self.acl_token_create)
        get("/v1/acl/token/self", self.acl_token_self)
        get("/v1/acl/token/{id}", self.acl_token_get)
        r.add_delete("/v1/acl/token/{id}", self.acl_token_delete)
        get("/v1/acl/tokens", self.acl_tokens)
        put("/v1/acl/token/{id}", self.acl_token_update)
        put("/v1/acl/policy", self.acl_policy_create)
        get("/v1/acl/policy/name/{name}", self.acl_policy_by_name)
        get("/v1/acl/policy/{id}", self.acl_policy_get)
        put("/v1/acl/policy/{id}", self.acl_policy_update)
        r.add_delete("/v1/acl/policy/{id}", self.acl_policy_delete)
        get("/v1/acl/policies", self.acl_policies)
        return app

    # -- agent --------------------------------------------------------------------------------

    async def agent_self(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.agent_read(self.node.name))
        host, _, port = self.http_addr.rpartition(":")
        n = self.node
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
                    "ACLsEnabled": self.acl.enabled,
                    "ACLDefaultPolicy": "allow" if self.acl.default_allow else "deny",
                    "BindAddr": n.address,
                    "ClientAddrs": [host.strip("[]")],
                    "ConnectEnabled": True,
                    "ConnectSidecarMinPort": self.state.port_range[0],
                    "ConnectSidecarMaxPort": self.state.port_range[1],
                    "DataDir": str(self.store.data_dir or ""),
                    "Datacenter": n.datacenter,
                    "DevMode": self.store.data_dir is None,
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
                        "check_ttls": str(sum(c.type == "ttl" for c in self.state.checks.values())),
                        "checks": str(len(self.state.checks)),
                        "services": str(len(self.state.services)),
                    },
                    "build": {"prerelease": "", "revision": "meshkit", "version": "1.7.14"},
                    "consul": {"known_datacenters": "1", "leader": "true", "server": "true"},
                    "raft": {"applied_index": str(self.store.index), "state": "Leader"},
                    "runtime": {"arch": "", "os": "linux", "version": "python"},
                    "serf_lan": {"members": "1"},
                    "serf_wan": {"members": "1"},
                },
                "Meta": {"consul-network-segment": ""},
                "xDS": {"SupportedProxies": {"envoy": []}},
            }
        )

    def _member(self) -> dict[str, Any]:
        n = self.node
        return {
            "Name": n.name,
            "Addr": n.address,
            "Port": 8301,
            "Tags": {
                "acls": "1" if self.acl.enabled else "0",
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
        return reply([self._member()] if r.node_read(self.node.name) else [])

    def _server_addr(self) -> str:
        host = self.node.address
        return f"[{host}]:8300" if ":" in host else f"{host}:8300"

    async def status_leader(self, request: web.Request) -> web.Response:
        return reply(self._server_addr())

    async def status_peers(self, request: web.Request) -> web.Response:
        return reply([self._server_addr()])

    async def agent_services(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        out = {
            sid: cat.agent_service(svc)
            for sid, svc in sorted(self.state.services.items())
            if r.service_read(svc.name)
        }
        return reply(filtered(request, out))

    async def agent_service(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        rights = self.rights(request)  # an unknown token is refused before the lookup
        svc = self.state.services.get(sid)
        if svc is None:
            raise NotFound(f"unknown service ID: {sid}")
        if not rights.service_read(svc.name):
            raise Forbidden("Permission denied")

        def current_hash() -> str | None:
            s = self.state.services.get(sid)
            return None if s is None else str(cat.agent_service(s, with_hash=True)["ContentHash"])

        await block_on_hash(request, self.store, current_hash)
        svc = self.state.services.get(sid)
        if svc is None:
            raise NotFound(f"unknown service ID: {sid}")
        body = cat.agent_service(svc, with_hash=True)
        return reply(body, headers={"X-Consul-ContentHash": body["ContentHash"]})

    async def register(self, request: web.Request) -> web.Response:
        defn = await read_json(request, SERVICE_API)
        drop_managed_proxy(defn)
        regs = self.state.build(defn, request_token(request), "api")
        names = [r.service.name for r in regs]
        names += [r.service.proxy["DestinationServiceName"] for r in regs if r.service.proxy]
        self.need_service_write(request, *names)
        replace = "replace-existing-checks" in request.query and request.query[
            "replace-existing-checks"
        ].lower() not in ("false", "0")
        self.state.apply(regs, replace_checks=replace)
        return empty()

    async def deregister(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        svc = self.state.services.get(sid)
        if svc is not None:
            self.need_service_write(request, svc.name)
            self.state.deregister(sid)
        return empty()

    async def agent_checks(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        out = {}
        for cid, chk in sorted(self.state.checks.items()):
            svc = self.state.services.get(chk.service_id)
            if chk.service_id and not r.service_read(chk.service_name):
                continue
            if not chk.service_id and not r.node_read(self.node.name):
                continue
            out[cid] = cat.render_check(chk, self.node.name, svc.tags if svc else [], agent=True)
        return reply(filtered(request, out))

    async def check_register(self, request: web.Request) -> web.Response:
        d = await read_json(request, CHECK_DEFINITION)
        if not d.get("Name"):
            raise BadRequest("Missing check name")
        svc = None
        if d.get("ServiceID"):
            svc = self.state.services.get(d["ServiceID"])
            if svc is None:
                raise BadRequest(f"ServiceID {d['ServiceID']!r} does not exist")
            self.need_service_write(request, svc.name)
        else:
            self.need(request, lambda r: r.node_write(self.node.name))
        chk = self.state.check_from_def(d, d.get("ID") or d.get("CheckID") or d["Name"], svc)
        self.state.add_check(chk)
        return empty()

    async def check_deregister(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        chk = self.state.checks.get(cid)
        if chk is None:
            raise NotFound(
                f"Unknown check ID {cid!r}. Ensure that the check ID is passed, not the check name."
            )
        self._check_write(request, chk)
        self.state.remove_check(cid)
        return empty()

    def _check_write(self, request: web.Request, chk: cat.Check) -> None:
        if chk.service_id:
            self.need_service_write(request, chk.service_name)
        else:
            self.need(request, lambda r: r.node_write(self.node.name))

    def _ttl_handler(self, status: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return self._ttl(request, status, request.query.get("note", ""))

        return handler

    def _ttl(self, request: web.Request, status: str, note: str) -> web.Response:
        cid = request.match_info["id"]
        chk = self.state.checks.get(cid)
        if chk is None:
            raise NotFound(
                f"Unknown check ID {cid!r}. Ensure that the check ID is passed, not the check name."
            )
        self._check_write(request, chk)
        err = self.runner.update_ttl(cid, status, note)
        if err:
            raise ServerError(err)
        return empty()

    async def check_update(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        for key in body:
            if key.lower() not in ("status", "output"):
                raise BadRequest(f'Request decode failed: json: unknown field "{key}"')
        low = {k.lower(): v for k, v in body.items()}
        status = low.get("status", "")
        if status not in (cat.PASSING, cat.WARNING, cat.CRITICAL):
            raise BadRequest(f"Invalid check status: '{status}'")
        return self._ttl(request, status, str(low.get("output", "")))

    def _health_entry(self, svc: cat.Service) -> dict[str, Any]:
        checks = self.state.service_checks(svc.id)
        return {
            "AggregatedStatus": cat.worst([c.status for c in checks]),
            "Service": cat.agent_service(svc),
            "Checks": [
                cat.render_check(c, self.node.name, svc.tags, agent=True, full_definition=True)
                for c in checks
            ],
        }

    @staticmethod
    def _health_reply(body: Any, status: str) -> web.Response:
        """200 passing, 429 warning, 503 critical, with the status in X-Consul-Reason."""
        code = {cat.PASSING: 200, cat.WARNING: 429}.get(status, 503)
        return reply(body, status=code, headers={"X-Consul-Reason": status})

    def _agent_health(self, services: list[cat.Service]) -> web.Response:
        entries = [self._health_entry(svc) for svc in services]
        return self._health_reply(entries, cat.worst([e["AggregatedStatus"] for e in entries]))

    async def agent_health_name(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.need_service_read(request, name)
        found = [s for s in self.state.services.values() if s.name == name]
        if not found:
            return web.Response(
                status=404,
                text=f"ServiceName {name} Not Found",
                headers={"X-Consul-Reason": "critical"},
            )
        return self._agent_health(sorted(found, key=lambda s: s.id))

    async def agent_health_id(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        svc = self.state.services.get(sid)
        if svc is None:
            return web.Response(status=404, text=f"ServiceId {sid} not found")
        self.need_service_read(request, svc.name)
        entry = self._health_entry(svc)
        return self._health_reply(entry, entry["AggregatedStatus"])

    async def reload(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.agent_write(self.node.name))
        if self.reload_hook is None:
            return empty()
        try:
            self.reload_hook()
        except (BadRequest, ValueError, OSError) as exc:
            raise ServerError(f"Failed to reload configs: {exc}") from None
        return empty()

    # -- catalog and health -------------------------------------------------------------------

    async def catalog_services(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        index = await block_on_index(request, self.store, self.state.index)
        out: dict[str, list[str]] = {"consul": []} if r.service_read("consul") else {}
        for svc in self.state.services.values():
            if r.service_read(svc.name):
                tags = out.setdefault(svc.name, [])
                tags.extend(t for t in svc.tags if t not in tags)
        return reply(dict(sorted(out.items())), index=index, meta=True, consistency=True)

    def _visible(self, request: web.Request, name: str) -> bool:
        """Catalog and health answers drop what the token may not read (no 403: Consul
        filters the result by service:read and node:read)."""
        r = self.rights(request)
        return r.service_read(name) and r.node_read(self.node.name)

    def _filtered(self, request: web.Request, name: str, connect: bool) -> list[cat.Service]:
        found = self.state.by_name(name, connect=connect)
        tags = request.query.getall("tag", [])
        if tags:
            found = [s for s in found if all(t in s.tags for t in tags)]
        if truthy(request, "passing"):
            found = [s for s in found if self.state.passing(s)]
        return found

    async def _catalog(self, request: web.Request, connect: bool) -> web.Response:
        name = request.match_info["name"]
        visible = self._visible(request, name)
        index = await block_on_index(
            request, self.store, lambda: self.state.name_index_of(name, connect=connect)
        )
        found = self._filtered(request, name, connect) if visible else []
        rows = [cat.catalog_service(self.node, s) for s in found]
        return reply(filtered(request, rows), index=index, meta=True, consistency=True)

    async def catalog_service(self, request: web.Request) -> web.Response:
        return await self._catalog(request, connect=False)

    async def catalog_connect(self, request: web.Request) -> web.Response:
        return await self._catalog(request, connect=True)

    async def catalog_nodes(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        index = await block_on_index(request, self.store, self.state.index)
        n = self.node.render()
        n["TaggedAddresses"] = self.node.tagged()
        rows = [n] if r.node_read(self.node.name) else []
        return reply(rows, index=index, meta=True, consistency=True)

    async def catalog_datacenters(self, request: web.Request) -> web.Response:
        return reply([self.node.datacenter])

    async def _health(self, request: web.Request, connect: bool) -> web.Response:
        name = request.match_info["name"]
        visible = self._visible(request, name)
        index = await block_on_index(
            request, self.store, lambda: self.state.name_index_of(name, connect=connect)
        )
        rows = []
        for svc in self._filtered(request, name, connect) if visible else []:
            rows.append(
                {
                    "Node": self.node.render(),
                    "Service": cat.node_service(svc),
                    "Checks": [
                        cat.render_check(c, self.node.name, svc.tags)
                        for c in self.state.entry_checks(svc)
                    ],
                }
            )
        return reply(filtered(request, rows), index=index, meta=True, consistency=True)

    async def health_service(self, request: web.Request) -> web.Response:
        # Consul picks the Connect view by route; a `connect` query parameter is ignored
        # here (fixture 40 shows the plain service for `?connect=true`).
        return await self._health(request, connect=False)

    async def health_connect(self, request: web.Request) -> web.Response:
        return await self._health(request, connect=True)

    async def health_checks(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        visible = self._visible(request, name)
        index = await block_on_index(request, self.store, lambda: self.state.name_index_of(name))
        rows = []
        for svc in self.state.by_name(name) if visible else []:
            rows += [
                cat.render_check(c, self.node.name, svc.tags)
                for c in self.state.service_checks(svc.id)
            ]
        return reply(filtered(request, rows), index=index, meta=True, consistency=True)

    # -- CA -----------------------------------------------------------------------------------

    async def ca_roots(self, request: web.Request) -> web.Response:
        index = await block_on_index(request, self.store, self.ca.index)
        return reply(self.ca.roots_json(), index=index, meta=True)

    async def ca_leaf(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        self.need_service_write(request, service)
        want = min_index(request)
        rec = await self.ca.leaf(service, want, wait_time(request) if want > 0 else 0.0)
        return reply(CA.leaf_json(rec), index=rec.modify_index, headers={"X-Cache": "MISS"})

    async def ca_config_get(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.operator_read())
        return reply(self.ca.config_json())

    async def ca_config_put(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.operator_write())
        self.ca.set_config(await read_json(request))
        return empty()

    # -- intentions and authorize -------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        body = await read_json(request, AUTHORIZE)
        target = body.get("Target") or ""
        if not target:
            raise BadRequest("Target service must be specified")
        self.need_service_write(request, target)
        uri = body.get("ClientCertURI") or ""
        if not uri:
            raise BadRequest("ClientCertURI must be specified")
        try:
            peer = parse_service_uri(uri)
        except SpiffeError:
            raise BadRequest("ClientCertURI not a valid Connect identifier") from None
        # Consul 1.7.14 does not compare the client's trust domain here (edges e56: a URI of
        # another trust domain gets the intention/default answer); the proxy checks it.
        allowed, reason = self.intentions.decide(peer.service, target)
        return reply({"Authorized": allowed, "Reason": reason}, headers={"X-Cache": "MISS"})

    def _intentions_read(self, request: web.Request, destination: str) -> None:
        self.need(request, lambda r: r.intention_read(destination))

    def _intention_write(self, request: web.Request, *destinations: str) -> None:
        """intention:write on every destination named (Consul checks old and new)."""
        self.need(request, lambda r: all(r.intention_write(d) for d in destinations))

    async def intentions_list(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        index = await block_on_index(request, self.store, self.intentions.index)
        rows = [i for i in self.intentions.listing() if r.intention_read(i["DestinationName"])]
        return reply(filtered(request, rows), index=index, meta=True)

    async def intention_create(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request, INTENTION)
        if not r.intention_write(str(body.get("DestinationName") or "")):
            raise Forbidden("Permission denied")
        return reply({"ID": self.intentions.create(body)})

    async def intentions_match(self, request: web.Request) -> web.Response:
        by = request.query.get("by", "")
        if by not in ("source", "destination"):
            raise BadRequest(
                "required query parameter 'by' not set"
                if not by
                else f"'by' must be 'source' or 'destination', got {by!r}"
            )
        names = request.query.getall("name", [])
        if not names:
            raise BadRequest("required query parameter 'name' not set")
        for n in names:
            self._intentions_read(request, n)
        await block_on_index(request, self.store, self.intentions.index)
        # No query meta, and `null` for a name nothing matches (edges e54, e55).
        return reply({n: self.intentions.match(by, n) or None for n in names})

    async def intentions_check(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        if not src or not dst:
            raise BadRequest("required query parameter 'source' and 'destination' not set")
        self.need(request, lambda r: r.service_read(dst))
        allowed, _ = self.intentions.decide(src, dst)
        return reply({"Allowed": allowed})

    async def intention_exact_get(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        self._intentions_read(request, dst)
        return reply(self.intentions.exact(src, dst))

    async def intention_exact_put(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        self._intention_write(request, dst)
        if not src or not dst:
            raise BadRequest("required query parameter 'source' and 'destination' not set")
        self.intentions.upsert_exact(src, dst, await read_json(request, INTENTION))
        return reply(True)

    async def intention_exact_delete(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        self._intention_write(request, dst)
        ixn = self.intentions.exact(src, dst)
        self.intentions.delete(ixn["ID"])
        return reply(True)

    async def intention_get(self, request: web.Request) -> web.Response:
        ixn = self.intentions.get(request.match_info["id"])
        self._intentions_read(request, ixn["DestinationName"])
        return reply(ixn)

    async def intention_update(self, request: web.Request) -> web.Response:
        ixn_id = request.match_info["id"]
        self.rights(request)
        body = await read_json(request, INTENTION)
        old = self.intentions.get(ixn_id)
        self._intention_write(
            request, old["DestinationName"], str(body.get("DestinationName") or "")
        )
        self.intentions.update(ixn_id, body)
        return reply({"ID": ixn_id})

    async def intention_delete(self, request: web.Request) -> web.Response:
        self.rights(request)
        old = self.intentions.get(request.match_info["id"])
        self._intention_write(request, old["DestinationName"])
        self.intentions.delete(request.match_info["id"])
        return reply(True)

    # -- prepared queries ---------------------------------------------------------------------

    @staticmethod
    def _query_visible(r: Rights, q: dict[str, Any]) -> bool:
        """query:read on the query's name; a query without a name only for management."""
        return r.management or (bool(q.get("Name")) and r.query_read(q["Name"]))

    @staticmethod
    def _query_writable(r: Rights, name: str) -> bool:
        """query:write on the name; Consul lets any token write a query without a name."""
        return not name or r.query_write(name)

    @staticmethod
    def _query_shown(r: Rights, q: dict[str, Any]) -> dict[str, Any]:
        out = render_query(q)
        if out.get("Token") and not r.acl_write():
            out["Token"] = "<hidden>"  # Consul redacts query tokens for all but management
        return out

    async def query_list(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        index = await block_on_index(request, self.store, self.queries.index)
        return reply(
            [self._query_shown(r, q) for q in self.queries.listing() if self._query_visible(r, q)],
            index=index,
            meta=True,
            consistency=True,
        )

    async def query_create(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request, QUERY)
        if not self._query_writable(r, str(body.get("Name") or "")):
            raise Forbidden("Permission denied")
        return reply({"ID": self.queries.create(body)})

    async def query_get(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        q = self.queries.get(request.match_info["id"])
        if not self._query_visible(r, q):
            raise Forbidden("Permission denied")
        return reply(
            [self._query_shown(r, q)], index=self.queries.index(), meta=True, consistency=True
        )

    async def query_update(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request, QUERY)
        old = self.queries.get(request.match_info["id"])
        if not (
            self._query_writable(r, str(old.get("Name") or ""))
            and self._query_writable(r, str(body.get("Name") or ""))
        ):
            raise Forbidden("Permission denied")
        self.queries.update(request.match_info["id"], body)
        return empty()

    async def query_delete(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        old = self.queries.get(request.match_info["id"])
        if not self._query_writable(r, str(old.get("Name") or "")):
            raise Forbidden("Permission denied")
        self.queries.delete(request.match_info["id"])
        return empty()

    async def query_execute(self, request: web.Request) -> web.Response:
        q, service = self.queries.resolve(request.match_info["id"])
        # Results are filtered with the query's own token when it has one, else the caller's
        # (no query:read needed to execute): nodes the token may not read are dropped.
        r = self.acl.resolve(q["Token"]) if q.get("Token") else self.rights(request)
        try:
            limit = int(request.query.get("limit", "0") or 0)
        except ValueError:
            raise BadQuery("Invalid limit") from None
        result = self.queries.execute(
            request.match_info["id"], connect=truthy(request, "connect"), limit=limit
        )
        if not (r.service_read(service) and r.node_read(self.node.name)):
            result["Nodes"] = []
        return reply(result, index=1, meta=True, consistency=True)

    async def query_explain(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        q, _ = self.queries.resolve(request.match_info["id"])
        if not self._query_visible(r, q):
            raise Forbidden("Permission denied")
        body = {
            "Query": self._query_shown(r, q),
            "Index": 0,
            "LastContact": 0,
            "KnownLeader": True,
            "ConsistencyLevel": "leader",
        }
        return reply(body, index=1, meta=True, consistency=True)

    # -- config entries -----------------------------------------------------------------------

    @staticmethod
    def _cas(request: web.Request) -> int | None:
        raw = request.query.get("cas")
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise BadQuery(f"Failed to parse cas: {raw!r}") from None

    @staticmethod
    def _config_can_read(r: Rights, kind: str, name: str) -> bool:
        """Consul 1.7's CanRead: proxy-defaults for anyone, intentions by intention:read,
        every other kind by service:read on its name."""
        if kind == "proxy-defaults":
            return True
        if kind == "service-intentions":
            return r.intention_read(name)
        return r.service_read(name)

    @staticmethod
    def _config_can_write(r: Rights, kind: str, name: str) -> bool:
        if kind == "proxy-defaults":
            return r.operator_write()
        if kind == "service-intentions":
            return r.intention_write(name)
        return r.service_write(name)

    def _readable_entries(self, r: Rights, rows: Any) -> Any:
        if not isinstance(rows, list):
            return rows
        return [
            e
            for e in rows
            if not isinstance(e, dict)
            or self._config_can_read(r, str(e.get("Kind", "")), str(e.get("Name", "")))
        ]

    async def config_put(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request)
        if not self._config_can_write(r, str(body.get("Kind", "")), str(body.get("Name", ""))):
            raise Forbidden("Permission denied")
        return reply(self.config.put(body, self._cas(request)))

    @staticmethod
    def _config_kind(request: web.Request) -> str:
        kind = request.match_info["kind"]
        if kind not in KNOWN_KINDS:
            raise ServerError(f"invalid config entry kind: {kind}")  # Consul's RPC error: 500
        return kind

    async def config_list(self, request: web.Request) -> web.Response:
        kind = self._config_kind(request)
        r = self.rights(request)
        index = await block_on_index(request, self.store, lambda: self.config.index(kind))
        entries = self._readable_entries(r, self.config.listing(kind))
        return reply(filtered(request, entries), index=index, meta=True)

    async def config_get(self, request: web.Request) -> web.Response:
        kind, name = self._config_kind(request), request.match_info["name"]
        self.need(request, lambda r: self._config_can_read(r, kind, name))
        index = await block_on_index(request, self.store, lambda: self.config.index(kind))
        try:
            entry = self.config.get(kind, name)
        except NotFound as exc:
            # Consul sets the query meta before it answers 404 (edges e13, e30, e64).
            return web.Response(status=404, text=str(exc), headers=meta_headers(index))
        return reply(entry, index=index, meta=True)

    async def config_delete(self, request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        self.need(request, lambda r: self._config_can_write(r, kind, name))
        return reply(self.config.delete(kind, name, self._cas(request)))

    # -- ACL ----------------------------------------------------------------------------------

    def _acl_on(self) -> None:
        if not self.acl.enabled:
            raise ServerError("ACL support disabled")

    def _acl_need(self, request: web.Request, write: bool) -> None:
        """acl:read or acl:write; a refused read carries the query meta, as Consul's does."""
        self._acl_on()
        r = self.rights(request)
        if not (r.acl_write() if write else r.acl_read()):
            raise Forbidden("Permission denied")

    def _acl_read_reply(self, request: web.Request, read: Callable[[], Any]) -> web.Response:
        """An ACL read: 403s (a missing right, an unknown ID) carry the query meta too."""
        headers = {
            "X-Consul-Index": str(self.acl.index()),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
        }
        try:
            self._acl_need(request, write=False)
            body = read()
        except Forbidden as exc:
            return web.Response(status=403, text=str(exc), headers=headers)
        return reply(body, index=self.acl.index(), meta=True)

    async def acl_token_create(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(self.acl.create(await read_json(request)))

    async def acl_token_update(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(self.acl.update(request.match_info["id"], await read_json(request)))

    async def acl_token_self(self, request: web.Request) -> web.Response:
        self._acl_on()
        return reply(self.acl.self_token(request), index=self.acl.index(), meta=True)

    async def acl_token_get(self, request: web.Request) -> web.Response:
        def read() -> dict[str, Any]:
            tok = self.acl.get(request.match_info["id"])
            if not self.rights(request).acl_write():
                tok["SecretID"] = "<hidden>"  # acl:read alone sees no secrets (Consul's filter)
            return tok

        return self._acl_read_reply(request, read)

    async def acl_token_delete(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        self.acl.delete(request.match_info["id"], request_token(request))
        return reply(True)

    async def acl_tokens(self, request: web.Request) -> web.Response:
        policy = request.query.get("policy", "")
        return self._acl_read_reply(request, lambda: self.acl.listing(policy))

    async def acl_policy_create(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(self.acl.policy_create(await read_json(request)))

    async def acl_policy_update(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(self.acl.policy_update(request.match_info["id"], await read_json(request)))

    async def acl_policy_get(self, request: web.Request) -> web.Response:
        return self._acl_read_reply(request, lambda: self.acl.policy_get(request.match_info["id"]))

    async def acl_policy_by_name(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return self._acl_read_reply(request, lambda: self.acl.policy_by_name(name))

    async def acl_policy_delete(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        self.acl.policy_delete(request.match_info["id"])
        return reply(True)

    async def acl_policies(self, request: web.Request) -> web.Response:
        return self._acl_read_reply(request, self.acl.policy_listing)
