# SPDX-License-Identifier: MPL-2.0
"""Connect: the CA (roots, leaf certificates, configuration), `/v1/agent/connect/authorize`
and the intentions API."""

from __future__ import annotations

from aiohttp import web

from meshkit.spiffe import SpiffeError, parse_service_uri
from meshkit_tools.devagent.acl import Forbidden
from meshkit_tools.devagent.blocking import block_on_index, min_index, wait_time
from meshkit_tools.devagent.ca import CA
from meshkit_tools.devagent.catalog import BadRequest
from meshkit_tools.devagent.decode import AUTHORIZE, INTENTION
from meshkit_tools.devagent.http import Area, Route, empty, filtered, read_json, reply


class ConnectAPI(Area):
    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/agent/connect/ca/roots", self.ca_roots),
            Route("GET", "/v1/connect/ca/roots", self.ca_roots),
            Route("GET", "/v1/agent/connect/ca/leaf/{service}", self.ca_leaf),
            Route("GET", "/v1/connect/ca/configuration", self.ca_config_get),
            Route("PUT", "/v1/connect/ca/configuration", self.ca_config_put),
            Route("POST", "/v1/agent/connect/authorize", self.authorize),
            Route("GET", "/v1/connect/intentions", self.intentions_list),
            Route("POST", "/v1/connect/intentions", self.intention_create),
            Route("GET", "/v1/connect/intentions/match", self.intentions_match),
            Route("GET", "/v1/connect/intentions/check", self.intentions_check),
            Route("GET", "/v1/connect/intentions/exact", self.intention_exact_get),
            Route("PUT", "/v1/connect/intentions/exact", self.intention_exact_put),
            Route("DELETE", "/v1/connect/intentions/exact", self.intention_exact_delete),
            Route("GET", "/v1/connect/intentions/{id}", self.intention_get),
            Route("PUT", "/v1/connect/intentions/{id}", self.intention_update),
            Route("DELETE", "/v1/connect/intentions/{id}", self.intention_delete),
        ]

    async def ca_roots(self, request: web.Request) -> web.Response:
        index = await block_on_index(request, self.agent.store, self.agent.ca.index)
        return reply(self.agent.ca.roots_json(), index=index, meta=True)

    async def ca_leaf(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        self.need_service_write(request, service)
        want = min_index(request)
        rec = await self.agent.ca.leaf(service, want, wait_time(request) if want > 0 else 0.0)
        return reply(CA.leaf_json(rec), index=rec.modify_index, headers={"X-Cache": "MISS"})

    async def ca_config_get(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.operator_read())
        return reply(self.agent.ca.config_json())

    async def ca_config_put(self, request: web.Request) -> web.Response:
        self.need(request, lambda r: r.operator_write())
        self.agent.ca.set_config(await read_json(request))
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
        allowed, reason = self.agent.intentions.decide(peer.service, target)
        return reply({"Authorized": allowed, "Reason": reason}, headers={"X-Cache": "MISS"})

    def _intentions_read(self, request: web.Request, destination: str) -> None:
        self.need(request, lambda r: r.intention_read(destination))

    def _intention_write(self, request: web.Request, *destinations: str) -> None:
        """intention:write on every destination named (Consul checks old and new)."""
        self.need(request, lambda r: all(r.intention_write(d) for d in destinations))

    async def intentions_list(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        index = await block_on_index(request, self.agent.store, self.agent.intentions.index)
        rows = [
            i for i in self.agent.intentions.listing() if r.intention_read(i["DestinationName"])
        ]
        return reply(filtered(request, rows), index=index, meta=True)

    async def intention_create(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request, INTENTION)
        if not r.intention_write(str(body.get("DestinationName") or "")):
            raise Forbidden("Permission denied")
        return reply({"ID": self.agent.intentions.create(body)})

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
        await block_on_index(request, self.agent.store, self.agent.intentions.index)
        # No query meta, and `null` for a name nothing matches (edges e54, e55).
        return reply({n: self.agent.intentions.match(by, n) or None for n in names})

    async def intentions_check(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        if not src or not dst:
            raise BadRequest("required query parameter 'source' and 'destination' not set")
        self.need(request, lambda r: r.service_read(dst))
        allowed, _ = self.agent.intentions.decide(src, dst)
        return reply({"Allowed": allowed})

    async def intention_exact_get(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        self._intentions_read(request, dst)
        return reply(self.agent.intentions.exact(src, dst))

    async def intention_exact_put(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        self._intention_write(request, dst)
        if not src or not dst:
            raise BadRequest("required query parameter 'source' and 'destination' not set")
        self.agent.intentions.upsert_exact(src, dst, await read_json(request, INTENTION))
        return reply(True)

    async def intention_exact_delete(self, request: web.Request) -> web.Response:
        src, dst = request.query.get("source", ""), request.query.get("destination", "")
        self._intention_write(request, dst)
        ixn = self.agent.intentions.exact(src, dst)
        self.agent.intentions.delete(ixn["ID"])
        return reply(True)

    async def intention_get(self, request: web.Request) -> web.Response:
        ixn = self.agent.intentions.get(request.match_info["id"])
        self._intentions_read(request, ixn["DestinationName"])
        return reply(ixn)

    async def intention_update(self, request: web.Request) -> web.Response:
        ixn_id = request.match_info["id"]
        self.rights(request)
        body = await read_json(request, INTENTION)
        old = self.agent.intentions.get(ixn_id)
        self._intention_write(
            request, old["DestinationName"], str(body.get("DestinationName") or "")
        )
        self.agent.intentions.update(ixn_id, body)
        return reply({"ID": ixn_id})

    async def intention_delete(self, request: web.Request) -> web.Response:
        self.rights(request)
        old = self.agent.intentions.get(request.match_info["id"])
        self._intention_write(request, old["DestinationName"])
        self.agent.intentions.delete(request.match_info["id"])
        return reply(True)
