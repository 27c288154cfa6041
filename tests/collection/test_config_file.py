# SPDX-License-Identifier: MPL-2.0
"""The /etc/consul.d renderer and the API renderer describe the same registration.

One dev agent loads the rendered file from -config-dir, another gets the API bodies; both
must then serve the same /v1/agent/service/<id> for every service and sidecar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_render import (
    agent_config_file,
    agent_registration,
)
from tests.support.devagent import DevAgent
from tests.support.mesh_examples import good


def services_of(agent: DevAgent, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sid in ids:
        status, _, body = agent.get(f"/v1/agent/service/{sid}")
        assert status == 200, (sid, body)
        out[sid] = body
    return out


def checks_of(agent: DevAgent) -> list[tuple[str, str, str, str]]:
    checks = agent.ok("GET", "/v1/agent/checks")
    return sorted((c["CheckID"], c["Name"], c["Type"], c["ServiceID"]) for c in checks.values())


def test_config_file_and_api_give_the_same_registration(tmp_path: Path) -> None:
    data = good()
    # exercise every key; a sidecar on another address has a fixed port and rendered checks
    data["meshkit_services"][0]["sidecar"].update(address="127.0.0.2", port=21600)
    data["meshkit_services"][1]["sidecar"]["config"] = {"handshake_timeout_ms": 5000}
    data["meshkit_services"][1]["checks"] = [{"name": "web ttl", "ttl": "30s", "notes": "n"}]
    mesh = parse_mesh(data)
    config_dir = tmp_path / "consul.d"
    config_dir.mkdir()
    (config_dir / "meshkit-services.json").write_text(agent_config_file(mesh.services))
    ids = [sid for s in mesh.services for sid in (s.id, s.sidecar_id)]
    with (
        DevAgent(tmp_path / "file", config_dir=config_dir) as by_file,
        DevAgent(tmp_path / "api") as by_api,
    ):
        for service in mesh.services:
            by_api.ok(
                "PUT",
                "/v1/agent/service/register?replace-existing-checks=true",
                agent_registration(service),
            )
        from_file, from_api = services_of(by_file, ids), services_of(by_api, ids)
        assert from_file == from_api
        assert checks_of(by_file) == checks_of(by_api)
    web = from_api["web-sidecar-proxy"]
    assert web["Port"] == 21500 and web["Proxy"]["Config"] == {"handshake_timeout_ms": 5000}
    assert [u["LocalBindPort"] for u in web["Proxy"]["Upstreams"]] == [9191, 9192]
    assert from_api["db-sidecar-proxy"]["Address"] == "127.0.0.2"
