# SPDX-License-Identifier: MPL-2.0
"""Central service config on the dev agent, as Consul 1.7.14 applies it (issue 15 item 2).

`-enable-central-service-config` merges `proxy-defaults` and `service-defaults` into sidecar
registrations (the registration's own keys winning), re-merges on every entry change and wakes
blocking queries on the proxies; without the flag (Consul 1.7's default) nothing is merged.
The config endpoints block on `X-Consul-Index` and `GET /v1/config/:kind` takes `?filter=`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.devagent import DevAgent

CENTRAL = ["-enable-central-service-config"]


@pytest.fixture
def central(tmp_path: Path) -> Iterator[DevAgent]:
    with DevAgent(tmp_path / "central", extra_args=CENTRAL) as agent:
        yield agent


def put_entry(agent: DevAgent, entry: dict[str, Any]) -> None:
    assert agent.ok("PUT", "/v1/config", entry) is True


def proxy_of(agent: DevAgent, sid: str) -> dict[str, Any]:
    return dict(agent.ok("GET", f"/v1/agent/service/{sid}")["Proxy"])


class Background:
    """One blocking GET in a thread: its result and how long it took."""

    def __init__(self, agent: DevAgent, path: str) -> None:
        self.result: tuple[int, dict[str, str], Any] | None = None
        self.elapsed = 0.0
        self._thread = threading.Thread(target=self._run, args=(agent, path), daemon=True)
        self._thread.start()
        time.sleep(0.3)  # let the request reach the agent and start waiting

    def _run(self, agent: DevAgent, path: str) -> None:
        started = time.monotonic()
        self.result = agent.get(path, timeout=20)
        self.elapsed = time.monotonic() - started

    def join(self) -> tuple[int, dict[str, str], Any]:
        self._thread.join(20)
        assert self.result is not None, "blocking query never returned"
        return self.result


def test_merge_precedence_and_upstreams(central: DevAgent) -> None:
    agent = central
    put_entry(
        agent,
        {
            "Kind": "proxy-defaults",
            "Name": "global",
            "Config": {
                "local_connect_timeout_ms": 1500,
                "handshake_timeout_ms": 7000,
                "protocol": "tcp",
                "limits": {"max": 10, "min": 1},
            },
            "MeshGateway": {"Mode": "local"},
        },
    )
    put_entry(agent, {"Kind": "service-defaults", "Name": "web", "Protocol": "HTTP2"})
    put_entry(agent, {"Kind": "service-defaults", "Name": "db"})  # no protocol: the global one
    agent.register(
        {
            "Name": "web",
            "ID": "web-1",
            "Port": 8080,
            "Connect": {
                "SidecarService": {
                    "Proxy": {
                        "Config": {
                            "local_connect_timeout_ms": 900,
                            "handshake_timeout_ms": None,
                            "limits": {"max": 99},
                        },
                        "Upstreams": [
                            {"DestinationName": "db", "LocalBindPort": 9191},
                            {"DestinationName": "cache", "LocalBindPort": 9192},
                            {
                                "DestinationType": "prepared_query",
                                "DestinationName": "db",
                                "LocalBindPort": 9193,
                            },
                        ],
                    }
                }
            },
        }
    )
    proxy = proxy_of(agent, "web-1-sidecar-proxy")
    assert proxy["Config"] == {
        "local_connect_timeout_ms": 900,  # the registration wins
        "handshake_timeout_ms": 7000,  # a null in the registration is filled
        "protocol": "http2",  # service-defaults beats proxy-defaults
        "limits": {"max": 99, "min": 1},  # nested maps merge key by key
    }
    assert proxy["MeshGateway"] == {"Mode": "local"}
    db, cache, query = proxy["Upstreams"]
    assert db["Config"] == {"protocol": "tcp"} and db["MeshGateway"] == {"Mode": "local"}
    assert "Config" not in cache  # no service-defaults for cache: nothing merged
    assert "Config" not in query and query["MeshGateway"] == {}  # prepared queries: skipped
    # The catalog and health views carry the same merged block.
    row = agent.ok("GET", "/v1/catalog/service/web-sidecar-proxy")[0]
    assert row["ServiceProxy"]["Config"] == proxy["Config"]
    entry = agent.ok("GET", "/v1/health/connect/web")[0]
    assert entry["Service"]["Proxy"]["Config"] == proxy["Config"]
    # The parent service and a proxy that is not a sidecar are registered as sent.
    assert "Config" not in agent.ok("GET", "/v1/agent/service/web-1").get("Proxy", {})
    agent.register(
        {
            "Name": "gw",
            "Kind": "connect-proxy",
            "Port": 8181,
            "Proxy": {"DestinationServiceName": "web"},
        }
    )
    assert "Config" not in proxy_of(agent, "gw")


def test_entry_change_reaches_registered_proxies_and_wakes_blocking_queries(
    central: DevAgent,
) -> None:
    agent = central
    put_entry(agent, {"Kind": "proxy-defaults", "Name": "global", "Config": {"a": 1}})
    agent.register({"Name": "db", "ID": "db-1", "Port": 5432, "Connect": {"SidecarService": {}}})
    status, headers, body = agent.get("/v1/agent/service/db-1-sidecar-proxy")
    assert body["Proxy"]["Config"] == {"a": 1}
    content_hash = headers["X-Consul-ContentHash"]
    status, headers, _ = agent.get("/v1/health/service/db-sidecar-proxy")
    index = int(headers["X-Consul-Index"])
    by_hash = Background(agent, f"/v1/agent/service/db-1-sidecar-proxy?hash={content_hash}")
    by_index = Background(agent, f"/v1/health/service/db-sidecar-proxy?index={index}&wait=10s")
    put_entry(agent, {"Kind": "proxy-defaults", "Name": "global", "Config": {"a": 2}})
    status, headers, body = by_hash.join()
    assert status == 200 and body["Proxy"]["Config"] == {"a": 2}
    assert headers["X-Consul-ContentHash"] != content_hash and by_hash.elapsed < 5
    status, headers, rows = by_index.join()
    assert int(headers["X-Consul-Index"]) > index and by_index.elapsed < 5
    assert rows[0]["Service"]["Proxy"]["Config"] == {"a": 2}
    row = agent.ok("GET", "/v1/catalog/service/db-sidecar-proxy")[0]
    assert row["ModifyIndex"] > row["CreateIndex"]
    # A service-defaults entry for the destination, then its deletion, apply the same way.
    put_entry(agent, {"Kind": "service-defaults", "Name": "db", "Protocol": "grpc"})
    assert proxy_of(agent, "db-1-sidecar-proxy")["Config"] == {"a": 2, "protocol": "grpc"}
    assert agent.ok("DELETE", "/v1/config/service-defaults/db") == {}
    assert proxy_of(agent, "db-1-sidecar-proxy")["Config"] == {"a": 2}
    assert agent.ok("DELETE", "/v1/config/proxy-defaults/global") == {}
    assert "Config" not in proxy_of(agent, "db-1-sidecar-proxy")


def test_merge_survives_restart_and_follows_the_flag(tmp_path: Path) -> None:
    agent = DevAgent(tmp_path / "restart", extra_args=list(CENTRAL))
    with agent:
        put_entry(agent, {"Kind": "proxy-defaults", "Name": "global", "Config": {"a": 1}})
        agent.register({"Name": "db", "ID": "db-1", "Port": 1, "Connect": {"SidecarService": {}}})
        agent.restart()
        assert proxy_of(agent, "db-1-sidecar-proxy")["Config"] == {"a": 1}
        agent.stop()
        agent.extra_args = []  # central config off: the registration as it was sent
        agent.start()
        assert "Config" not in proxy_of(agent, "db-1-sidecar-proxy")


def test_without_the_flag_nothing_is_merged(dev_agent: DevAgent) -> None:
    """Consul 1.7's default (`enable_central_service_config = false`)."""
    agent = dev_agent
    put_entry(agent, {"Kind": "proxy-defaults", "Name": "global", "Config": {"a": 1}})
    put_entry(agent, {"Kind": "service-defaults", "Name": "db", "Protocol": "http"})
    agent.register({"Name": "db", "ID": "db-1", "Port": 1, "Connect": {"SidecarService": {}}})
    assert "Config" not in proxy_of(agent, "db-1-sidecar-proxy")


def test_config_endpoints_block_on_the_index(central: DevAgent) -> None:
    agent = central
    for path in ("/v1/config/service-defaults", "/v1/config/service-defaults/db"):
        status, headers, _ = agent.get(path)
        index = int(headers["X-Consul-Index"])
        assert headers["X-Consul-KnownLeader"] == "true"
        # Nothing changes: the query returns at `wait` with the same index.
        started = time.monotonic()
        status, headers, _ = agent.get(f"{path}?index={index}&wait=1s")
        assert 0.9 < time.monotonic() - started < 5 and int(headers["X-Consul-Index"]) == index
        waiting = Background(agent, f"{path}?index={index}&wait=10s")
        put_entry(agent, {"Kind": "service-defaults", "Name": "db", "Protocol": path[-2:]})
        status, headers, body = waiting.join()
        assert status == 200 and int(headers["X-Consul-Index"]) > index
        assert waiting.elapsed < 5
        got = body[0] if isinstance(body, list) else body
        assert got["Protocol"] == path[-2:]


def test_config_list_filter(central: DevAgent) -> None:
    agent = central
    for name, protocol in (("api", "http"), ("db", "tcp"), ("web", "http")):
        put_entry(agent, {"Kind": "service-defaults", "Name": name, "Protocol": protocol})
    query = urllib.parse.quote('Protocol == "http"')
    names = [e["Name"] for e in agent.ok("GET", f"/v1/config/service-defaults?filter={query}")]
    assert names == ["api", "web"]
    status, _, body = agent.get("/v1/config/service-defaults?filter=" + urllib.parse.quote("~"))
    assert status == 400 and "Failed to create boolean expression evaluator" in body


def test_config_answers_as_consul_1_7(central: DevAgent) -> None:
    agent = central
    status, _, body = agent.put("/v1/config", {"Kind": "service-defaults", "Name": "db", "X": 1})
    assert status == 400
    assert body == (
        'Bad request: Request decoding failed: 1 error occurred:\n\t* invalid config key "X"\n\n'
    )
    status, _, body = agent.put("/v1/config", {"Name": "db"})
    assert (status, body) == (
        400,
        "Bad request: Request decoding failed: Payload does not contain a kind/Kind key at the "
        "top level",
    )
    assert agent.get("/v1/config/no-such-kind")[::2] == (
        500,
        "invalid config entry kind: no-such-kind",
    )
    # cas on delete is not in Consul 1.7: ignored, the entry goes, the answer is `{}`.
    put_entry(agent, {"Kind": "service-defaults", "Name": "db"})
    assert agent.ok("DELETE", "/v1/config/service-defaults/db?cas=12345") == {}
    assert agent.get("/v1/config/service-defaults/db")[0] == 404
    assert agent.ok("DELETE", "/v1/config/service-defaults/db") == {}  # absent: still {}


def test_managed_proxy_is_accepted_and_ignored(central: DevAgent) -> None:
    """Consul 1.7 decodes `Connect.Proxy` (removed in 1.6) and registers only the service."""
    agent = central
    agent.register(
        {
            "Name": "web2",
            "Port": 8080,
            "Connect": {
                "Proxy": {
                    "exec_mode": "daemon",
                    "Command": ["/usr/bin/meshkit-proxy"],
                    "Config": {"upstreams": [{"destination_name": "redis"}]},
                }
            },
        }
    )
    assert sorted(agent.ok("GET", "/v1/agent/services")) == ["web2"]
    assert "Connect.Proxy (a managed proxy" in agent.log_text()
    status, _, body = agent.put(
        "/v1/agent/service/register",
        {"Name": "web3", "Port": 1, "Connect": {"Proxy": {"Bogus": 1}}},
    )
    assert (status, body) == (400, 'Request decode failed: json: unknown field "Bogus"')


def test_config_dir_sidecars_are_merged_and_stay_merged_across_reload(tmp_path: Path) -> None:
    conf = tmp_path / "consul.d"
    conf.mkdir()
    service = {
        "service": {
            "name": "web",
            "id": "web-1",
            "port": 8080,
            "connect": {"sidecar_service": {"proxy": {"config": {"bind_port": 21500}}}},
        }
    }
    (conf / "web.json").write_text(json.dumps(service))
    with DevAgent(tmp_path / "a", config_dir=conf, extra_args=CENTRAL) as agent:
        assert proxy_of(agent, "web-1-sidecar-proxy")["Config"] == {"bind_port": 21500}
        put_entry(
            agent,
            {"Kind": "proxy-defaults", "Name": "global", "Config": {"bind_port": 1, "x": 2}},
        )
        assert proxy_of(agent, "web-1-sidecar-proxy")["Config"] == {"bind_port": 21500, "x": 2}
        agent.reload()
        assert proxy_of(agent, "web-1-sidecar-proxy")["Config"] == {"bind_port": 21500, "x": 2}
