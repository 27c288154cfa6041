# SPDX-License-Identifier: MPL-2.0
"""The registration shape, written by one side and read by the other, through the dev agent.

The collection writes proxy registrations (mesh_render) and reads them back (consul_services);
the proxy writes its own (`-register`, consul/register.py) and reads the one it runs from
(consul/registration.py). AnsiballZ lets the two share no code, so these round trips are what
holds the four hands to one shape: a listener or an upstream that one side writes and the other
drops fails here, not in a field report.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils import consul_api as module_api
from ansible_collections.meshkit.connect.plugins.module_utils.consul_services import read_view
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    agent_parent_registration,
    agent_proxy_registration,
    agent_registration,
)
from meshkit.config import DEFAULT_CONNECT_TIMEOUT_MS, UpstreamListener
from meshkit.consul.register import SelfRegistration
from meshkit.consul.registration import Registration, parse_registration
from tests.support.devagent import DevAgent
from tests.support.mesh_examples import good


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevAgent]:
    a = DevAgent(tmp_path_factory.mktemp("agent")).start()
    try:
        yield a
    finally:
        a.stop(timeout=1.0)


def as_the_proxy_reads_it(agent: DevAgent, proxy_id: str) -> Registration:
    status, _, body = agent.get(f"/v1/agent/service/{proxy_id}")
    assert status == 200, body
    return parse_registration(body, proxy_id)


def upstreams(reg: Registration) -> list[tuple[str, str, str, int, float]]:
    return [
        (u.dst_type, u.name, u.bind_host, u.bind_port, u.connect_timeout_ms) for u in reg.upstreams
    ]


WEB_UPSTREAMS = [
    ("service", "db", "127.0.0.1", 9191, DEFAULT_CONNECT_TIMEOUT_MS),
    ("prepared_query", "db-nearest", "127.0.0.1", 9192, 2000.0),
]


def test_a_sidecar_service_the_collection_writes_is_the_proxy_the_proxy_runs(
    agent: DevAgent,
) -> None:
    web = parse_mesh(good(), source="test").service("web")
    agent.register(agent_registration(web))
    reg = as_the_proxy_reads_it(agent, "web-sidecar-proxy")
    assert (reg.service, reg.service_id) == ("web", "web")
    assert reg.public is not None and reg.public.bind_port == 21500
    assert upstreams(reg) == WEB_UPSTREAMS


def test_a_standalone_proxy_the_collection_writes_is_the_proxy_the_proxy_runs(
    agent: DevAgent,
) -> None:
    mesh = good()
    mesh["meshkit_services"][1]["name"] = "shop"  # its own ID on the shared agent
    shop = parse_mesh(mesh, source="test").service("shop")
    agent.register(agent_parent_registration(shop))  # the app alone; its proxy apart
    agent.register(agent_proxy_registration(shop))
    reg = as_the_proxy_reads_it(agent, "shop-sidecar-proxy")
    assert (reg.service, reg.service_id) == ("shop", "shop")
    assert reg.public is not None and reg.public.bind_port == 21500
    assert upstreams(reg) == WEB_UPSTREAMS


def test_the_proxys_own_registration_reads_back_on_both_sides(agent: DevAgent) -> None:
    mine = SelfRegistration(
        service="cart",
        listen_host="127.0.0.1",
        listen_port=21600,
        local_host="127.0.0.1",
        local_port=8080,
        upstreams=(
            UpstreamListener(name="db", bind_port=9301),
            UpstreamListener(name="db-nearest", bind_port=9302, dst_type="prepared_query"),
            UpstreamListener(name="db", bind_port=9303, datacenter="dc2"),
        ),
    )
    agent.register(mine.body())
    reg = as_the_proxy_reads_it(agent, mine.proxy_id)
    assert reg.service == "cart" and reg.public is not None and reg.public.bind_port == 21600
    assert [(u.key, u.bind_port) for u in reg.upstreams] == [
        (u.key, u.bind_port) for u in mine.upstreams
    ]

    conn = module_api.Connection.from_params({"host": "127.0.0.1", "port": agent.port}, {})
    view = read_view(module_api.ConsulClient(conn), mine.proxy_id)
    assert view is not None
    assert (view["ID"], view["Name"], view["Port"], view["Address"]) == (
        "cart-proxy",
        "cart-proxy",
        21600,
        "127.0.0.1",
    )
