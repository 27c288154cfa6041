# SPDX-License-Identifier: MPL-2.0
"""Prepared queries: `/v1/query`, with Consul's rules for who sees and writes a query."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshkit_tools.devagent.acl import Forbidden, Rights
from meshkit_tools.devagent.blocking import BadQuery, block_on_index
from meshkit_tools.devagent.decode import QUERY
from meshkit_tools.devagent.http import Area, Route, empty, read_json, reply, truthy
from meshkit_tools.devagent.queries import render as render_query


class QueryAPI(Area):
    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/query", self.query_list),
            Route("POST", "/v1/query", self.query_create),
            Route("GET", "/v1/query/{id}", self.query_get),
            Route("PUT", "/v1/query/{id}", self.query_update),
            Route("DELETE", "/v1/query/{id}", self.query_delete),
            Route("GET", "/v1/query/{id}/execute", self.query_execute),
            Route("GET", "/v1/query/{id}/explain", self.query_explain),
        ]

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
        index = await block_on_index(request, self.agent.store, self.agent.queries.index)
        return reply(
            [
                self._query_shown(r, q)
                for q in self.agent.queries.listing()
                if self._query_visible(r, q)
            ],
            index=index,
            meta=True,
            consistency=True,
        )

    async def query_create(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request, QUERY)
        if not self._query_writable(r, str(body.get("Name") or "")):
            raise Forbidden("Permission denied")
        return reply({"ID": self.agent.queries.create(body)})

    async def query_get(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        q = self.agent.queries.get(request.match_info["id"])
        if not self._query_visible(r, q):
            raise Forbidden("Permission denied")
        return reply(
            [self._query_shown(r, q)], index=self.agent.queries.index(), meta=True, consistency=True
        )

    async def query_update(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        body = await read_json(request, QUERY)
        old = self.agent.queries.get(request.match_info["id"])
        if not (
            self._query_writable(r, str(old.get("Name") or ""))
            and self._query_writable(r, str(body.get("Name") or ""))
        ):
            raise Forbidden("Permission denied")
        self.agent.queries.update(request.match_info["id"], body)
        return empty()

    async def query_delete(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        old = self.agent.queries.get(request.match_info["id"])
        if not self._query_writable(r, str(old.get("Name") or "")):
            raise Forbidden("Permission denied")
        self.agent.queries.delete(request.match_info["id"])
        return empty()

    async def query_execute(self, request: web.Request) -> web.Response:
        q, service = self.agent.queries.resolve(request.match_info["id"])
        # Results are filtered with the query's own token when it has one, else the caller's
        # (no query:read needed to execute): nodes the token may not read are dropped.
        r = self.agent.acl.resolve(q["Token"]) if q.get("Token") else self.rights(request)
        try:
            limit = int(request.query.get("limit", "0") or 0)
        except ValueError:
            raise BadQuery("Invalid limit") from None
        result = self.agent.queries.execute(
            request.match_info["id"], connect=truthy(request, "connect"), limit=limit
        )
        if not (r.service_read(service) and r.node_read(self.agent.node.name)):
            result["Nodes"] = []
        return reply(result, index=1, meta=True, consistency=True)

    async def query_explain(self, request: web.Request) -> web.Response:
        r = self.rights(request)
        q, _ = self.agent.queries.resolve(request.match_info["id"])
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
