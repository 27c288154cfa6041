# SPDX-License-Identifier: MPL-2.0
"""The catalog and health views of services: `/v1/catalog/*` and `/v1/health/*`.

Both filter by the token instead of refusing: what it may not read is left out.
"""

from __future__ import annotations

from aiohttp import web

from meshkit_tools.devagent import catalog as cat
from meshkit_tools.devagent.blocking import block_on_index
from meshkit_tools.devagent.http import Area, Route, filtered, reply, truthy


class CatalogAPI(Area):
    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/catalog/services", self.catalog_services),
            Route("GET", "/v1/catalog/service/{name}", self.catalog_service),
            Route("GET", "/v1/catalog/connect/{name}", self.catalog_connect),
            Route("GET", "/v1/catalog/nodes", self.catalog_nodes),
            Route("GET", "/v1/catalog/datacenters", self.catalog_datacenters),
            Route("GET", "/v1/health/service/{name}", self.health_service),
            Route("GET", "/v1/health/connect/{name}", self.health_connect),
            Route("GET", "/v1/health/checks/{name}", self.health_checks),
        ]

    async def catalog_services(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        index = await block_on_index(request, self.agent.store, self.agent.state.index)
        out: dict[str, list[str]] = {"consul": []} if r.service_read("consul") else {}
        for svc in self.agent.state.services.values():
            if r.service_read(svc.name):
                tags = out.setdefault(svc.name, [])
                tags.extend(t for t in svc.tags if t not in tags)
        return reply(dict(sorted(out.items())), index=index, meta=True, consistency=True)

    def _visible(self, request: web.Request, name: str) -> bool:
        """Catalog and health answers drop what the token may not read (no 403: Consul
        filters the result by service:read and node:read)."""
        r = self.rights(request)
        return r.service_read(name) and r.node_read(self.agent.node.name)

    def _filtered(self, request: web.Request, name: str, connect: bool) -> list[cat.Service]:
        found = self.agent.state.by_name(name, connect=connect)
        tags = request.query.getall("tag", [])
        if tags:
            found = [s for s in found if all(t in s.tags for t in tags)]
        if truthy(request, "passing"):
            found = [s for s in found if self.agent.state.passing(s)]
        return found

    async def _catalog(self, request: web.Request, connect: bool) -> web.Response:
        name = request.match_info["name"]
        visible = self._visible(request, name)
        index = await block_on_index(
            request, self.agent.store, lambda: self.agent.state.name_index_of(name, connect=connect)
        )
        found = self._filtered(request, name, connect) if visible else []
        rows = [cat.catalog_service(self.agent.node, s) for s in found]
        return reply(filtered(request, rows), index=index, meta=True, consistency=True)

    async def catalog_service(self, request: web.Request) -> web.Response:
        return await self._catalog(request, connect=False)

    async def catalog_connect(self, request: web.Request) -> web.Response:
        return await self._catalog(request, connect=True)

    async def catalog_nodes(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        index = await block_on_index(request, self.agent.store, self.agent.state.index)
        n = self.agent.node.render()
        n["TaggedAddresses"] = self.agent.node.tagged()
        rows = [n] if r.node_read(self.agent.node.name) else []
        return reply(rows, index=index, meta=True, consistency=True)

    async def catalog_datacenters(self, request: web.Request) -> web.Response:
        return reply([self.agent.node.datacenter])

    async def _health(self, request: web.Request, connect: bool) -> web.Response:
        name = request.match_info["name"]
        visible = self._visible(request, name)
        index = await block_on_index(
            request, self.agent.store, lambda: self.agent.state.name_index_of(name, connect=connect)
        )
        rows = []
        for svc in self._filtered(request, name, connect) if visible else []:
            rows.append(
                {
                    "Node": self.agent.node.render(),
                    "Service": cat.node_service(svc),
                    "Checks": [
                        cat.render_check(c, self.agent.node.name, svc.tags)
                        for c in self.agent.state.entry_checks(svc)
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
        index = await block_on_index(
            request, self.agent.store, lambda: self.agent.state.name_index_of(name)
        )
        rows = []
        for svc in self.agent.state.by_name(name) if visible else []:
            rows += [
                cat.render_check(c, self.agent.node.name, svc.tags)
                for c in self.agent.state.service_checks(svc.id)
            ]
        return reply(filtered(request, rows), index=index, meta=True, consistency=True)
