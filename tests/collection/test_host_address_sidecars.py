# SPDX-License-Identifier: MPL-2.0
"""Issue 12 acceptance: sidecars bound to a host address pass their checks on a dev agent that
runs checks exactly as Consul 1.7 does, when registered the way meshkit renders them.

Two hosts' worth of topology on one dev agent, each "host" a 127.0.0.x address other than
127.0.0.1: `web` on 127.0.0.2 (registered with `sidecar_service`, as the mesh_service role does)
and `db` on 127.0.0.3 (registered as a standalone `connect-proxy`, consul_service's other form).
Both apps listen on 127.0.0.1 only (the loopback rule). The registrations are the bodies
mesh_render produces from a mesh model; the proxies are real `meshkit-proxy -sidecar-for`
processes with real TLS between them. Consul 1.7's default check would dial 127.0.0.1:<port>,
where nothing listens, so this passes only with the checks meshkit renders.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils import consul_api as module_api
from ansible_collections.meshkit.connect.plugins.module_utils.consul_services import (
    desired_view,
    read_view,
    register,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import Mesh, parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    agent_parent_registration,
    agent_proxy_registration,
    agent_registration,
    intention_body,
)
from tests.support.devagent import DevAgent
from tests.support.echo import App, echo
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.waits import wait_until

HOSTS = {"web": "127.0.0.2", "db": "127.0.0.3"}


def model(apps: dict[str, App], ports: dict[str, int]) -> Mesh:
    return parse_mesh(
        {
            "meshkit_datacenter": "dc1",
            "meshkit_intentions": [{"source": "web", "destination": "db", "action": "allow"}],
            "meshkit_services": [
                {
                    "name": "db",
                    "port": apps["db"].port,
                    "sidecar": {"port": ports["db"], "address": HOSTS["db"]},
                },
                {
                    "name": "web",
                    "port": apps["web"].port,
                    "sidecar": {
                        "port": ports["web"],
                        "address": HOSTS["web"],
                        "upstreams": [
                            {"destination_name": "db", "local_bind_port": ports["upstream"]}
                        ],
                    },
                },
            ],
        },
        source="test",
    )


def _sidecar_checks(agent: DevAgent, sidecar_id: str) -> list[dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = agent.ok("GET", "/v1/agent/checks")
    return [c for c in checks.values() if c["ServiceID"] == sidecar_id]


def test_host_address_sidecars_pass_checks_are_discoverable_and_carry_traffic(
    agent: DevAgent, tmp_path: Path
) -> None:
    apps = {name: App(name) for name in HOSTS}
    ports = {"web": free_port(), "db": free_port(), "upstream": free_port()}
    proxies: list[ProxyProcess] = []
    try:
        mesh = model(apps, ports)
        db, web = mesh.service("db"), mesh.service("web")
        assert db is not None and web is not None
        agent.register(agent_registration(web))  # sidecar_service form
        agent.register(agent_parent_registration(db))  # standalone connect-proxy form
        agent.register(agent_proxy_registration(db))
        for i in mesh.intentions:
            agent.ok("POST", "/v1/connect/intentions", intention_body(i))
        for name in HOSTS:
            proxy = ProxyProcess(
                tmp_path, name, ["-sidecar-for", name], {"CONSUL_HTTP_ADDR": agent.address}
            )
            proxies.append(proxy.start())
            proxy.wait_ready()

        for name, host in HOSTS.items():
            sidecar = f"{name}-sidecar-proxy"
            wait_until(
                lambda s=sidecar: all(c["Status"] == "passing" for c in _sidecar_checks(agent, s)),
                15,
                what=f"{sidecar} checks passing",
            )
            checks = _sidecar_checks(agent, sidecar)
            assert sorted(c["Name"] for c in checks) == [
                f"Connect Sidecar Aliasing {name}",
                "Connect Sidecar Listening",
            ]
            listening = next(c for c in checks if c["Type"] == "tcp")
            assert listening["Output"] == f"TCP connect {host}:{ports[name]}: Success"
            _, _, found = agent.get(f"/v1/health/connect/{name}?passing=1")
            assert [(e["Service"]["Address"], e["Service"]["Port"]) for e in found] == [
                (host, ports[name])
            ]
        assert echo(ports["upstream"], b"through the mesh") == b"db:through the mesh"
        assert apps["db"].accepted >= 1
    finally:
        for proxy in proxies:
            proxy.stop(timeout=5)
        for app in apps.values():
            app.close()


def test_a_sidecar_left_with_consul_defaults_is_registered_again(agent: DevAgent) -> None:
    """A host-address sidecar registered before the explicit checks (Consul's default dials
    127.0.0.1) reads as changed, and one registration later it passes and reads unchanged."""
    app = App("web")
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.4", port))  # stands in for meshkit-proxy on the host address
    listener.listen(16)
    try:
        web = parse_mesh(
            {"meshkit_services": [{"name": "web", "port": app.port,
                                   "sidecar": {"port": port, "address": "127.0.0.4"}}]},
            source="test",
        ).services[0]  # fmt: skip
        old = agent_registration(web)
        del old["Connect"]["SidecarService"]["Checks"]  # what an older meshkit rendered
        agent.register(old)
        conn = module_api.Connection.from_params({"host": "127.0.0.1", "port": agent.port}, {})
        client = module_api.ConsulClient(conn)

        def listening_output() -> str:
            found = _sidecar_checks(agent, "web-sidecar-proxy")
            return next(str(c["Output"]) for c in found if c["Type"] == "tcp")

        wait_until(lambda: listening_output() != "", 10, what="the default check ran")
        assert listening_output() == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
        have = read_view(client, "web", web)
        assert have is not None and have != desired_view(web)
        assert have["Connect"]["SidecarService"]["Checks"] == [
            {"Name": "Connect Sidecar Listening", "TCP": f"127.0.0.1:{port}"}
        ]
        register(client, web)
        wait_until(
            lambda: listening_output() == f"TCP connect 127.0.0.4:{port}: Success",
            10,
            what="the rendered check passes",
        )
        assert read_view(client, "web", web) == desired_view(web)
    finally:
        listener.close()
        app.close()
