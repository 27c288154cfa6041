# SPDX-License-Identifier: MPL-2.0
"""Older Consul proxy forms in the mesh model's services: converted (with a deprecation warning
naming the entry and field) by `parse_mesh`, shown by `meshkit render`, and round-tripped: the
rendered registration, sent to the real dev agent, gives the sidecar the legacy form described."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    agent_registration,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from tests.support import legacy_examples as ex
from tests.support.devagent import DevAgent
from tests.support.meshkit_cli import meshkit_render


def test_managed_proxy_with_config_upstreams_becomes_a_sidecar() -> None:
    mesh = parse_mesh({"services": [ex.MANAGED_CONFIG_UPSTREAMS]})
    svc = mesh.services[0]
    assert svc.sidecar is not None
    up = svc.sidecar.upstreams[0]
    assert (up.destination_name, up.datacenter, up.local_bind_port) == ("redis", "dc1", 1234)
    assert dict(up.config) == {"connect_timeout_ms": 10000}
    assert svc.sidecar.config["handshake_timeout_ms"] == 10000
    assert any(w.startswith("vars: services[0] (web).connect.proxy.config.upstreams is deprecated")
               for w in mesh.warnings), mesh.warnings  # fmt: skip


def test_standalone_connect_proxy_becomes_its_destination_with_a_sidecar() -> None:
    mesh = parse_mesh({"services": [ex.STANDALONE_SNAKE]}, known_queries=["q-empty"])
    svc = mesh.services[0]
    assert (svc.name, svc.id, svc.port, svc.address) == ("redis", "redis1", 9090, "127.0.0.1")
    assert svc.sidecar is not None and svc.sidecar.port == 8181
    up = svc.sidecar.upstreams[0]
    assert (up.destination_type, up.destination_name) == ("prepared_query", "q-empty")
    assert "converted to service 'redis'" in mesh.warnings[0]


def test_unconvertible_forms_are_model_problems_naming_the_entry() -> None:
    with pytest.raises(ModelError) as err:
        parse_mesh({"services": [ex.MANAGED_CUSTOM, ex.PROXY_DESTINATION_FILE]}, source="f.yml")
    text = str(err.value)
    assert "services[0] (web): f.yml: services[0] (web).connect.proxy.command" in text
    assert "services[1] (redis-proxy).proxy.local_service_port is missing" in text


def test_meshkit_render_warns_and_round_trips_through_the_dev_agent(
    tmp_path: Path,
    dev_agent: DevAgent,
) -> None:
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(yaml.safe_dump({"meshkit_services": [ex.MANAGED_UPSTREAMS]}))
    res = meshkit_render("--json", vars_file)
    assert res.returncode == 0, res.stderr
    assert f"meshkit render: warning: {vars_file}: meshkit_services[0] (web).connect.proxy" in (
        res.stderr
    )
    body = json.loads(res.stdout)["agent_registrations"][0]
    assert body["Connect"]["SidecarService"]["Proxy"]["Upstreams"][0]["DestinationName"] == "redis"
    mesh = parse_mesh({"services": [ex.MANAGED_UPSTREAMS]})
    assert agent_registration(mesh.services[0]) == body
    dev_agent.register(body)
    sidecar = dev_agent.ok("GET", "/v1/agent/service/web-sidecar-proxy")
    ups = sidecar["Proxy"]["Upstreams"]
    assert [(u["DestinationName"], u["LocalBindPort"]) for u in ups] == [("redis", 1234)]


def test_meshkit_render_shows_the_config_entries_and_refuses_bad_defaults(tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.yml"
    model = {
        "meshkit_proxy_defaults": {"config": {"handshake_timeout_ms": 7000}},
        "meshkit_services": [{"name": "db", "port": 5432, "defaults": {"protocol": "http"}}],
    }
    vars_file.write_text(yaml.safe_dump(model))
    res = meshkit_render("--json", vars_file)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["config_entries"] == [
        {"kind": "proxy-defaults", "name": "global", "config": {"handshake_timeout_ms": 7000}},
        {"kind": "service-defaults", "name": "db", "protocol": "http"},
    ]
    text = meshkit_render(vars_file)
    assert "# proxy-defaults global: consul_config_entry" in text.stdout
    model["meshkit_services"][0]["defaults"] = {"protocol": "smtp"}  # type: ignore[index]
    vars_file.write_text(yaml.safe_dump(model))
    bad = meshkit_render(vars_file)
    assert bad.returncode == 2
    assert "services[0] (db).defaults.protocol" in bad.stderr, bad.stderr
