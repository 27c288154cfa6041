# SPDX-License-Identifier: MPL-2.0
"""The agent's local checks and health: `/v1/agent/checks`, `/v1/agent/check/*` (register,
deregister, TTL pass/warn/fail/update) and `/v1/agent/health/service/*`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshkit_tools.devagent import catalog as cat
from meshkit_tools.devagent.catalog import BadRequest, NotFound
from meshkit_tools.devagent.decode import CHECK_DEFINITION
from meshkit_tools.devagent.http import (
    Area,
    Handler,
    Route,
    ServerError,
    empty,
    filtered,
    read_json,
    reply,
)


class AgentChecksAPI(Area):
    def routes(self) -> list[Route]:
        table = [
            Route("GET", "/v1/agent/checks", self.agent_checks),
            Route("PUT", "/v1/agent/check/register", self.check_register),
            Route("PUT", "/v1/agent/check/deregister/{id}", self.check_deregister),
        ]
        for verb, status in (("pass", cat.PASSING), ("warn", cat.WARNING), ("fail", cat.CRITICAL)):
            table.append(Route("PUT", f"/v1/agent/check/{verb}/{{id}}", self._ttl_handler(status)))
        table += [
            Route("PUT", "/v1/agent/check/update/{id}", self.check_update),
            Route("GET", "/v1/agent/health/service/name/{name}", self.agent_health_name),
            Route("GET", "/v1/agent/health/service/id/{id}", self.agent_health_id),
        ]
        return table

    async def agent_checks(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        out = {}
        for cid, chk in sorted(self.agent.state.checks.items()):
            svc = self.agent.state.services.get(chk.service_id)
            if chk.service_id and not r.service_read(chk.service_name):
                continue
            if not chk.service_id and not r.node_read(self.agent.node.name):
                continue
            out[cid] = cat.render_check(
                chk, self.agent.node.name, svc.tags if svc else [], agent=True
            )
        return reply(filtered(request, out))

    async def check_register(self, request: web.Request) -> web.Response:
        d = await read_json(request, CHECK_DEFINITION)
        if not d.get("Name"):
            raise BadRequest("Missing check name")
        svc = None
        if d.get("ServiceID"):
            svc = self.agent.state.services.get(d["ServiceID"])
            if svc is None:
                raise BadRequest(f"ServiceID {d['ServiceID']!r} does not exist")
            self.need_service_write(request, svc.name)
        else:
            self.need(request, lambda r: r.node_write(self.agent.node.name))
        chk = self.agent.state.check_from_def(d, d.get("ID") or d.get("CheckID") or d["Name"], svc)
        self.agent.state.add_check(chk)
        return empty()

    async def check_deregister(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        chk = self.agent.state.checks.get(cid)
        if chk is None:
            raise NotFound(
                f"Unknown check ID {cid!r}. Ensure that the check ID is passed, not the check name."
            )
        self._check_write(request, chk)
        self.agent.state.remove_check(cid)
        return empty()

    def _check_write(self, request: web.Request, chk: cat.Check) -> None:
        if chk.service_id:
            self.need_service_write(request, chk.service_name)
        else:
            self.need(request, lambda r: r.node_write(self.agent.node.name))

    def _ttl_handler(self, status: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return self._ttl(request, status, request.query.get("note", ""))

        return handler

    def _ttl(self, request: web.Request, status: str, note: str) -> web.Response:
        cid = request.match_info["id"]
        chk = self.agent.state.checks.get(cid)
        if chk is None:
            raise NotFound(
                f"Unknown check ID {cid!r}. Ensure that the check ID is passed, not the check name."
            )
        self._check_write(request, chk)
        err = self.agent.runner.update_ttl(cid, status, note)
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
        checks = self.agent.state.service_checks(svc.id)
        return {
            "AggregatedStatus": cat.worst([c.status for c in checks]),
            "Service": cat.agent_service(svc),
            "Checks": [
                cat.render_check(
                    c, self.agent.node.name, svc.tags, agent=True, full_definition=True
                )
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
        found = [s for s in self.agent.state.services.values() if s.name == name]
        if not found:
            return web.Response(
                status=404,
                text=f"ServiceName {name} Not Found",
                headers={"X-Consul-Reason": "critical"},
            )
        return self._agent_health(sorted(found, key=lambda s: s.id))

    async def agent_health_id(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        svc = self.agent.state.services.get(sid)
        if svc is None:
            return web.Response(status=404, text=f"ServiceId {sid} not found")
        self.need_service_read(request, svc.name)
        entry = self._health_entry(svc)
        return self._health_reply(entry, entry["AggregatedStatus"])
