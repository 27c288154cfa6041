# SPDX-License-Identifier: MPL-2.0
"""`-config-dir`: snake_case service files, Consul's `invalid config key`, reload and SIGHUP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.devagent import DevAgent
from tests.support.paths import ROOT

WEB = {
    "service": {
        "name": "web",
        "id": "web-1",
        "port": 8080,
        "address": "127.0.0.1",
        "check": {"name": "web ttl", "ttl": "30s"},
        "connect": {
            "sidecar_service": {
                "proxy": {
                    "local_service_port": 8080,
                    "config": {"local_connect_timeout_ms": 1000},
                    "upstreams": [
                        {"destination_name": "db", "local_bind_port": 9191},
                        {
                            "destination_type": "prepared_query",
                            "destination_name": "db-nearest",
                            "local_bind_port": 9192,
                        },
                    ],
                }
            }
        },
    }
}


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "meshkit_tools.cli",
            "dev-agent",
            "-http-addr",
            "127.0.0.1:0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "proxy"), "PATH": "/usr/bin:/bin"},
    )


def test_config_dir_loads_snake_case_services_and_reloads(tmp_path: Path) -> None:
    conf = tmp_path / "consul.d"
    conf.mkdir()
    (conf / "web.json").write_text(json.dumps(WEB))
    (conf / "more.json").write_text(json.dumps({"services": [{"name": "db", "port": 5432}]}))
    with DevAgent(tmp_path / "a", config_dir=conf) as agent:
        services = agent.ok("GET", "/v1/agent/services")
        assert sorted(services) == ["db", "web-1", "web-1-sidecar-proxy"]
        proxy = services["web-1-sidecar-proxy"]["Proxy"]
        assert proxy["Config"] == {"local_connect_timeout_ms": 1000}
        assert [u["DestinationName"] for u in proxy["Upstreams"]] == ["db", "db-nearest"]
        # PUT /v1/agent/reload: db removed, web changed.
        (conf / "more.json").unlink()
        web = json.loads(json.dumps(WEB))
        web["service"]["port"] = 8081
        (conf / "web.json").write_text(json.dumps(web))
        agent.ok("PUT", "/v1/agent/reload")
        services = agent.ok("GET", "/v1/agent/services")
        assert sorted(services) == ["web-1", "web-1-sidecar-proxy"]
        assert services["web-1"]["Port"] == 8081
        # A bad file refuses the reload with Consul's wording; nothing is half-applied.
        (conf / "bad.json").write_text(json.dumps({"service": {"name": "x", "portt": 1}}))
        status, _, body = agent.put("/v1/agent/reload")
        assert status == 500
        assert "invalid config key service.portt" in body and "bad.json" in body
        assert sorted(agent.ok("GET", "/v1/agent/services")) == ["web-1", "web-1-sidecar-proxy"]
        # SIGHUP re-reads too.
        (conf / "bad.json").write_text(json.dumps({"service": {"name": "cache", "port": 6379}}))
        agent.reload()
        agent.wait_for(
            lambda: "cache" in agent.ok("GET", "/v1/agent/services"), what="SIGHUP reload"
        )


def test_invalid_config_key_refuses_start(tmp_path: Path) -> None:
    conf = tmp_path / "consul.d"
    conf.mkdir()
    bad = {
        "service": {
            "name": "web",
            "connect": {"sidecar_service": {"proxy": {"DestinationServiceName": "web"}}},
        }
    }
    (conf / "web.json").write_text(json.dumps(bad))
    result = run_agent("-config-dir", str(conf))
    assert result.returncode == 2
    assert (
        "invalid config key service.connect.sidecar_service.proxy.DestinationServiceName"
        in result.stderr
    )
    assert "web.json" in result.stderr
    (conf / "web.json").write_text("{not json")
    result = run_agent("-config-dir", str(conf))
    assert result.returncode == 2 and "Error parsing" in result.stderr


def test_non_loopback_bind_needs_a_flag(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshkit_tools.cli", "dev-agent", "-http-addr", "0.0.0.0:8500"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "proxy"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "-allow-non-loopback" in result.stderr


def test_ipv6_loopback_and_clean_exit_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshkit_tools.cli",
            "dev-agent",
            "-http-addr",
            "[::1]:0",
            "-ready-file",
            str(ready),
        ],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "proxy"), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not (ready.exists() and ready.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        address = ready.read_text().strip()
        assert address.startswith("[::1]:")
        with urllib.request.urlopen(f"http://{address}/v1/status/leader", timeout=10) as resp:
            assert json.loads(resp.read()) == "[::1]:8300"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert b"stopped" in err
