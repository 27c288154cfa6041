# SPDX-License-Identifier: MPL-2.0
"""Bring your own job end to end: web.nomad (the operator's own job, template blocks and all)
is run through `meshkit nomad run` against the Nomad double; the meshkit-proxy task Nomad was
given starts a real meshkit-proxy against the real dev agent and carries traffic."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.support.devagent import DevAgent
from tests.support.echo import App, echo, try_echo
from tests.support.meshkit_cli import meshkit_nomad
from tests.support.nomad_byo_jobs import FAST, JOBS
from tests.support.nomad_double import NomadDouble
from tests.support.nomad_task import materialize
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.waits import wait_until


def test_job_file_native_task_carries_traffic(
    agent: DevAgent, double: NomadDouble, tmp_path: Path
) -> None:
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

        # the mesh model of tests/nomad/jobs with ports free on this machine
        mesh = yaml.safe_load((JOBS / "mesh.yml").read_text())
        web = next(s for s in mesh["meshkit_services"] if s["name"] == "web")
        web["port"] = web_app.port
        ups = web["sidecar"]["upstreams"]
        for up in ups:
            up["local_bind_port"] = free_port()
        (tmp_path / "mesh.yml").write_text(yaml.safe_dump(mesh))
        shutil.copy(JOBS / "web.nomad", tmp_path / "web.nomad")
        proc = meshkit_nomad(
            "run", "--mesh", "mesh.yml", "--job-file", "web.nomad", "--address", double.address,
            *FAST, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr

        group = double.jobs["web"].job["TaskGroups"][0]
        task = next(t for t in group["Tasks"] if t["Name"] == "meshkit-proxy")
        (_tpl,) = task["Templates"]  # one: the proxy's file
        nomad_env = {"NOMAD_IP_mesh": "127.0.0.1", "NOMAD_PORT_mesh": str(free_port())}
        args = materialize(task, tmp_path / "task", nomad_env)
        # the operator's own task and templates reached Nomad as written
        app = next(t for t in group["Tasks"] if t["Name"] == "web")
        assert app["Templates"][0]["EmbeddedTmpl"].startswith('{{ with secret "kv/data/web" }}')

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
            assert echo(port, b"byo") == b"db:byo"
        assert proxy.stop() == 0
    finally:
        for p in proxies:
            p.stop(timeout=5)
        db_app.close()
        web_app.close()
