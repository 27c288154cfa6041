# SPDX-License-Identifier: MPL-2.0
"""Real `meshkit-proxy` processes in Consul mode, and a two-service mesh on the dev agent.

Everything here is the real thing: the `meshkit dev-agent` process (tests/support/devagent.py),
`meshkit-proxy` processes started the way an operator starts them (`-sidecar-for`), loopback
apps, and TLS between the proxies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.consul_mode.apps import App, free_port, try_echo, wait_until
from tests.support.devagent import DevAgent

ROOT = Path(__file__).resolve().parents[2]


class ProxyProcess:
    """One `meshkit-proxy` child; its log goes to a file under the test's tmp dir."""

    def __init__(
        self, workdir: Path, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.workdir, self.name = workdir, name
        self.admin_port = free_port()
        self.args = [*args, "-admin-bind", f"127.0.0.1:{self.admin_port}", "-log-level", "debug"]
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "proxy"), str(ROOT)])
        for key in list(self.env):
            if key.startswith(("CONSUL_", "CONNECT_")):
                del self.env[key]
        self.env.update(env or {})
        self.log_path = workdir / f"proxy-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxyProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "meshkit.proxy_main", *self.args],
                stdout=log,
                stderr=log,
                env=self.env,
                cwd=self.workdir,
            )
        return self

    def wait_ready(self, timeout: float = 20.0) -> ProxyProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"proxy {self.name} exited with {code}:\n{self.log()[-4000:]}")
            if self.admin("/ready")[0] == 200:
                return self
            time.sleep(0.05)
        raise AssertionError(f"proxy {self.name} not ready after {timeout}s:\n{self.log()[-4000:]}")

    def admin(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from /metrics (full name, e.g. meshkit_proxy_control_plane_reachable)."""
        _, text = self.admin("/metrics")
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
        return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def run_to_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode


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
