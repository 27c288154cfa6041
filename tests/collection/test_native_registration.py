# SPDX-License-Identifier: MPL-2.0
"""`connect: {native: true}` in the mesh model: parsing, refusals, rendering, consul_service
against the real dev agent, and the Nomad group of a native app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    agent_config_service,
    agent_registration,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import to_api, to_hcl
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)
from tests.support.ansible_run import run_play
from tests.support.devagent import DevAgent

PICKER: dict[str, Any] = {
    "name": "picker",
    "port": 8443,
    "address": "198.18.0.10",  # public: the app's own port is the mesh port
    "connect": {"native": True},
}


def model(*services: dict[str, Any]) -> dict[str, Any]:
    return {"meshkit_services": list(services)}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ModelError) as err:
        parse_mesh(data)
    return [str(p) for p in err.value.problems]


def test_native_service_parses_with_a_public_address() -> None:
    svc = parse_mesh(model(PICKER)).services[0]
    assert svc.native and svc.sidecar is None and svc.address == "198.18.0.10"


def test_non_native_service_still_must_be_loopback() -> None:
    plain = {k: v for k, v in PICKER.items() if k != "connect"}
    assert any("not a loopback address" in p for p in problems(model(plain)))


def test_native_with_upstreams_is_refused_with_the_fix() -> None:
    bad = dict(PICKER, sidecar={"upstreams": [{"destination_name": "db", "local_bind_port": 9191}]})
    found = problems(model(bad))
    hit = [p for p in found if p.startswith("services[0] (picker).sidecar.upstreams")]
    assert hit and "cannot have upstreams" in hit[0]
    assert "await svc.connect('db')" in hit[0] and "drop connect.native" in hit[0]
    also = problems(model(dict(PICKER, connect={"native": True, "upstreams": ["db"]})))
    assert any(p.startswith("services[0] (picker).connect.upstreams") for p in also)


def test_native_with_sidecar_or_without_port_is_refused() -> None:
    found = problems(model(dict(PICKER, sidecar={"port": 21000})))
    assert any("has a sidecar" in p and "remove the sidecar" in p for p in found)
    no_port = {k: v for k, v in PICKER.items() if k != "port"}
    assert any(p.startswith("services[0] (picker).port") for p in problems(model(no_port)))
    typo = problems(model(dict(PICKER, connect={"nativ": True})))
    assert any("unknown key 'nativ'" in p and "native" in p for p in typo)


def test_render_api_and_config_file_forms() -> None:
    svc = parse_mesh(model(PICKER)).services[0]
    assert agent_registration(svc)["Connect"] == {"Native": True}
    assert agent_config_service(svc)["connect"] == {"native": True}
    assert "SidecarService" not in str(agent_registration(svc))


def test_consul_service_registers_native_idempotently(dev_agent: DevAgent, tmp_path: Path) -> None:
    local = dict(PICKER, address="127.0.0.1")
    tasks: list[dict[str, Any]] = [
        {"name": "create", "meshkit.connect.consul_service": {"service": local}},
        {"name": "again", "meshkit.connect.consul_service": {"service": local}},
        {
            "name": "to sidecar",
            "check_mode": True,
            "meshkit.connect.consul_service": {
                "service": {k: v for k, v in local.items() if k != "connect"} | {"sidecar": {}}
            },
        },
    ]
    play = run_play(tmp_path, tasks, dev_agent.address)
    assert play.returncode == 0, play.output
    assert play.task("create")["changed"]
    assert not play.task("again")["changed"], play.task("again")
    assert play.task("to sidecar")["changed"]
    status, _, body = dev_agent.get("/v1/agent/service/picker")
    assert status == 200 and body["Connect"] == {"Native": True} and body["Port"] == 8443
    status, _, health = dev_agent.get("/v1/health/connect/picker")
    assert [e["Service"]["Port"] for e in health] == [8443]


def test_consul_service_refuses_native_with_upstreams(dev_agent: DevAgent, tmp_path: Path) -> None:
    bad = dict(
        PICKER,
        address="127.0.0.1",
        sidecar={"upstreams": [{"destination_name": "db", "local_bind_port": 9191}]},
    )
    play = run_play(
        tmp_path,
        [{"name": "bad", "meshkit.connect.consul_service": {"service": bad}}],
        dev_agent.address,
    )
    assert play.returncode != 0
    assert "cannot have upstreams" in play.task("bad")["msg"]
    assert dev_agent.get("/v1/agent/services")[2] == {}


def nomad_job(pattern: str = "native") -> Any:
    data = model(
        dict(
            PICKER,
            nomad={
                "pattern": pattern,
                "task": {"driver": "exec", "config": {"command": "/srv/picker/bin/picker"}},
            },
        )
    )
    settings = parse_job_settings({"name": "picker", "datacenters": ["dc1"]})
    return build_job(parse_mesh(data), settings)


def test_nomad_native_app_group_has_no_proxy_task() -> None:
    job = nomad_job()
    api = to_api(job)
    group = api["TaskGroups"][0]
    assert [t["Name"] for t in group["Tasks"]] == ["picker"]
    service = group["Services"][0]
    assert service["Connect"] == {"Native": True} and service["TaskName"] == "picker"
    assert service["PortLabel"] == "mesh"
    assert group["Tasks"][0]["Env"]["CONSUL_HTTP_ADDR"] == "127.0.0.1:8500"
    assert "native = true" in to_hcl(job)


def test_nomad_native_app_refuses_a_proxy_pattern() -> None:
    with pytest.raises(Exception) as err:
        nomad_job("sidecar")
    assert "pattern sidecar puts a proxy in front of it" in str(err.value)
