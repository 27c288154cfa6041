# SPDX-License-Identifier: MPL-2.0
"""HTTP checks, DeregisterCriticalServiceAfter, and a crash (SIGKILL) losing nothing."""

from __future__ import annotations

import http.server
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.devagent import DevAgent


@pytest.fixture
def http_app() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"app says hi"
            self.send_response(state["code"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/health"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_http_check_follows_the_status_code(dev_agent: DevAgent, http_app: dict[str, Any]) -> None:
    dev_agent.register(
        {
            "Name": "web",
            "Port": 80,
            "Check": {"CheckID": "web-http", "HTTP": http_app["url"], "Interval": "10s"},
        }
    )

    def check() -> Any:
        return dev_agent.ok("GET", "/v1/agent/checks")["web-http"]

    dev_agent.wait_for(lambda: check()["Status"] == "passing", what="http check passing")
    assert check()["Output"].startswith(f"HTTP GET {http_app['url']}: 200 OK Output: app says hi")
    http_app["code"] = 429
    dev_agent.wait_for(lambda: check()["Status"] == "warning", what="http check warning")
    status, headers, _ = dev_agent.get("/v1/agent/health/service/name/web")
    assert (status, headers["X-Consul-Reason"]) == (429, "warning")
    http_app["code"] = 500
    dev_agent.wait_for(lambda: check()["Status"] == "critical", what="http check critical")
    assert dev_agent.get("/v1/agent/health/service/id/web")[0] == 503


def test_deregister_critical_service_after(dev_agent: DevAgent) -> None:
    dev_agent.register(
        {
            "Name": "flaky",
            "Port": 1,
            "Connect": {"SidecarService": {}},
            "Check": {"TTL": "30s", "DeregisterCriticalServiceAfter": "1s"},
        }
    )
    dev_agent.ok("PUT", "/v1/agent/check/fail/service:flaky")
    dev_agent.wait_for(
        lambda: dev_agent.ok("GET", "/v1/agent/services") == {},
        timeout=20,
        what="critical service reaped with its sidecar",
    )


def test_sigkill_loses_nothing(tmp_path: Path) -> None:
    agent = DevAgent(tmp_path)
    with agent:
        agent.register({"Name": "db", "Port": 5432, "Connect": {"SidecarService": {}}})
        agent.ok(
            "POST",
            "/v1/connect/intentions",
            {"SourceName": "web", "DestinationName": "db", "Action": "allow"},
        )
        leaf = agent.ok("GET", "/v1/agent/connect/ca/leaf/db")
        services = agent.ok("GET", "/v1/agent/services")
        td = agent.trust_domain()
        assert agent.process is not None
        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait(10)
        agent.process = None
        agent.start()
        assert agent.ok("GET", "/v1/agent/services") == services
        assert agent.trust_domain() == td
        assert (
            agent.ok("GET", "/v1/agent/connect/ca/leaf/db")["SerialNumber"] == leaf["SerialNumber"]
        )
        assert len(agent.ok("GET", "/v1/connect/intentions")) == 1
