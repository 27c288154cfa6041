# SPDX-License-Identifier: MPL-2.0
"""Registration, sidecar expansion, agent views and hash blocking against the real process."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.devagent import DevAgent

REQUESTS = Path("/work/shared/fixtures/consul-1.7.14/requests")


def load(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((REQUESTS / name).read_text())
    return value


def test_snake_and_camel_registrations_expand_sidecars(dev_agent: DevAgent) -> None:
    dev_agent.register(load("web.json"))
    dev_agent.register(load("redis.json"))
    services = dev_agent.ok("GET", "/v1/agent/services")
    assert sorted(services) == ["redis", "redis-sidecar-proxy", "web", "web-sidecar-proxy"]
    web = services["web-sidecar-proxy"]
    assert web["Kind"] == "connect-proxy"
    assert web["Port"] == 21000 and services["redis-sidecar-proxy"]["Port"] == 21001
    assert web["Proxy"]["DestinationServiceName"] == "web"
    assert web["Proxy"]["DestinationServiceID"] == "web"
    assert web["Proxy"]["LocalServiceAddress"] == "127.0.0.1"
    assert web["Proxy"]["LocalServicePort"] == 8080
    ups = web["Proxy"]["Upstreams"]
    assert [u["DestinationType"] for u in ups] == ["service", "prepared_query"]
    checks = dev_agent.ok("GET", "/v1/agent/checks")
    assert checks["service:web-sidecar-proxy:1"]["Name"] == "Connect Sidecar Listening"
    assert checks["service:web-sidecar-proxy:1"]["Type"] == "tcp"
    assert checks["service:web-sidecar-proxy:2"]["Name"] == "Connect Sidecar Aliasing web"
    assert checks["service:web-sidecar-proxy:2"]["Type"] == "alias"


def test_sidecar_copies_tags_and_meta_and_keeps_its_port(dev_agent: DevAgent) -> None:
    body = {
        "Name": "api",
        "ID": "api-1",
        "Port": 9000,
        "Tags": ["v1"],
        "Meta": {"team": "a"},
        "Connect": {"SidecarService": {}},
    }
    dev_agent.register({"Name": "other", "Port": 21000})  # occupies the lowest port
    dev_agent.register(body)
    side = dev_agent.ok("GET", "/v1/agent/service/api-1-sidecar-proxy")
    assert side["Service"] == "api-sidecar-proxy"
    assert side["Tags"] == ["v1"] and side["Meta"] == {"team": "a"}
    assert side["Port"] == 21001
    dev_agent.register(body)
    assert dev_agent.ok("GET", "/v1/agent/service/api-1-sidecar-proxy")["Port"] == 21001
    # Re-registering without sidecar_service removes the sidecar; deregistering the parent too.
    dev_agent.register({k: v for k, v in body.items() if k != "Connect"})
    assert dev_agent.get("/v1/agent/service/api-1-sidecar-proxy")[0] == 404
    dev_agent.register(body)
    dev_agent.ok("PUT", "/v1/agent/service/deregister/api-1")
    assert "api-1-sidecar-proxy" not in dev_agent.ok("GET", "/v1/agent/services")


def test_replace_existing_checks(dev_agent: DevAgent) -> None:
    dev_agent.register(
        {
            "Name": "s",
            "Port": 1,
            "Checks": [{"CheckID": "a", "TTL": "30s"}, {"CheckID": "b", "TTL": "30s"}],
        }
    )
    dev_agent.register({"Name": "s", "Port": 1, "Check": {"CheckID": "a", "TTL": "30s"}})
    assert {"a", "b"} <= set(dev_agent.ok("GET", "/v1/agent/checks"))
    dev_agent.register({"Name": "s", "Port": 1, "Check": {"CheckID": "a", "TTL": "30s"}})
    dev_agent.ok(
        "PUT",
        "/v1/agent/service/register?replace-existing-checks",
        {"Name": "s", "Port": 1, "Check": {"CheckID": "a", "TTL": "30s"}},
    )
    assert set(dev_agent.ok("GET", "/v1/agent/checks")) == {"a"}


def test_bad_registrations_get_consuls_status_and_text(dev_agent: DevAgent) -> None:
    cases = [
        (b"{not json", "Request decode failed"),
        (json.dumps({"Name": "x", "socket_path": "/a"}).encode(), 'unknown field "socket_path"'),
        (json.dumps({"Port": 1}).encode(), "Missing service name"),
        (json.dumps({"Name": "x", "Address": "0.0.0.0"}).encode(), "Invalid service address"),
        (
            json.dumps(
                {
                    "Name": "x",
                    "Connect": {
                        "SidecarService": {
                            "Proxy": {
                                "Upstreams": [
                                    {
                                        "DestinationType": "nope",
                                        "DestinationName": "a",
                                        "LocalBindPort": 1,
                                    }
                                ]
                            }
                        }
                    },
                }
            ).encode(),
            "unknown upstream destination type",
        ),
        (
            json.dumps({"Name": "x", "Connect": {"SidecarService": {"ID": "y"}}}).encode(),
            "cannot specify an ID",
        ),
    ]
    for raw, text in cases:
        status, _, body = dev_agent.request("PUT", "/v1/agent/service/register", raw=raw)
        assert status == 400, (raw, body)
        assert text in body
    assert dev_agent.ok("GET", "/v1/agent/services") == {}


def test_sidecar_port_range_exhaustion(tmp_path: Path) -> None:
    agent = DevAgent(
        tmp_path, extra_args=["-sidecar-min-port", "21000", "-sidecar-max-port", "21001"]
    )
    with agent:
        agent.register({"Name": "a", "Port": 1, "Connect": {"SidecarService": {}}})
        agent.register({"Name": "b", "Port": 2, "Connect": {"SidecarService": {}}})
        status, _, body = agent.put(
            "/v1/agent/service/register",
            {"Name": "c", "Port": 3, "Connect": {"SidecarService": {}}},
        )
        assert status == 400
        assert "none left in the configured range [21000, 21001]" in body
        assert "c" not in agent.ok("GET", "/v1/agent/services")


def test_agent_service_hash_blocking(dev_agent: DevAgent) -> None:
    dev_agent.register({"Name": "web", "Port": 80, "Connect": {"SidecarService": {}}})
    status, headers, body = dev_agent.get("/v1/agent/service/web-sidecar-proxy")
    assert status == 200 and headers["X-Consul-ContentHash"] == body["ContentHash"]
    h = body["ContentHash"]
    start = time.monotonic()
    same = dev_agent.ok("GET", f"/v1/agent/service/web-sidecar-proxy?hash={h}&wait=300ms")
    assert same["ContentHash"] == h and time.monotonic() - start >= 0.29

    def change() -> None:
        time.sleep(0.3)
        dev_agent.register({"Name": "web", "Port": 81, "Connect": {"SidecarService": {}}})

    threading.Thread(target=change).start()
    start = time.monotonic()
    new = dev_agent.ok("GET", f"/v1/agent/service/web-sidecar-proxy?hash={h}&wait=10s")
    assert new["ContentHash"] != h and new["Proxy"]["LocalServicePort"] == 81
    assert time.monotonic() - start < 5
    assert dev_agent.get("/v1/agent/service/nope")[0:3:2] == (404, "unknown service ID: nope")


def test_ttl_and_tcp_checks_run(dev_agent: DevAgent, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    dev_agent.register(
        {
            "Name": "db",
            "Port": port,
            "Address": "127.0.0.1",
            "Checks": [
                {"CheckID": "tcp", "TCP": f"127.0.0.1:{port}", "Interval": "10s"},
                {"CheckID": "ttl", "TTL": "30s"},
            ],
        }
    )

    def checks() -> Any:
        return dev_agent.ok("GET", "/v1/agent/checks")

    dev_agent.wait_for(lambda: checks()["tcp"]["Status"] == "passing", what="tcp check passing")
    assert checks()["ttl"]["Status"] == "critical"
    assert dev_agent.ok("GET", "/v1/health/service/db?passing") == []
    dev_agent.ok("PUT", "/v1/agent/check/pass/ttl?note=fine")
    assert checks()["ttl"]["Output"] == "fine"
    assert len(dev_agent.ok("GET", "/v1/health/service/db?passing")) == 1
    listener.close()
    dev_agent.wait_for(lambda: checks()["tcp"]["Status"] == "critical", what="tcp check critical")
    assert dev_agent.put("/v1/agent/check/pass/nope")[0] == 404


def test_newer_snake_case_aliases_are_accepted_and_rendered(dev_agent: DevAgent) -> None:
    body: dict[str, Any] = {
        "kind": "connect-proxy",
        "name": "p",
        "port": 21500,
        "proxy": {
            "destination_service_name": "web",
            "local_service_socket_path": "/run/web.sock",
            "upstreams": [
                {
                    "destination_name": "db",
                    "local_bind_socket_path": "/run/db.sock",
                    "local_bind_socket_mode": "0600",
                },
                {"destination_name": "cache", "destination_peer": "east", "local_bind_port": 9000},
            ],
        },
    }
    dev_agent.register(body)
    proxy = dev_agent.ok("GET", "/v1/agent/service/p")["Proxy"]
    assert proxy["LocalServiceSocketPath"] == "/run/web.sock"
    assert proxy["Upstreams"][0]["LocalBindSocketPath"] == "/run/db.sock"
    assert proxy["Upstreams"][1]["DestinationPeer"] == "east"
    both = {
        **body,
        "proxy": {
            **body["proxy"],
            "upstreams": [
                {"destination_name": "db", "local_bind_socket_path": "/x", "local_bind_port": 1}
            ],
        },
    }
    status, _, text = dev_agent.put("/v1/agent/service/register", both)
    assert status == 400 and "both LocalBindPort and LocalBindSocketPath" in text
