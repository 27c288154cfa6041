# SPDX-License-Identifier: MPL-2.0
"""`meshkit.connect.consul_config_entry` through real ansible-playbook against the real dev
agent: the lifecycle (idempotent, check mode, diff of only the changed field, absent),
check-and-set against a concurrent edit, and bad input refused before anything is written."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.ansible_run import run_play
from tests.support.devagent import DevAgent
from tests.support.module_lifecycle import assert_lifecycle, read

MOD = "meshkit.connect.consul_config_entry"
PROXY: dict[str, Any] = {"kind": "proxy-defaults", "name": "global",
         "config": {"local_connect_timeout_ms": 1500, "handshake_timeout_ms": 7000}}  # fmt: skip


def entry(agent: DevAgent, kind: str, name: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{agent.url}/v1/config/{kind}/{name}", timeout=5) as resp:
            body: dict[str, Any] = json.load(resp)
            return body
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def put(agent: DevAgent, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"{agent.url}/v1/config", data=json.dumps(body).encode(), method="PUT"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


def failed(play: Any, name: str) -> dict[str, Any]:
    """The result of task ``name``, which must have failed."""
    found = [r for r in play.results if r["task"] == name]
    assert found and found[-1]["status"] == "failed", (name, found, play.output)
    result: dict[str, Any] = found[-1]["result"]
    return result


def test_proxy_defaults_lifecycle(dev_agent: DevAgent, tmp_path: Path) -> None:
    changed = {**PROXY, "config": {**PROXY["config"], "handshake_timeout_ms": 5000}}
    tasks: list[dict[str, Any]] = [
        {"name": "create", MOD: PROXY},
        {"name": "again", MOD: PROXY},
        {"name": "change", MOD: changed},
        {"name": "check", "check_mode": True, MOD: {**changed, "mesh_gateway": {"mode": "local"}}},
        read(dev_agent, "/v1/config/proxy-defaults/global", "after check"),
        {"name": "absent", MOD: {"kind": "proxy-defaults", "name": "global", "state": "absent"}},
        {"name": "absent again",
         MOD: {"kind": "proxy-defaults", "name": "global", "state": "absent"}},
        read(dev_agent, "/v1/config/proxy-defaults/global", "gone"),
    ]  # fmt: skip
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert_lifecycle(play, {"Config"})
    assert play.task("change")["diff"] == {
        "before": {"Config": {"handshake_timeout_ms": 7000}},
        "after": {"Config": {"handshake_timeout_ms": 5000}},
    }
    assert play.task("check")["diff"] == {"before": {"MeshGateway": {}},
                                          "after": {"MeshGateway": {"Mode": "local"}}}  # fmt: skip
    stored = play.task("after check")["json"]
    assert stored["Config"] == changed["config"] and not stored.get("MeshGateway")
    assert play.task("gone")["status"] == 404


def test_service_defaults_lifecycle(dev_agent: DevAgent, tmp_path: Path) -> None:
    base = {"kind": "service-defaults", "name": "db", "protocol": "http"}
    expose = {"checks": True, "paths": [
        {"path": "/metrics", "local_path_port": 8080, "listener_port": 21500}]}  # fmt: skip
    tasks: list[dict[str, Any]] = [
        {"name": "create", MOD: base},
        {"name": "again", MOD: base},
        {"name": "change", MOD: {**base, "protocol": "grpc"}},
        {"name": "check", "check_mode": True, MOD: {**base, "protocol": "grpc", "expose": expose}},
        {"name": "expose", MOD: {**base, "protocol": "grpc", "expose": expose}},
        {"name": "expose again", MOD: {**base, "protocol": "grpc", "expose": expose}},
        {"name": "absent", MOD: {"kind": "service-defaults", "name": "db", "state": "absent"}},
        {"name": "absent again",
         MOD: {"kind": "service-defaults", "name": "db", "state": "absent"}},
    ]  # fmt: skip
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert_lifecycle(play, {"Protocol"})
    assert play.task("change")["diff"] == {"before": {"Protocol": "http"},
                                           "after": {"Protocol": "grpc"}}  # fmt: skip
    assert set(play.task("expose")["diff"]["after"]) == {"Expose"}
    assert not play.task("expose again")["changed"]
    assert entry(dev_agent, "service-defaults", "db") is None


def test_concurrent_edit_is_refused_and_reported(
    dev_agent: DevAgent,
    tmp_path: Path,
) -> None:
    assert put(dev_agent, {"Kind": "service-defaults", "Name": "api", "Protocol": "http"})
    index = entry(dev_agent, "service-defaults", "api")["ModifyIndex"]  # type: ignore[index]
    # someone else edits after we looked at index
    assert put(dev_agent, {"Kind": "service-defaults", "Name": "api", "Protocol": "http2"})
    now = entry(dev_agent, "service-defaults", "api")["ModifyIndex"]  # type: ignore[index]
    stale = {"kind": "service-defaults", "name": "api", "protocol": "grpc", "cas": index}
    tasks: list[dict[str, Any]] = [
        {"name": "stale check", "check_mode": True, MOD: stale, "ignore_errors": True},
        {"name": "stale", MOD: stale, "ignore_errors": True},
        {"name": "create only", MOD: {**stale, "cas": 0}, "ignore_errors": True},
        {"name": "current", MOD: {**stale, "cas": now}},
    ]
    play = run_play(tmp_path, tasks, dev_agent.address)
    for name in ("stale check", "stale", "create only"):
        res = failed(play, name)
        assert "changed by someone else" in res["msg"] and f"now at {now}" in res["msg"], res
    assert play.task("current")["changed"]
    assert entry(dev_agent, "service-defaults", "api")["Protocol"] == "grpc"  # type: ignore[index]


def test_bad_input_names_the_field_and_writes_nothing(
    dev_agent: DevAgent,
    tmp_path: Path,
) -> None:
    cases = {
        "unknown kind": ({"kind": "mesh-defaults", "name": "x"}, "kind"),
        "proxy-defaults not global": ({"kind": "proxy-defaults", "name": "web"},
                                      "name: a proxy-defaults entry must be named 'global'"),
        "bad protocol": ({"kind": "service-defaults", "name": "api",
                          "protocol": "carrier-pigeon"}, "protocol 'carrier-pigeon'"),
        "bad config protocol": ({"kind": "proxy-defaults", "name": "global",
                                 "config": {"protocol": "udp"}}, "config.protocol"),
        "protocol on proxy-defaults": ({"kind": "proxy-defaults", "name": "global",
                                        "protocol": "http"}, "config.protocol"),
    }  # fmt: skip
    tasks = [{"name": n, MOD: args, "ignore_errors": True} for n, (args, _) in cases.items()]
    play = run_play(tmp_path, tasks, dev_agent.address)
    for name, (_, words) in cases.items():
        res = failed(play, name)
        assert words in res["msg"], (name, res)
        assert "Traceback" not in res["msg"]
    assert entry(dev_agent, "proxy-defaults", "web") is None
    assert entry(dev_agent, "proxy-defaults", "global") is None
    assert entry(dev_agent, "service-defaults", "api") is None
