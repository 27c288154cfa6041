# SPDX-License-Identifier: MPL-2.0
"""The Agent: the state one dev-agent process holds, wired together and served by `app()`.

The routes are in `routes.py`, their handlers in one `api_*.py` file per API area, and the
HTTP plumbing they share in `http.py`; `main.py` runs the process (signals, sockets, DNS).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from meshkit_tools.devagent import routes
from meshkit_tools.devagent.acl import ACL
from meshkit_tools.devagent.ca import CA
from meshkit_tools.devagent.catalog import Node
from meshkit_tools.devagent.central import Resolver
from meshkit_tools.devagent.checks import CheckRunner
from meshkit_tools.devagent.configentries import ConfigEntries
from meshkit_tools.devagent.intentions import Intentions
from meshkit_tools.devagent.queries import Queries
from meshkit_tools.devagent.state import State
from meshkit_tools.devagent.store import Store


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

    @property
    def node(self) -> Node:
        return self.state.node

    def app(self) -> web.Application:
        """The HTTP API over this agent's state: every area's routes, Consul's error replies."""
        return routes.app(self)
