# SPDX-License-Identifier: MPL-2.0
"""The Consul connection options over real TLS: verified by default, CA bundle, client
certificate, and the CONSUL_* environment fallbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.ansible_run import run_play
from tests.support.devagent import DevAgent
from tests.support.tls_front import TLSFront, make_tls_files

SERVICE = {"name": "db", "port": 5432}


def task(name: str, **conn: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ignore_errors": True,
        "meshkit.connect.consul_service": {"service": SERVICE, "scheme": "https", **conn},
    }


def test_tls_options(dev_agent: DevAgent, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    client = {"client_cert": str(files.client_cert), "client_key": str(files.client_key)}
    with TLSFront(files, dev_agent.port, require_client_cert=True) as front:
        tasks = [
            task("no ca", **client),
            task("no client cert", ca_path=str(files.ca)),
            task("full", ca_path=str(files.ca), **client),
        ]
        play = run_play(tmp_path / "mtls", tasks, f"127.0.0.1:{front.port}")
        env = {
            "CONSUL_HTTP_ADDR": f"https://127.0.0.1:{front.port}",
            "CONSUL_CACERT": str(files.ca),
            "CONSUL_CLIENT_CERT": str(files.client_cert),
            "CONSUL_CLIENT_KEY": str(files.client_key),
        }
        env_task = {"name": "from env", "meshkit.connect.consul_service": {"service": SERVICE}}
        from_env = run_play(tmp_path / "env", [env_task], "unused:0", extra_env=env,
                            module_defaults={"host": None, "port": None})  # fmt: skip
    assert "CERTIFICATE_VERIFY_FAILED" in play.task("no ca")["msg"]  # verified by default
    assert "cannot reach" in play.task("no client cert")["msg"]  # server demands a client cert
    assert play.task("full")["changed"] and play.task("full")["operation"] == "create"
    assert from_env.returncode == 0, from_env.output
    assert not from_env.task("from env")["changed"]  # same agent, already registered
    with TLSFront(files, dev_agent.port, require_client_cert=False) as front:
        insecure = run_play(tmp_path / "insecure", [
            task("unverified", validate_certs=False, service=dict(SERVICE, tags=["x"])),
        ], f"127.0.0.1:{front.port}")  # fmt: skip
    assert insecure.task("unverified")["changed"]
    assert dev_agent.ok("GET", "/v1/agent/service/db")["Tags"] == ["x"]
