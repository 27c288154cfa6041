# SPDX-License-Identifier: MPL-2.0
"""The native pattern end to end: the proxy file Nomad's template block would write, rendered
from the model, runs a real meshkit-proxy against the real dev agent and carries traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import to_api
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)
from tests.support.devagent import DevAgent
from tests.support.echo import App, echo, try_echo
from tests.support.nomad_model import job_settings, mesh_data
from tests.support.nomad_task import materialize
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.waits import wait_until


def render_proxy_file(model: dict[str, Any], task_dir: Path, **nomad_env: str) -> list[str]:
    """Write web's proxy file as Nomad would (consul-template's `env` filled in); the args."""
    api = to_api(build_job(parse_mesh(model), parse_job_settings(job_settings())))
    web = next(g for g in api["TaskGroups"] if g["Name"] == "web")
    task = next(t for t in web["Tasks"] if t["Name"] == "meshkit-proxy")
    (_tpl,) = task["Templates"]  # one: the proxy's file
    return materialize(task, task_dir, nomad_env)


def test_rendered_native_proxy_file_carries_traffic(agent: DevAgent, tmp_path: Path) -> None:
    db_app, web_app = App("db"), App("web")
    env = {"CONSUL_HTTP_ADDR": agent.address}
    proxies: list[ProxyProcess] = []
    try:
        agent.register(
            {
                "Name": "db",
                "ID": "db",
                "Port": db_app.port,
                "Address": "127.0.0.1",
                "Connect": {"SidecarService": {"Port": free_port()}},
            }
        )
        agent.ok("POST", "/v1/query", {"Name": "db-nearest", "Service": {"Service": "db"}})
        db = ProxyProcess(tmp_path, "db", ["-sidecar-for", "db"], env).start()
        proxies.append(db)
        db.wait_ready()

        model = mesh_data("native")
        web = model["meshkit_services"][0]
        web["port"] = web_app.port
        ups = web["sidecar"]["upstreams"]
        # what flags could not carry: a datacenter and per-upstream config, proxy timeouts
        ups[0].update(datacenter="dc1", config={"connect_timeout_ms": 3000})
        ups[0]["local_bind_port"], ups[1]["local_bind_port"] = free_port(), free_port()
        web["sidecar"]["config"] = {"handshake_timeout_ms": 4000}
        args = render_proxy_file(
            model, tmp_path / "task", NOMAD_IP_mesh="127.0.0.1", NOMAD_PORT_mesh=str(free_port())
        )
        proxy = ProxyProcess(tmp_path, "web", args, env).start()
        proxies.append(proxy)
        proxy.wait_ready()
        wait_until(
            lambda: len(agent.ok("GET", "/v1/health/connect/db?passing=1")) == 1,
            15,
            what="db sidecar passing",
        )
        for up in ups:
            port = up["local_bind_port"]
            wait_until(lambda p=port: try_echo(p), 15, what=f"traffic through :{port}")
            assert echo(port, b"native") == b"db:native"
        sent = proxy.metric("meshkit_proxy_upstream_tx_bytes_total", upstream="db")
        assert sent is not None and sent > 0
        assert proxy.stop() == 0
    finally:
        for p in proxies:
            p.stop(timeout=5)
        db_app.close()
        web_app.close()
