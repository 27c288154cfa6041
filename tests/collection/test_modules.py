# SPDX-License-Identifier: MPL-2.0
"""Each module through real ansible-playbook against the real dev agent (real HTTP).

Every lifecycle runs in one play: create, the same again (unchanged), change one field (exactly
that field in the diff), check mode (reported, not written: read back with uri), absent, absent
again (unchanged), gone (read back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.ansible_run import run_play
from tests.support.devagent import DevAgent
from tests.support.module_lifecycle import assert_lifecycle, read

DB: dict[str, Any] = {
    "name": "db",
    "port": 5432,
    "tags": ["primary"],
    "meta": {"team": "data"},
    "checks": [{"name": "db tcp", "tcp": "127.0.0.1:5432", "interval": "10s"}],
    "sidecar": {
        "port": "auto",
        "admin_port": 19001,
        "upstreams": [{"destination_name": "cache", "local_bind_port": 9191}],
    },
}


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    out.update(changes)
    return out


def test_consul_service_lifecycle(dev_agent: DevAgent, tmp_path: Path) -> None:
    svc = {"meshkit.connect.consul_service": {"service": DB}}
    tasks: list[dict[str, Any]] = [
        {"name": "create", **svc, "register": "r"},
        {"name": "again", **svc},
        {"name": "change", "meshkit.connect.consul_service": {
            "service": with_changes(DB, tags=["primary", "v2"])}},
        {"name": "check", "check_mode": True, "meshkit.connect.consul_service": {
            "service": with_changes(DB, tags=["primary", "v2"], port=5433)}},
        read(dev_agent, "/v1/agent/service/db", "after check"),
        {"name": "change check interval", "meshkit.connect.consul_service": {
            "service": with_changes(DB, tags=["primary", "v2"],
            checks=[{"name": "db tcp", "tcp": "127.0.0.1:5432", "interval": "20s"}])}},
        {"name": "change upstream", "meshkit.connect.consul_service": {"service": with_changes(
            DB, tags=["primary", "v2"],
            checks=[{"name": "db tcp", "tcp": "127.0.0.1:5432", "interval": "20s"}],
            sidecar={"port": "auto", "upstreams": [
                {"destination_name": "cache", "local_bind_port": 9192}]})}},
        {"name": "absent", "meshkit.connect.consul_service": {"state": "absent", "id": "db"}},
        {"name": "absent again", "meshkit.connect.consul_service": {"state": "absent", "id": "db"}},
        read(dev_agent, "/v1/agent/service/db", "gone"),
        read(dev_agent, "/v1/agent/service/db-sidecar-proxy", "sidecar gone"),
    ]  # fmt: skip
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert_lifecycle(play, {"Tags"})
    assert play.task("change")["diff"] == {
        "before": {"Tags": ["primary"]},
        "after": {"Tags": ["primary", "v2"]},
    }
    assert play.task("create")["sidecar_port"] == 21000
    check = play.task("check")
    local = {"Connect": {"SidecarService": {"Proxy": {"LocalServicePort": 5433}}}}
    assert check["diff"]["after"] == {"Port": 5433, **local}  # the sidecar follows the app port
    assert play.task("after check")["json"]["Port"] == 5432  # check mode wrote nothing
    interval = play.task("change check interval")
    assert interval["changed"] and set(interval["diff"]["after"]) == {"Checks"}
    assert interval["diff"]["after"]["Checks"][0]["Interval"] == "20s"
    upstream = play.task("change upstream")["diff"]
    assert upstream["after"] == {"Connect": {"SidecarService": {"Proxy": {"Upstreams": [
        {"DestinationType": "service", "DestinationName": "cache",
         "LocalBindAddress": "127.0.0.1", "LocalBindPort": 9192}]}}}}  # fmt: skip
    assert play.task("gone")["status"] == 404
    assert play.task("sidecar gone")["status"] == 404


def test_consul_service_refuses_invalid_model_and_writes_nothing(
    dev_agent: DevAgent,
    tmp_path: Path,
) -> None:
    bad = with_changes(DB, sidecar={"upstreams": [
        {"destination_name": "cache", "local_bind_port": 9191, "local_bind_address": "10.1.2.3"},
        {"destination_name": "nowhere", "destination_type": "prepared_query",
         "local_bind_port": 9192}]})  # fmt: skip
    play = run_play(tmp_path, [{"name": "bad", "meshkit.connect.consul_service": {"service": bad}}],
                    dev_agent.address)  # fmt: skip
    assert play.returncode != 0
    result = play.task("bad")
    assert [r["status"] for r in play.results] == ["failed"]
    assert len(result["problems"]) == 2 and "2 problem(s)" in result["msg"]
    assert "service 'db' upstream 'cache' local_bind_address 10.1.2.3" in result["msg"]
    assert "prepared query 'nowhere'" in result["msg"]
    assert dev_agent.get("/v1/agent/services")[2] == {}


def test_consul_prepared_query_lifecycle(dev_agent: DevAgent, tmp_path: Path) -> None:
    query = {"name": "db-nearest", "service": "db", "near": "_agent"}
    mod = "meshkit.connect.consul_prepared_query"
    tasks: list[dict[str, Any]] = [
        {"name": "create", mod: {"query": query}},
        {"name": "again", mod: {"query": query}},
        {"name": "change", mod: {"query": with_changes(query, only_passing=False)}},
        {"name": "check", "check_mode": True,
         mod: {"query": with_changes(query, only_passing=False, tags=["primary"])}},
        read(dev_agent, "/v1/query", "after check"),
        {"name": "absent", mod: {"state": "absent", "name": "db-nearest"}},
        {"name": "absent again", mod: {"state": "absent", "name": "db-nearest"}},
        read(dev_agent, "/v1/query", "gone"),
    ]  # fmt: skip
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert_lifecycle(play, {"Service"})
    assert play.task("change")["diff"] == {
        "before": {"Service": {"OnlyPassing": True}},
        "after": {"Service": {"OnlyPassing": False}},
    }
    assert play.task("create")["id"]
    (stored,) = play.task("after check")["json"]
    assert not stored["Service"]["Tags"] and stored["Service"]["OnlyPassing"] is False
    assert play.task("gone")["json"] == []


@pytest.mark.parametrize("api", ["legacy", "config_entry"])
def test_consul_intention_lifecycle(dev_agent: DevAgent, tmp_path: Path, api: str) -> None:
    mod = "meshkit.connect.consul_intention"
    base = {"source": "web", "destination": "db", "description": "web reads db", "api": api}
    tasks: list[dict[str, Any]] = [
        {"name": "other source", mod: dict(base, source="api")},
        {"name": "create", mod: base},
        {"name": "again", mod: base},
        {"name": "change", mod: dict(base, action="deny")},
        {"name": "check", "check_mode": True, mod: dict(base, action="deny", description="x")},
        read(dev_agent, "/v1/connect/intentions", "after check"),
        {"name": "absent", mod: dict(base, state="absent")},
        {"name": "absent again", mod: dict(base, state="absent")},
        read(dev_agent, "/v1/connect/intentions", "gone"),
    ]
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert_lifecycle(play, {"action"})
    assert play.task("create")["api"] == api
    by_source = {i["SourceName"]: i for i in play.task("after check")["json"]}
    assert (
        by_source["web"]["Description"] == "web reads db" and by_source["web"]["Action"] == "deny"
    )
    assert [i["SourceName"] for i in play.task("gone")["json"]] == ["api"]  # the other survives


def test_consul_mesh_info_reports_drift_without_deleting(
    dev_agent: DevAgent,
    tmp_path: Path,
) -> None:
    dev_agent.register({"Name": "legacy-app", "Port": 7000})
    web = {"name": "web", "port": 8080, "sidecar": {"upstreams": [
        {"destination_name": "db", "local_bind_port": 9193}]}}  # fmt: skip
    mesh = {
        "services": [DB, web],
        "prepared_queries": [{"name": "db-nearest", "service": "db"}],
        "intentions": [{"source": "web", "destination": "db"}],
    }
    tasks: list[dict[str, Any]] = [
        {"name": "register db", "meshkit.connect.consul_service": {
            "service": with_changes(DB, tags=["old"])}},
        {"name": "intention", "meshkit.connect.consul_intention": {
            "source": "*", "destination": "db", "action": "deny"}},
        {"name": "info", "meshkit.connect.consul_mesh_info": {"mesh": mesh}},
        {"name": "info in check mode", "check_mode": True,
         "meshkit.connect.consul_mesh_info": {}},
    ]  # fmt: skip
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert play.returncode == 0, play.output
    info = play.task("info")
    assert not info["changed"]
    assert info["drift"] == {
        "services": {"extra": ["legacy-app"], "missing": ["web"], "differ": ["db"]},
        "prepared_queries": {"extra": [], "missing": ["db-nearest"], "differ": []},
        "intentions": {"extra": ["* -> db"], "missing": ["web -> db"], "differ": []},
    }
    assert set(info["services"]) == {"db", "legacy-app"}
    assert info["services"]["db"]["Connect"]["SidecarService"]["Proxy"]["Upstreams"]
    assert play.task("info in check mode")["services"].keys() == info["services"].keys()
    assert play.task("intention")["api"] == "legacy"  # auto: the dev agent reports Consul 1.7
    assert "legacy-app" in dev_agent.get("/v1/agent/services")[2]  # nothing deleted


def test_token_goes_in_the_header_only_and_is_never_printed(
    dev_agent_acl: DevAgent,
    tmp_path: Path,
) -> None:
    token = dev_agent_acl.acl_master_token
    assert token
    mod = {"meshkit.connect.consul_service": {"service": DB}}
    denied = run_play(tmp_path / "denied", [{"name": "create", **mod}], dev_agent_acl.address)
    assert denied.returncode != 0 and "403" in denied.task("create")["msg"]
    play = run_play(tmp_path / "ok", [{"name": "create", **mod}], dev_agent_acl.address,
                    module_defaults={"token": token})  # fmt: skip
    assert play.returncode == 0, play.output
    assert play.task("create")["changed"]
    env = run_play(tmp_path / "env", [{"name": "again", **mod}], dev_agent_acl.address,
                   extra_env={"CONSUL_HTTP_TOKEN": token})  # fmt: skip
    assert env.returncode == 0 and not env.task("again")["changed"], env.output
    for run in (denied, play, env):
        assert token not in run.output
        assert token not in (tmp_path / "ok" / "play.results.json").read_text()


def test_filters_render_and_validate(dev_agent: DevAgent, tmp_path: Path) -> None:
    tasks: list[dict[str, Any]] = [
        {"name": "validate", "ansible.builtin.set_fact": {
            "mesh": "{{ {'services': [db]} | meshkit.connect.mesh_validate }}"},
         "vars": {"db": DB}},
        {"name": "body", "ansible.builtin.set_fact": {
            "body": "{{ db | meshkit.connect.mesh_agent_registration }}",
            "file": "{{ [db] | meshkit.connect.mesh_agent_config }}",
            "listeners": "{{ [db] | meshkit.connect.mesh_listeners }}"},
         "vars": {"db": DB}},
        {"name": "invalid", "ignore_errors": True, "ansible.builtin.set_fact": {
            "x": "{{ {'services': [db]} | meshkit.connect.mesh_validate }}"},
         "vars": {"db": with_changes(DB, address="10.0.0.1", port=21001)}},
    ]  # fmt: skip
    play = run_play(tmp_path, tasks, dev_agent.address)
    facts = play.task("validate")["ansible_facts"]
    assert facts["mesh"]["services"][0]["sidecar"]["local_service_port"] == 5432
    body = play.task("body")["ansible_facts"]
    assert body["body"]["Connect"]["SidecarService"]["Proxy"]["LocalServicePort"] == 5432
    assert body["file"].startswith('{\n  "services": [')
    assert {(x["kind"], x["port"]) for x in body["listeners"]} == {
        ("app", 5432),
        ("admin", 19001),
        ("upstream", 9191),
    }
    msg = play.task("invalid")["msg"]
    assert "not a loopback address" in msg and "inside 21000-21255" in msg


def test_consul_service_many_services_lifecycle(dev_agent: DevAgent, tmp_path: Path) -> None:
    web = {"name": "web", "port": 8080, "sidecar": {"upstreams": [
        {"destination_name": "db", "local_bind_port": 9193}]}}  # fmt: skip
    both = [DB, web]
    mod = "meshkit.connect.consul_service"
    tasks: list[dict[str, Any]] = [
        {"name": "create", mod: {"services": both}},
        {"name": "again", mod: {"services": both}},
        {"name": "change", mod: {"services": [DB, with_changes(web, tags=["v2"])]}},
        {"name": "check", "check_mode": True,
         mod: {"services": [with_changes(DB, port=5433), with_changes(web, tags=["v2"])]}},
        read(dev_agent, "/v1/agent/service/db", "after check"),
        {"name": "clash", "ignore_errors": True,
         mod: {"services": [DB, with_changes(web, port=5432)]}},
        {"name": "absent", mod: {"state": "absent", "services": both}},
        {"name": "absent again", mod: {"state": "absent", "services": both}},
        read(dev_agent, "/v1/agent/services", "gone"),
    ]  # fmt: skip
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert_lifecycle(play, {"web"})
    assert play.task("create")["sidecar_ports"] == {"db": 21000, "web": 21001}
    assert play.task("change")["diff"] == {
        "before": {"web": {"Tags": []}},
        "after": {"web": {"Tags": ["v2"]}},
    }
    assert set(play.task("check")["diff"]["after"]) == {"db"}
    assert play.task("after check")["json"]["Port"] == 5432
    assert "clashes with service 'db' port" in play.task("clash")["msg"]
    assert play.task("gone")["json"] == {}


def test_consul_service_standalone_proxy(dev_agent: DevAgent, tmp_path: Path) -> None:
    fixed = with_changes(DB, sidecar={"port": 21500, "upstreams": [
        {"destination_name": "cache", "local_bind_port": 9191}]})  # fmt: skip
    mod = "meshkit.connect.consul_service"
    standalone = {"registration": "standalone_proxy"}
    tasks: list[dict[str, Any]] = [
        {"name": "auto port refused", "ignore_errors": True, mod: {"service": DB, **standalone}},
        {"name": "create", mod: {"service": fixed, **standalone}},
        {"name": "again", mod: {"service": fixed, **standalone}},
        {"name": "same as nested", mod: {"service": fixed}},
        read(dev_agent, "/v1/agent/service/db-sidecar-proxy", "proxy"),
        {"name": "absent", mod: {"state": "absent", "id": "db"}},
        read(dev_agent, "/v1/agent/service/db-sidecar-proxy", "proxy gone"),
    ]
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert "needs a fixed port" in play.task("auto port refused")["msg"]
    assert play.task("create")["changed"] and not play.task("again")["changed"]
    assert not play.task("same as nested")["changed"]  # both forms read back the same
    proxy = play.task("proxy")["json"]
    assert proxy["Kind"] == "connect-proxy" and proxy["Port"] == 21500
    assert proxy["Proxy"]["DestinationServiceID"] == "db"
    assert play.task("absent")["changed"] and play.task("proxy gone")["status"] == 404
