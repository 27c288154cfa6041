# SPDX-License-Identifier: MPL-2.0
"""The mesh_service role against the real development control plane on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ansible_run import playbook, recap
from tests.support.devagent import DevAgent
from tests.support.mesh_service_role import DB, MESH, WEB, converge

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_register_idempotent_check_mode_and_prune(tmp_path, dev_agent):
    run = converge(tmp_path, dev_agent, [WEB, DB])
    assert run.rc == 0, run.output
    assert recap(run)["changed"] == 3  # tasks: queries, services, intentions
    services = dev_agent.ok("GET", "/v1/agent/services")
    assert {"web-1", "web-1-sidecar-proxy", "db-1", "db-1-sidecar-proxy"} <= set(services)
    upstreams = services["web-1-sidecar-proxy"]["Proxy"]["Upstreams"]
    assert {(u["DestinationType"], u["DestinationName"]) for u in upstreams} == {
        ("service", "db"), ("prepared_query", "db-nearest"),
    }  # fmt: skip
    assert [q["Name"] for q in dev_agent.ok("GET", "/v1/query")] == ["db-nearest"]

    again = converge(tmp_path, dev_agent, [WEB, DB])
    assert again.rc == 0, again.output
    assert recap(again)["changed"] == 0, again.stdout

    moved = {**DB, "port": 18091}
    check = converge(tmp_path, dev_agent, [WEB, moved], "--check")
    assert check.rc == 0, check.output
    assert recap(check)["changed"] == 1
    assert dev_agent.ok("GET", "/v1/agent/service/db-1")["Port"] == 18090

    pruned = converge(tmp_path, dev_agent, [WEB], mesh_service_prune=True)
    assert pruned.rc == 0, pruned.output
    services = dev_agent.ok("GET", "/v1/agent/services")
    assert "db-1" not in services and "db-1-sidecar-proxy" not in services
    assert "web-1" in services


def test_unreachable_agent_fails_with_the_address(tmp_path):
    run = playbook(
        HERE / "role_entry.yml",
        {"role_under_test": "mesh_service", "meshkit_services": [WEB, DB],
         "meshkit_consul_http_addr": "127.0.0.1:9", **MESH},
        tmp_path,
    )  # fmt: skip
    assert run.rc != 0
    assert "The Consul agent at 127.0.0.1:9 does not answer" in run.output


def test_check_mode_on_a_fresh_host_predicts_registration(tmp_path):
    run = playbook(
        HERE / "role_entry.yml",
        {"role_under_test": "mesh_service", "meshkit_services": [WEB, DB],
         "meshkit_consul_http_addr": "127.0.0.1:9", **MESH},
        tmp_path,
        "--check",
    )  # fmt: skip
    assert run.rc == 0, run.output
    assert recap(run)["changed"] == 1
    assert "would register web, db" in run.output


@pytest.mark.slow
def test_config_file_method_replaces_the_api_registration(tmp_path):
    config_dir = tmp_path / "consul.d"
    config_dir.mkdir()
    with DevAgent(tmp_path / "agent", config_dir=config_dir) as agent:
        api = converge(tmp_path, agent, [DB])
        assert api.rc == 0, api.output
        assert "db-1" in agent.ok("GET", "/v1/agent/services")

        by_file = converge(
            tmp_path, agent, [DB],
            mesh_service_method="config_file", mesh_service_config_dir=str(config_dir),
        )  # fmt: skip
        assert by_file.rc == 0, by_file.output
        written = config_dir / "meshkit-db-1.json"
        assert '"sidecar_service"' in written.read_text()
        services = agent.ok("GET", "/v1/agent/services")
        assert services["db-1"]["Port"] == 18090
        assert services["db-1-sidecar-proxy"]["Port"] == 21001

        again = converge(
            tmp_path, agent, [DB],
            mesh_service_method="config_file", mesh_service_config_dir=str(config_dir),
        )  # fmt: skip
        assert again.rc == 0, again.output
        assert recap(again)["changed"] == 0, again.stdout

        back = converge(tmp_path, agent, [DB], mesh_service_config_dir=str(config_dir))
        assert back.rc == 0, back.output
        assert not written.exists()
        assert "db-1" in agent.ok("GET", "/v1/agent/services")


@pytest.mark.slow
def test_prune_keeps_what_an_upstream_still_uses(tmp_path, dev_agent):
    """Issue 13 item 4: a known query or hand-made intention an upstream uses survives a prune;
    the unused extras still go, and the run names what it kept."""
    dev_agent.ok("POST", "/v1/query", {"Name": "legacy-q", "Service": {"Service": "db"}})
    dev_agent.ok("POST", "/v1/query", {"Name": "stale-q", "Service": {"Service": "db"}})
    for source, destination in (("web", "cache"), ("old", "db")):
        body = {"SourceName": source, "DestinationName": destination, "Action": "allow"}
        dev_agent.ok("POST", "/v1/connect/intentions", body)
    web = {**WEB, "sidecar": {**WEB["sidecar"], "upstreams": [
        *WEB["sidecar"]["upstreams"],
        {"destination_name": "legacy-q", "destination_type": "prepared_query",
         "local_bind_port": 19193},
        {"destination_name": "cache", "local_bind_port": 19194}]}}  # fmt: skip
    run = converge(tmp_path, dev_agent, [web, DB], mesh_service_prune=True,
                   mesh_service_known_queries=["legacy-q"])  # fmt: skip
    assert run.rc == 0, run.output
    assert sorted(q["Name"] for q in dev_agent.ok("GET", "/v1/query")) == ["db-nearest", "legacy-q"]
    intentions = {(i["SourceName"], i["DestinationName"])
                  for i in dev_agent.ok("GET", "/v1/connect/intentions")}  # fmt: skip
    assert intentions == {("web", "db"), ("web", "cache")}
    assert "prepared query 'legacy-q' kept: still named by an upstream of service 'web'" in (
        run.stdout
    )
    assert "intention 'web -> cache' kept" in run.stdout

    again = converge(tmp_path, dev_agent, [web, DB], mesh_service_prune=True,
                     mesh_service_known_queries=["legacy-q"])  # fmt: skip
    assert again.rc == 0 and recap(again)["changed"] == 0, again.stdout
