# SPDX-License-Identifier: MPL-2.0
"""The mesh model's central proxy configuration through the mesh_service role, against the
real dev agent: `meshkit_proxy_defaults` and a service's `defaults` are written before the
services, a second run changes nothing, `--check --diff` after editing one key shows only that
key, and bad input fails before anything is written."""

from __future__ import annotations

import re
from typing import Any

from tests.support.ansible_run import recap
from tests.support.devagent import DevAgent
from tests.support.mesh_service_role import DB, WEB, converge

PROXY_DEFAULTS = {"config": {"local_connect_timeout_ms": 1500, "handshake_timeout_ms": 7000}}
DB_DEFAULTS: dict[str, Any] = {**DB, "defaults": {"protocol": "http"}}


def entry(agent: Any, kind: str, name: str) -> Any:
    status, _, body = agent.get(f"/v1/config/{kind}/{name}")
    return body if status == 200 else None


def test_defaults_written_before_services_idempotent_and_diff(tmp_path, dev_agent):
    run = converge(tmp_path, dev_agent, [WEB, DB_DEFAULTS], meshkit_proxy_defaults=PROXY_DEFAULTS)
    assert run.rc == 0, run.output
    proxy = entry(dev_agent, "proxy-defaults", "global")
    assert proxy["Config"] == PROXY_DEFAULTS["config"]
    assert entry(dev_agent, "service-defaults", "db")["Protocol"] == "http"
    order = [m.group(1) for m in re.finditer(r"TASK \[mesh_service : ([^\]]+)\]", run.stdout)]
    assert order.index("Write the proxy-defaults and service-defaults entries") < order.index(
        "Register the host's services with their sidecars"
    ), order

    again = converge(tmp_path, dev_agent, [WEB, DB_DEFAULTS], meshkit_proxy_defaults=PROXY_DEFAULTS)
    assert again.rc == 0, again.output
    assert recap(again)["changed"] == 0, again.stdout

    edited = {"config": {**PROXY_DEFAULTS["config"], "handshake_timeout_ms": 5000}}
    check = converge(
        tmp_path, dev_agent, [WEB, DB_DEFAULTS], "--check", "--diff", meshkit_proxy_defaults=edited
    )
    assert check.rc == 0, check.output
    assert recap(check)["changed"] == 1, check.stdout
    diff_lines = [ln for ln in check.stdout.splitlines() if ln.startswith(("+", "-"))]
    diff_lines = [ln for ln in diff_lines if not ln.startswith(("+++", "---"))]
    assert any("5000" in ln for ln in diff_lines), check.stdout
    assert any("7000" in ln for ln in diff_lines), check.stdout
    assert not any("1500" in ln or "Protocol" in ln for ln in diff_lines), diff_lines
    assert entry(dev_agent, "proxy-defaults", "global")["Config"]["handshake_timeout_ms"] == 7000


def test_bad_defaults_fail_before_anything_is_written(tmp_path, dev_agent):
    bad_db = {**DB, "defaults": {"protocol": "carrier-pigeon"}}
    run = converge(
        tmp_path,
        dev_agent,
        [WEB, bad_db],
        meshkit_proxy_defaults={"config": {"protocol": "udp"}, "mesh_gateway": {"mode": "far"}},
    )
    assert run.rc != 0
    out = run.output
    assert "services[1] (db).defaults.protocol" in out, out
    assert "proxy_defaults.config.protocol" in out and "proxy_defaults.mesh_gateway.mode" in out
    assert "Traceback" not in out
    assert entry(dev_agent, "proxy-defaults", "global") is None
    assert dev_agent.ok("GET", "/v1/agent/services") == {}


def test_rerun_is_unchanged_when_the_agent_merges_the_defaults(tmp_path):
    """With enable_central_service_config the agent answers the sidecars with the defaults
    merged in (e23-e27); consul_service must still see its own registration unchanged."""
    web = {**WEB, "sidecar": {**WEB["sidecar"], "config": {"local_connect_timeout_ms": 900}}}
    with DevAgent(tmp_path / "agent", extra_args=["-enable-central-service-config"]) as agent:
        run = converge(tmp_path, agent, [web, DB_DEFAULTS], meshkit_proxy_defaults=PROXY_DEFAULTS)
        assert run.rc == 0, run.output
        merged = agent.ok("GET", "/v1/agent/service/web-1-sidecar-proxy")["Proxy"]
        assert merged["Config"] == {"local_connect_timeout_ms": 900, "handshake_timeout_ms": 7000}
        db_up = next(u for u in merged["Upstreams"] if u["DestinationName"] == "db")
        assert db_up["Config"] == {"protocol": "http"}
        db_proxy = agent.ok("GET", "/v1/agent/service/db-1-sidecar-proxy")["Proxy"]
        assert db_proxy["Config"]["protocol"] == "http"

        again = converge(tmp_path, agent, [web, DB_DEFAULTS], meshkit_proxy_defaults=PROXY_DEFAULTS)
        assert again.rc == 0, again.output
        assert recap(again)["changed"] == 0, again.stdout

        # real drift is still seen: web's own key changed behind Ansible's back
        body = {"Name": "web", "ID": "web-1", "Port": 18080, "Connect": {"SidecarService": {
            "Port": 21000, "Proxy": {"Config": {"local_connect_timeout_ms": 1}}}}}  # fmt: skip
        agent.register(body)
        drift = converge(
            tmp_path, agent, [web, DB_DEFAULTS], "--check", meshkit_proxy_defaults=PROXY_DEFAULTS
        )
        assert recap(drift)["changed"] == 1, drift.stdout
