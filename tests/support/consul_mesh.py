# SPDX-License-Identifier: MPL-2.0
"""A two-service mesh on the dev agent, with real `meshkit-proxy` processes in Consul mode.

Everything here is the real thing: the `meshkit dev-agent` process (tests/support/devagent.py),
`meshkit-proxy` processes started the way an operator starts them (`-sidecar-for`), loopback
apps, and TLS between the proxies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.devagent import DevAgent
from tests.support.echo import App, try_echo
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.waits import wait_until


@dataclass
class Mesh:
    """`web` (with a `service` and a `prepared_query` upstream to `api`) and `api`."""

    agent: DevAgent
    workdir: Path
    apps: dict[str, App] = field(default_factory=dict)
    proxies: dict[str, ProxyProcess] = field(default_factory=dict)
    sidecar_ports: dict[str, int] = field(default_factory=dict)
    upstream_ports: dict[str, int] = field(default_factory=dict)
    token: str | None = None

    def web_definition(self, extra_upstreams: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        ups: list[dict[str, Any]] = [
            {"DestinationName": "api", "LocalBindPort": self.upstream_ports["api"]},
            {
                "DestinationType": "prepared_query",
                "DestinationName": "api-q",
                "LocalBindPort": self.upstream_ports["api-q"],
            },
        ]
        return {
            "Name": "web",
            "ID": "web",
            "Port": self.apps["web"].port,
            "Address": "127.0.0.1",
            "Connect": {
                "SidecarService": {
                    "Port": self.sidecar_ports["web"],
                    "Proxy": {"Upstreams": ups + (extra_upstreams or [])},
                }
            },
        }

    def api_definition(
        self, instance: str = "api", sidecar_port: int | None = None
    ) -> dict[str, Any]:
        return {
            "Name": "api",
            "ID": instance,
            "Port": self.apps[instance].port,
            "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": sidecar_port or self.sidecar_ports[instance]}},
        }

    def add_api_instance(self, instance: str) -> ProxyProcess:
        self.apps[instance] = App(instance)
        self.sidecar_ports[instance] = free_port()
        self.agent.register(self.api_definition(instance))
        proxy = self.start_proxy(instance)
        return proxy

    def start_proxy(self, service_id: str, *extra: str) -> ProxyProcess:
        env = {"CONSUL_HTTP_ADDR": self.agent.address}
        if self.token:
            env["CONSUL_HTTP_TOKEN"] = self.token
        proxy = ProxyProcess(self.workdir, service_id, ["-sidecar-for", service_id, *extra], env)
        self.proxies[service_id] = proxy.start()
        return proxy.wait_ready()

    def passing(self, name: str) -> int:
        status, _, body = self.agent.get(f"/v1/health/connect/{name}?passing=1")
        return len(body) if status == 200 and isinstance(body, list) else 0

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop(timeout=5)
        for app in self.apps.values():
            app.close()


def build_mesh(
    agent: DevAgent, workdir: Path, api_args: tuple[str, ...] = (), *, expect_traffic: bool = True
) -> Mesh:
    mesh = Mesh(agent, workdir)
    for name in ("web", "api"):
        mesh.apps[name] = App(name)
        mesh.sidecar_ports[name] = free_port()
    mesh.upstream_ports = {"api": free_port(), "api-q": free_port()}
    agent.register(mesh.api_definition())
    agent.register(mesh.web_definition())
    agent.ok("POST", "/v1/query", {"Name": "api-q", "Service": {"Service": "api"}})
    mesh.start_proxy("api", *api_args)
    mesh.start_proxy("web")
    wait_until(lambda: mesh.passing("api") == 1, 15, what="api sidecar passing")
    if not expect_traffic:  # e.g. a default-deny agent with no intention yet
        return mesh
    for port in mesh.upstream_ports.values():
        wait_until(lambda p=port: try_echo(p), 15, what=f"traffic through :{port}")
    return mesh
