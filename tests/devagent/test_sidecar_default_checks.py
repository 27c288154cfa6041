# SPDX-License-Identifier: MPL-2.0
"""The sidecar checks the dev agent adds and runs are Consul 1.7.14's (issue 12 item 4).

Consul 1.7 (agent/sidecar_service.go, sidecarDefaultChecks): for a `sidecar_service` without
checks, a TCP check "Connect Sidecar Listening" dialling `Proxy.LocalServiceAddress:<port>`
(127.0.0.1 by default), every 10 s, and an alias check "Connect Sidecar Aliasing <service ID>"
(recorded: consul-1.7.14/31-agent-checks.json). It does NOT dial the sidecar's `Address`, so a
proxy that listens only on a host address fails it. A standalone `connect-proxy` registration
gets no checks at all.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.devagent import DevAgent
from tests.support.ports import free_port

RECORDED = Path("/work/shared/fixtures/consul-1.7.14/31-agent-checks.json")


@contextmanager
def listening(host: str, port: int) -> Iterator[None]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    try:
        yield
    finally:
        sock.close()


def _checks(agent: DevAgent, service_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = agent.ok("GET", "/v1/agent/checks")
    return {k: v for k, v in found.items() if v["ServiceID"] == service_id}


def test_default_sidecar_checks_have_consul_17_names_notes_and_types(dev_agent: DevAgent) -> None:
    port = free_port()
    dev_agent.register(
        {
            "Name": "redis",
            "ID": "redis",
            "Port": 9090,
            "Connect": {"SidecarService": {"Port": port}},
        }
    )
    mine = _checks(dev_agent, "redis-sidecar-proxy")
    recorded = {
        k: v
        for k, v in json.loads(RECORDED.read_text()).items()
        if v["ServiceID"] == "redis-sidecar-proxy"
    }
    assert sorted(mine) == sorted(recorded)
    for check_id, want in recorded.items():
        have = mine[check_id]
        for key in ("Name", "Notes", "Type", "ServiceName", "ServiceID"):
            assert have[key] == want[key], (check_id, key)


def test_the_listening_check_dials_local_service_address_not_the_sidecar_address(
    dev_agent: DevAgent,
) -> None:
    port = free_port()
    dev_agent.register(
        {
            "Name": "web",
            "ID": "web",
            "Port": 8080,
            "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": port, "Address": "127.0.0.7"}},
        }
    )
    check = "service:web-sidecar-proxy:1"
    # A proxy bound only to the sidecar's own address: Consul 1.7 dials 127.0.0.1 and fails.
    with listening("127.0.0.7", port):
        dev_agent.wait_for(
            lambda: (
                _checks(dev_agent, "web-sidecar-proxy")[check]["Output"]
                == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
            ),
            what="the Consul 1.7 failure output",
        )
        assert _checks(dev_agent, "web-sidecar-proxy")[check]["Status"] == "critical"
        _, _, body = dev_agent.get("/v1/health/connect/web?passing=1")
        assert body == []
    # Listening where Consul dials it: passing, with Consul's output.
    with listening("127.0.0.1", port):
        dev_agent.wait_for(
            lambda: _checks(dev_agent, "web-sidecar-proxy")[check]["Status"] == "passing",
            what="the listening check to pass",
        )
        assert (
            _checks(dev_agent, "web-sidecar-proxy")[check]["Output"]
            == f"TCP connect 127.0.0.1:{port}: Success"
        )


def test_a_standalone_connect_proxy_gets_no_default_checks(dev_agent: DevAgent) -> None:
    dev_agent.register({"Name": "api", "ID": "api", "Port": 9000})
    dev_agent.register(
        {
            "Kind": "connect-proxy",
            "Name": "api-proxy",
            "ID": "api-proxy",
            "Port": free_port(),
            "Proxy": {"DestinationServiceName": "api", "DestinationServiceID": "api"},
        }
    )
    assert _checks(dev_agent, "api-proxy") == {}
