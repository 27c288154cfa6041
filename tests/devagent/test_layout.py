# SPDX-License-Identifier: MPL-2.0
"""The dev agent's shape: no import circle among its modules, and a route table in which every
endpoint reaches its own handler (a literal path such as `/v1/acl/token/self` is not
swallowed by an `{id}` pattern listed before it)."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import meshkit_tools.devagent as package
from meshkit_tools.devagent import main, routes

PACKAGE = package.__name__
SOURCES = Path(package.__file__).parent


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules of this package a file imports when it runs (lazy imports included, imports
    under `if TYPE_CHECKING:` left out)."""
    found: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found.update(f"{PACKAGE}.{alias.name}" for alias in node.names)
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
        pending.extend(ast.iter_child_nodes(node))
    return found


def _import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(SOURCES.glob("*.py")):
        module = PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"
        graph[module] = _runtime_imports(ast.parse(path.read_text())) - {module}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    circles: list[list[str]] = []
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                circles.append([*path[path.index(imported) :], imported])
            elif imported not in done:
                walk(imported, [*path, imported])
        done.add(module)

    for module in graph:
        walk(module, [module])
    return circles


def test_no_import_circle_in_the_dev_agent() -> None:
    graph = _import_graph()
    assert f"{PACKAGE}.routes" in graph[f"{PACKAGE}.server"]  # the graph was read
    assert _circles(graph) == []


def test_handler_files_do_not_import_the_agent() -> None:
    graph = _import_graph()
    handlers = [m for m in graph if m.rsplit(".", 1)[1].startswith("api_")]
    assert len(handlers) >= 6
    for module in [*handlers, f"{PACKAGE}.http", f"{PACKAGE}.routes"]:
        assert f"{PACKAGE}.server" not in graph[module], module


async def _answering_route(app: web.Application, method: str, url: str) -> str:
    match = await app.router.resolve(make_mocked_request(method, url, app=app))
    return f"{match.route.method} {match.route.resource.canonical if match.route.resource else ''}"


def test_every_route_reaches_its_own_handler() -> None:
    args = main.parser().parse_args(["-http-addr", "127.0.0.1:0", "-node", "n1"])
    agent, _, _ = main.build(args)
    try:
        app = agent.app()
        table = routes.table(agent)
        assert len(table) > 60
        for method, path, _ in table:
            url = re.sub(r"\{[a-z]+\}", "sample-7", path)
            answering = asyncio.run(_answering_route(app, method, url))
            assert answering == f"{method} {path}", f"{method} {url} is answered by {answering}"
        # aiohttp before 3.10 tries the routes in order, so a pattern must not come first.
        for at, (method, path, _) in enumerate(table):
            for earlier_method, earlier_path, _ in table[:at]:
                pattern = re.sub(r"\{[a-z]+\}", "[^/]+", earlier_path)
                shadowed = earlier_method == method and re.fullmatch(pattern, path)
                assert not shadowed, f"{method} {earlier_path} is listed before {path}"
    finally:
        agent.store.close()
