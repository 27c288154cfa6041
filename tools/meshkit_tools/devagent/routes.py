# SPDX-License-Identifier: MPL-2.0
"""The route table: every API area's endpoints, in one aiohttp application.

Each area lists its own routes beside its handlers (`api_*.py`); this file only puts them
together. aiohttp before 3.10 tries the routes in the order they were added, so a literal
path such as `/v1/connect/intentions/match` or `/v1/acl/token/self` is listed before the
`{id}` pattern that would also match it (tests/devagent/test_layout.py holds the table to it).
"""

from __future__ import annotations

from aiohttp import web

from meshkit_tools.devagent.api_acl import ACLAPI
from meshkit_tools.devagent.api_agent import AgentAPI
from meshkit_tools.devagent.api_catalog import CatalogAPI
from meshkit_tools.devagent.api_checks import AgentChecksAPI
from meshkit_tools.devagent.api_config import ConfigAPI
from meshkit_tools.devagent.api_connect import ConnectAPI
from meshkit_tools.devagent.api_query import QueryAPI
from meshkit_tools.devagent.http import AgentState, Area, Route, middleware

AREAS: tuple[type[Area], ...] = (
    AgentAPI,
    AgentChecksAPI,
    CatalogAPI,
    ConnectAPI,
    QueryAPI,
    ConfigAPI,
    ACLAPI,
)


def table(agent: AgentState) -> list[Route]:
    """Every route of every area, in registration order."""
    return [route for area in AREAS for route in area(agent).routes()]


def app(agent: AgentState) -> web.Application:
    application = web.Application(middlewares=[middleware(agent)], client_max_size=8 * 1024 * 1024)
    router = application.router
    for method, path, handler in table(agent):
        if method == "GET":
            router.add_get(path, handler)  # aiohttp's add_get answers HEAD as well
        else:
            router.add_route(method, path, handler)
    return application
