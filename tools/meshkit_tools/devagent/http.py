# SPDX-License-Identifier: MPL-2.0
"""What every API area's handlers share: Consul's replies, body reading, `?filter=`, the
middleware that turns our errors into Consul's status codes and texts, and the ACL gates.

The areas see the agent through `AgentState`, a Protocol of the state it wires, so no handler
file imports `server.py` (which imports the route table, which imports the handler files).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from aiohttp import web

from meshkit_tools.devagent.acl import ACL, ACLServerError, Forbidden, Rights
from meshkit_tools.devagent.blocking import BadQuery
from meshkit_tools.devagent.ca import CA
from meshkit_tools.devagent.catalog import BadRequest, Node, NotFound
from meshkit_tools.devagent.checks import CheckRunner
from meshkit_tools.devagent.configentries import ConfigEntries
from meshkit_tools.devagent.decode import DecodeError, Schema, decode
from meshkit_tools.devagent.filters import FilterError, compile_filter
from meshkit_tools.devagent.intentions import Intentions
from meshkit_tools.devagent.queries import Queries
from meshkit_tools.devagent.state import State
from meshkit_tools.devagent.store import Store

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware  # a Protocol in newer aiohttp; only for typing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"


class ServerError(RuntimeError):
    """A 500 with Consul's text."""


class Route(NamedTuple):
    """One row of the route table: an HTTP method, a path pattern and its handler."""

    method: str
    path: str
    handler: Handler


class AgentState(Protocol):
    """The shared state of one dev-agent process, as the API areas read it.

    `http_addr` and `reload_hook` are read on each request: `meshkit dev-agent` sets the
    address it actually bound after the app is built.
    """

    store: Store
    state: State
    ca: CA
    intentions: Intentions
    queries: Queries
    acl: ACL
    runner: CheckRunner
    config: ConfigEntries
    reload_hook: Callable[[], None] | None
    http_addr: str

    @property
    def node(self) -> Node: ...


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


def middleware(agent: AgentState) -> Middleware:
    """Refuse another datacenter, pretty-print on `?pretty`, and map our errors to Consul's
    status codes with the error's text as the body."""

    @web.middleware
    async def consul_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            dc = request.query.get("dc")
            if dc and dc != agent.node.datacenter:
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

    return consul_errors


class Area:
    """One API area's handlers over the shared agent state, with the ACL gates they use.

    A subclass lists its endpoints in `routes()`; `routes.py` puts the areas' lists together.
    """

    def __init__(self, agent: AgentState) -> None:
        self.agent = agent

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def rights(self, request: web.Request) -> Rights:
        return self.agent.acl.rights(request)

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
