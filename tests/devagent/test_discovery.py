# SPDX-License-Identifier: MPL-2.0
"""Health/catalog views with index blocking, intentions and authorize, prepared queries."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.devagent import DevAgent


def _serve_sidecar(dev_agent: DevAgent, name: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    dev_agent.register(
        {
            "Name": name,
            "Port": 9,
            "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": port}},
        }
    )


def test_health_connect_passing_follows_the_sidecar_checks(
    dev_agent: DevAgent, listener: socket.socket
) -> None:
    _serve_sidecar(dev_agent, "db", listener)
    rows = dev_agent.ok("GET", "/v1/health/connect/db")
    assert [r["Service"]["ID"] for r in rows] == ["db-sidecar-proxy"]
    assert [c["CheckID"] for c in rows[0]["Checks"]] == [
        "serfHealth",
        "service:db-sidecar-proxy:1",
        "service:db-sidecar-proxy:2",
    ]
    dev_agent.wait_for(
        lambda: len(dev_agent.ok("GET", "/v1/health/connect/db?passing")) == 1,
        what="sidecar passing",
    )
    # The parent turning critical makes the alias check critical: out of ?passing.
    dev_agent.register(
        {
            "Name": "db",
            "Port": 9,
            "Address": "127.0.0.1",
            "Check": {"CheckID": "db-ttl", "TTL": "60s"},
            "Connect": {"SidecarService": {"Port": listener.getsockname()[1]}},
        }
    )
    dev_agent.wait_for(
        lambda: dev_agent.ok("GET", "/v1/health/connect/db?passing") == [],
        what="alias check critical",
    )
    dev_agent.ok("PUT", "/v1/agent/check/pass/db-ttl")
    dev_agent.wait_for(
        lambda: len(dev_agent.ok("GET", "/v1/health/connect/db?passing")) == 1,
        what="alias check passing again",
    )
    flat = dev_agent.ok("GET", "/v1/catalog/connect/db")
    assert flat[0]["ServiceProxy"]["DestinationServiceName"] == "db"
    assert set(dev_agent.ok("GET", "/v1/catalog/services")) == {"consul", "db", "db-sidecar-proxy"}


def test_blocking_watch_wakes_fast_and_times_out_unchanged(dev_agent: DevAgent) -> None:
    _, headers, _ = dev_agent.get("/v1/health/connect/db")
    index = int(headers["X-Consul-Index"])
    assert index >= 1
    start = time.monotonic()
    _, headers, body = dev_agent.get(f"/v1/health/connect/db?index={index}&wait=400ms")
    assert time.monotonic() - start >= 0.39
    assert int(headers["X-Consul-Index"]) == index and body == []

    woke: dict[str, float] = {}

    def watch() -> None:
        _, h, b = dev_agent.get(f"/v1/health/connect/db?index={index}&wait=30s")
        woke["at"] = time.monotonic()
        woke["index"] = int(h["X-Consul-Index"])
        woke["rows"] = len(b)

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    changed = time.monotonic()
    dev_agent.register({"Name": "db", "Port": 5432, "Connect": {"SidecarService": {}}})
    t.join(10)
    # Woken by the change, not by the 30s wait (a few ms when idle; bound kept loose for
    # a loaded machine, this is not a performance check).
    assert woke["at"] - changed < 5
    assert woke["index"] > index and woke["rows"] == 1
    # An index from the future (a server reset) returns at once with the lower index.
    start = time.monotonic()
    _, headers, _ = dev_agent.get(f"/v1/health/connect/db?index={index + 10_000}&wait=20s")
    assert time.monotonic() - start < 2
    assert int(headers["X-Consul-Index"]) < index + 10_000


def test_intentions_and_authorize(dev_agent: DevAgent) -> None:
    td = dev_agent.trust_domain()
    web_uri = f"spiffe://{td}/ns/default/dc/dc1/svc/web"
    auth = {"Target": "redis", "ClientCertURI": web_uri, "ClientCertSerial": "08"}
    assert dev_agent.ok("POST", "/v1/agent/connect/authorize", auth) == {
        "Authorized": True,
        "Reason": "ACLs disabled, access is allowed by default",
    }
    created = dev_agent.ok(
        "POST",
        "/v1/connect/intentions",
        {"SourceName": "web", "DestinationName": "redis", "Action": "deny"},
    )
    ixn_id = created["ID"]
    result = dev_agent.ok("POST", "/v1/agent/connect/authorize", auth)
    assert result == {
        "Authorized": False,
        "Reason": "Matched intention: DENY default/web => default/redis "
        f"(ID: {ixn_id}, Precedence: 9)",
    }
    dev_agent.ok(
        "POST",
        "/v1/connect/intentions",
        {"SourceName": "*", "DestinationName": "redis", "Action": "allow"},
    )
    match = dev_agent.ok("GET", "/v1/connect/intentions/match?by=destination&name=redis")
    assert [(i["SourceName"], i["Precedence"]) for i in match["redis"]] == [("web", 9), ("*", 8)]
    other = {**auth, "ClientCertURI": f"spiffe://{td}/ns/default/dc/dc1/svc/api"}
    assert dev_agent.ok("POST", "/v1/agent/connect/authorize", other)["Authorized"] is True
    assert dev_agent.ok("GET", "/v1/connect/intentions/check?source=web&destination=redis") == {
        "Allowed": False
    }
    dev_agent.ok(
        "PUT",
        f"/v1/connect/intentions/{ixn_id}",
        {"SourceName": "web", "DestinationName": "redis", "Action": "allow"},
    )
    assert dev_agent.ok("POST", "/v1/agent/connect/authorize", auth)["Authorized"] is True
    dev_agent.ok("DELETE", f"/v1/connect/intentions/{ixn_id}")
    assert len(dev_agent.ok("GET", "/v1/connect/intentions")) == 1
    bad = dev_agent.post(
        "/v1/agent/connect/authorize", {**auth, "ClientCertURI": "spiffe://x/nope"}
    )
    assert bad[0] == 400 and "not a valid" in bad[2]
    dup = dev_agent.post(
        "/v1/connect/intentions", {"SourceName": "*", "DestinationName": "redis", "Action": "deny"}
    )
    assert dup[0] == 400 and "duplicate intention" in dup[2]


def test_default_deny_policy(tmp_path: Path) -> None:
    with DevAgent(tmp_path, default_intention_policy="deny") as agent:
        td = agent.trust_domain()
        result = agent.ok(
            "POST",
            "/v1/agent/connect/authorize",
            {"Target": "db", "ClientCertURI": f"spiffe://{td}/ns/default/dc/dc1/svc/web"},
        )
        assert result == {"Authorized": False, "Reason": "Default intention policy"}


def test_prepared_queries(dev_agent: DevAgent, listener: socket.socket) -> None:
    created = dev_agent.ok(
        "POST",
        "/v1/query",
        {
            "Name": "nearest-db",
            "Service": {"Service": "db", "OnlyPassing": False, "Near": "_agent"},
        },
    )
    qid = created["ID"]
    [q] = dev_agent.ok("GET", f"/v1/query/{qid}")
    assert q["Name"] == "nearest-db" and q["Service"]["Failover"] == {
        "NearestN": 0,
        "Datacenters": None,
    }
    assert [x["ID"] for x in dev_agent.ok("GET", "/v1/query")] == [qid]
    empty = dev_agent.ok("GET", f"/v1/query/{qid}/execute?connect=true")
    assert empty["Nodes"] == [] and empty["Datacenter"] == "dc1" and empty["Failovers"] == 0
    _serve_sidecar(dev_agent, "db", listener)

    def execute() -> Any:
        return dev_agent.ok("GET", "/v1/query/nearest-db/execute?connect=true")

    dev_agent.wait_for(lambda: execute()["Nodes"] != [], what="sidecar check passing")
    by_name = execute()
    assert [n["Service"]["ID"] for n in by_name["Nodes"]] == ["db-sidecar-proxy"]
    plain = dev_agent.ok("GET", f"/v1/query/{qid}/execute")
    assert [n["Service"]["ID"] for n in plain["Nodes"]] == ["db"]
    dev_agent.ok(
        "PUT",
        f"/v1/query/{qid}",
        {"Name": "nearest-db", "Service": {"Service": "db", "Tags": ["missing"]}},
    )
    assert dev_agent.ok("GET", f"/v1/query/{qid}/execute")["Nodes"] == []
    assert dev_agent.get("/v1/query/nope/execute")[0] == 404
    dev_agent.ok("DELETE", f"/v1/query/{qid}")
    assert dev_agent.ok("GET", "/v1/query") == []


def test_index_going_backwards_after_an_in_memory_restart(tmp_path: Path) -> None:
    agent = DevAgent(tmp_path, persistent=False)
    with agent:
        for i in range(5):
            agent.register({"Name": "db", "Port": 5000 + i, "Connect": {"SidecarService": {}}})
        _, headers, _ = agent.get("/v1/health/connect/db")
        before = int(headers["X-Consul-Index"])
        agent.restart()  # no data dir: the history starts again
        start = time.monotonic()
        status, headers, rows = agent.get(f"/v1/health/connect/db?index={before}&wait=20s")
        assert status == 200 and rows == []
        assert int(headers["X-Consul-Index"]) < before
        assert time.monotonic() - start < 5  # answered at once, not at the 20s wait
        # The client resets to 0 and carries on watching.
        _, headers, _ = agent.get("/v1/health/connect/db?index=0")
        index = int(headers["X-Consul-Index"])
        agent.register({"Name": "db", "Port": 5432, "Connect": {"SidecarService": {}}})
        _, headers, rows = agent.get(f"/v1/health/connect/db?index={index}&wait=20s")
        assert int(headers["X-Consul-Index"]) > index and len(rows) == 1
