# SPDX-License-Identifier: MPL-2.0
"""The ACL API: `/v1/acl/token*` and `/v1/acl/polic*`, answered only with ACLs on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from meshkit_tools.devagent.acl import Forbidden, request_token
from meshkit_tools.devagent.http import Area, Route, ServerError, read_json, reply


class ACLAPI(Area):
    def routes(self) -> list[Route]:
        return [
            Route("PUT", "/v1/acl/token", self.acl_token_create),
            Route("GET", "/v1/acl/token/self", self.acl_token_self),
            Route("GET", "/v1/acl/token/{id}", self.acl_token_get),
            Route("DELETE", "/v1/acl/token/{id}", self.acl_token_delete),
            Route("GET", "/v1/acl/tokens", self.acl_tokens),
            Route("PUT", "/v1/acl/token/{id}", self.acl_token_update),
            Route("PUT", "/v1/acl/policy", self.acl_policy_create),
            Route("GET", "/v1/acl/policy/name/{name}", self.acl_policy_by_name),
            Route("GET", "/v1/acl/policy/{id}", self.acl_policy_get),
            Route("PUT", "/v1/acl/policy/{id}", self.acl_policy_update),
            Route("DELETE", "/v1/acl/policy/{id}", self.acl_policy_delete),
            Route("GET", "/v1/acl/policies", self.acl_policies),
        ]

    def _acl_on(self) -> None:
        if not self.agent.acl.enabled:
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
            "X-Consul-Index": str(self.agent.acl.index()),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
        }
        try:
            self._acl_need(request, write=False)
            body = read()
        except Forbidden as exc:
            return web.Response(status=403, text=str(exc), headers=headers)
        return reply(body, index=self.agent.acl.index(), meta=True)

    async def acl_token_create(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(self.agent.acl.create(await read_json(request)))

    async def acl_token_update(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(self.agent.acl.update(request.match_info["id"], await read_json(request)))

    async def acl_token_self(self, request: web.Request) -> web.Response:
        self._acl_on()
        return reply(self.agent.acl.self_token(request), index=self.agent.acl.index(), meta=True)

    async def acl_token_get(self, request: web.Request) -> web.Response:
        def read() -> dict[str, Any]:
            tok = self.agent.acl.get(request.match_info["id"])
            if not self.rights(request).acl_write():
                tok["SecretID"] = "<hidden>"  # acl:read alone sees no secrets (Consul's filter)
            return tok

        return self._acl_read_reply(request, read)

    async def acl_token_delete(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        self.agent.acl.delete(request.match_info["id"], request_token(request))
        return reply(True)

    async def acl_tokens(self, request: web.Request) -> web.Response:
        policy = request.query.get("policy", "")
        return self._acl_read_reply(request, lambda: self.agent.acl.listing(policy))

    async def acl_policy_create(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(self.agent.acl.policy_create(await read_json(request)))

    async def acl_policy_update(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        return reply(
            self.agent.acl.policy_update(request.match_info["id"], await read_json(request))
        )

    async def acl_policy_get(self, request: web.Request) -> web.Response:
        return self._acl_read_reply(
            request, lambda: self.agent.acl.policy_get(request.match_info["id"])
        )

    async def acl_policy_by_name(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return self._acl_read_reply(request, lambda: self.agent.acl.policy_by_name(name))

    async def acl_policy_delete(self, request: web.Request) -> web.Response:
        self._acl_need(request, write=True)
        self.agent.acl.policy_delete(request.match_info["id"])
        return reply(True)

    async def acl_policies(self, request: web.Request) -> web.Response:
        return self._acl_read_reply(request, self.agent.acl.policy_listing)
