# SPDX-License-Identifier: MPL-2.0
"""Contract test: replay the recorded Consul 1.7.14 session against the dev-agent.

Every request in `fixtures/consul-1.7.14` (and the steps that led to it) is sent in the
recorded order; each response is compared with the recorded one on status, the Consul
headers, and the JSON shape (same keys, same types, same nesting). Values that naturally
differ (IDs, indexes, times, certificates, node names, ports) are not compared.
Deliberate deviations are listed in DEVIATIONS with the reason.
"""

from __future__ import annotations

import http.server
import json
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.devagent import DevAgent

FIXTURES = Path("/work/shared/fixtures/consul-1.7.14")
REQUESTS = FIXTURES / "requests"
RECORDED_TD = "1aa78cb5-7ff4-9f1e-e2d1-b104afeec934"

# path (dotted, `[]` for list elements) -> why we differ on purpose.
DEVIATIONS: dict[str, str] = {
    "01.DebugConfig": "Consul dumps ~200 runtime settings; we expose the ones that exist here "
    "(ports, addresses, ACLs, sidecar range, data dir) and not Raft/DNS/TLS knobs we do not have",
    "01.Stats": "Go runtime, Raft and Serf internals have no counterpart in a one-process agent",
    "01.xDS.SupportedProxies.envoy[]": "no Envoy support is claimed: the list is empty",
}
# Headers compared by presence (values are checked for form, not equality).
CONSUL_HEADERS = (
    "X-Consul-Index",
    "X-Consul-Knownleader",
    "X-Consul-Lastcontact",
    "X-Consul-Effective-Consistency",
    "X-Consul-Contenthash",
    "X-Consul-Reason",
    "Content-Type",
)
HEADER_DEVIATIONS = {
    "X-Cache": "the agent cache is not modelled; leaf and authorize send X-Cache: MISS without Age",
}


def shape_diff(recorded: Any, ours: Any, path: str, out: list[str]) -> None:
    if path in DEVIATIONS:
        return
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            out.append(f"{path}: recorded object, got {type(ours).__name__}")
            return
        for key in recorded.keys() - ours.keys():
            if f"{path}.{key}" not in DEVIATIONS:
                out.append(f"{path}.{key}: missing")
        for key in ours.keys() - recorded.keys():
            if f"{path}.{key}" not in DEVIATIONS:
                out.append(f"{path}.{key}: extra")
        for key in recorded.keys() & ours.keys():
            shape_diff(recorded[key], ours[key], f"{path}.{key}", out)
    elif isinstance(recorded, list):
        if not isinstance(ours, list):
            out.append(f"{path}: recorded list, got {type(ours).__name__}")
            return
        if recorded and ours:
            for item in ours:
                shape_diff(recorded[0], item, f"{path}[]", out)
        elif recorded and not ours and f"{path}[]" not in DEVIATIONS:
            out.append(f"{path}: recorded non-empty list, got []")
    else:
        kinds = {bool: "bool", int: "number", float: "number", str: "string", type(None): "null"}
        if kinds.get(type(recorded)) != kinds.get(type(ours)):
            out.append(f"{path}: recorded {kinds.get(type(recorded))}, got {kinds.get(type(ours))}")


def recorded_headers(step: str) -> tuple[int, dict[str, str]]:
    lines = (FIXTURES / f"{step}.headers").read_text().splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().title()] = v.strip()
    return status, headers


def recorded_body(step: str) -> Any:
    path = FIXTURES / f"{step}.json"
    return json.loads(path.read_text()) if path.exists() else None


def free_port_pair() -> int:
    for _ in range(200):
        base = random.randint(30000, 60000)
        socks = []
        try:
            for p in (base, base + 1):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free consecutive port pair")


class Apps:
    """The two stand-in apps of the recording: an HTTP `web` and a TCP `redis`."""

    def __init__(self) -> None:
        class Hello(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"hello from WEB app\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        self.web_port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.redis = socket.socket()
        self.redis.bind(("127.0.0.1", 0))
        self.redis.listen(16)
        self.redis_port = self.redis.getsockname()[1]
        self.sidecars: list[socket.socket] = []

    def listen_sidecars(self, base: int) -> None:
        for port in (base, base + 1):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(16)
            self.sidecars.append(s)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        for s in [self.redis, *self.sidecars]:
            s.close()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[DevAgent, Apps, int]]:
    apps = Apps()
    base = free_port_pair()
    agent = DevAgent(
        tmp_path,
        extra_args=["-sidecar-min-port", str(base), "-sidecar-max-port", str(base + 255)],
    )
    agent.start()
    try:
        yield agent, apps, base
    finally:
        agent.stop()
        apps.close()


def test_replay_recorded_session(session: tuple[DevAgent, Apps, int]) -> None:
    agent, apps, base = session
    problems: list[str] = []

    def request_body(name: str) -> bytes:
        text = (REQUESTS / name).read_text()
        text = text.replace("8080", str(apps.web_port)).replace("9090", str(apps.redis_port))
        return text.replace(RECORDED_TD, agent.trust_domain().split(".")[0]).encode()

    def step(name: str, method: str, path: str, raw: bytes | None = None) -> Any:
        status, headers, body = agent.request(method, path, raw=raw)
        want_status, want_headers = recorded_headers(name)
        if status != want_status:
            problems.append(f"{name}: status {status}, recorded {want_status}: {body}")
        ours = {k.title(): v for k, v in headers.items()}
        for h in CONSUL_HEADERS:
            if f"{name[:2]}:{h}" in HEADER_DEVIATIONS:
                continue
            if (h in want_headers) != (h in ours):
                problems.append(f"{name}: header {h} recorded={h in want_headers} ours={h in ours}")
        if "X-Consul-Index" in ours and int(ours["X-Consul-Index"]) < 1:
            problems.append(f"{name}: X-Consul-Index {ours['X-Consul-Index']} < 1")
        for h, v in (("X-Consul-Knownleader", "true"), ("X-Consul-Lastcontact", "0")):
            if h in ours and ours[h] != v:
                problems.append(f"{name}: {h}={ours[h]}")
        if "Content-Type" in ours and ours["Content-Type"] != want_headers.get("Content-Type"):
            problems.append(f"{name}: Content-Type {ours['Content-Type']}")
        recorded = recorded_body(name)
        if recorded is not None:
            shape_diff(recorded, body, name[:2], problems)
        return body

    step("01-agent-self", "GET", "/v1/agent/self")
    step("02-connect-ca-roots", "GET", "/v1/agent/connect/ca/roots")
    step("03-register-web-snakecase", "PUT", "/v1/agent/service/register", request_body("web.json"))
    step(
        "04-register-redis-camelcase",
        "PUT",
        "/v1/agent/service/register",
        request_body("redis.json"),
    )
    step("05-agent-service-web-sidecar-proxy", "GET", "/v1/agent/service/web-sidecar-proxy")
    step("06-agent-service-web", "GET", "/v1/agent/service/web")
    step("07-agent-services", "GET", "/v1/agent/services")
    step("08-agent-service-redis-sidecar-proxy", "GET", "/v1/agent/service/redis-sidecar-proxy")
    leaf = step("09-connect-ca-leaf-web", "GET", "/v1/agent/connect/ca/leaf/web")
    assert leaf["SerialNumber"] and leaf["Service"] == "web"
    auth = request_body("authorize-web-to-redis.json")
    got = step(
        "10-connect-authorize-web-to-redis-no-intentions",
        "POST",
        "/v1/agent/connect/authorize",
        auth,
    )
    assert got == recorded_body("10-connect-authorize-web-to-redis-no-intentions")
    ixn = step(
        "11-intention-create-deny-web-redis",
        "POST",
        "/v1/connect/intentions",
        request_body("intention-deny.json"),
    )
    got = step(
        "12-connect-authorize-web-to-redis-denied", "POST", "/v1/agent/connect/authorize", auth
    )
    recorded_reason = recorded_body("12-connect-authorize-web-to-redis-denied")["Reason"]
    assert got["Reason"] == recorded_reason.replace(
        "b17471f9-3055-f147-cf68-e8cc4074d6cf", ixn["ID"]
    )
    step(
        "13-intention-update-allow",
        "PUT",
        f"/v1/connect/intentions/{ixn['ID']}",
        request_body("intention-allow.json"),
    )
    got = step(
        "14-connect-authorize-web-to-redis-allowed", "POST", "/v1/agent/connect/authorize", auth
    )
    assert got["Authorized"] is True
    step("15-intentions-list", "GET", "/v1/connect/intentions")
    step("16-intention-match", "GET", "/v1/connect/intentions/match?by=destination&name=redis")
    step("17-intention-check", "GET", "/v1/connect/intentions/check?source=web&destination=redis")
    query = step(
        "18-query-create-nearest-redis",
        "POST",
        "/v1/query",
        request_body("query-nearest-redis.json"),
    )
    agent.wait_for(
        lambda: agent.ok("GET", "/v1/agent/checks")["service:redis"]["Status"] == "passing",
        what="redis check passing",
    )
    assert (
        step("19-query-execute-connect", "GET", f"/v1/query/{query['ID']}/execute?connect=true")[
            "Nodes"
        ]
        == []
    )
    plain = step("20-query-execute-plain", "GET", f"/v1/query/{query['ID']}/execute")
    assert [n["Service"]["ID"] for n in plain["Nodes"]] == ["redis"]
    step("21-query-execute-by-name-connect", "GET", "/v1/query/nearest-redis/execute?connect=true")
    step("22-query-get", "GET", f"/v1/query/{query['ID']}")
    step("23-query-list", "GET", "/v1/query")
    step("24-query-explain", "GET", f"/v1/query/{query['ID']}/explain")
    # The recording started the two sidecar proxies here; stand-in listeners take their ports.
    apps.listen_sidecars(base)
    agent.wait_for(
        lambda: (
            len(agent.ok("GET", "/v1/health/connect/redis?passing")) == 1
            and len(agent.ok("GET", "/v1/health/connect/web?passing")) == 1
        ),
        what="sidecar checks passing",
    )
    step("25-health-connect-redis", "GET", "/v1/health/connect/redis")
    step("26-health-connect-redis-passing", "GET", "/v1/health/connect/redis?passing")
    step("27-health-service-redis", "GET", "/v1/health/service/redis")
    step("28-catalog-connect-redis", "GET", "/v1/catalog/connect/redis")
    after = step(
        "29-query-execute-connect-after-proxies",
        "GET",
        f"/v1/query/{query['ID']}/execute?connect=true",
    )
    assert [n["Service"]["ID"] for n in after["Nodes"]] == ["redis-sidecar-proxy"]
    checks = step("31-agent-checks", "GET", "/v1/agent/checks")
    assert sorted(checks) == sorted(recorded_body("31-agent-checks"))
    step("32-catalog-service-web-sidecar-proxy", "GET", "/v1/catalog/service/web-sidecar-proxy")
    step("33-agent-health-service-name-web", "GET", "/v1/agent/health/service/name/web")
    step("34-connect-ca-configuration", "GET", "/v1/connect/ca/configuration")
    step("35-connect-ca-roots-server", "GET", "/v1/connect/ca/roots")
    services = step("36-catalog-services", "GET", "/v1/catalog/services")
    assert services == recorded_body("36-catalog-services")
    step("37-health-connect-web", "GET", "/v1/health/connect/web")
    step("38-agent-members", "GET", "/v1/agent/members")
    step("39-status-leader", "GET", "/v1/status/leader")
    step("40-health-service-redis-connect-param", "GET", "/v1/health/service/redis?connect=true")

    # What Nomad 0.11 registered for a Connect job: a parent whose sidecar carries opaque
    # Proxy.Config (bind_address/bind_port) and an upstream; compared per service.
    nomad_id = "_nomad-task-c72601ea-2370-9ddc-a0f6-c54db87c87bc-group-api-count-api-9001"
    agent.register(
        {
            "ID": nomad_id,
            "Name": "count-api",
            "Port": 9001,
            "Address": "127.0.0.1",
            "Meta": {"external-source": "nomad"},
            "Connect": {
                "SidecarService": {
                    "Port": base + 2,
                    "Proxy": {
                        "Config": {"bind_address": "0.0.0.0", "bind_port": base + 2},
                        "Upstreams": [{"DestinationName": "count-db", "LocalBindPort": 5432}],
                    },
                }
            },
        }
    )
    ours = agent.ok("GET", "/v1/agent/services")
    recorded = recorded_body("c41-nomad-consul-agent-services")
    for sid in (nomad_id, nomad_id + "-sidecar-proxy"):
        shape_diff(recorded[sid], ours[sid], f"c41.{sid}", problems)
    step("c42-nomad-health-connect-count-api", "GET", "/v1/health/connect/count-api")

    assert problems == [], "\n".join(problems)
