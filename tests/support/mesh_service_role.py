# SPDX-License-Identifier: MPL-2.0
"""Two services (web -> db) for the mesh_service role, and one converge of the role with them
against a dev agent, through tests/roles/role_entry.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.ansible_run import Run, playbook
from tests.support.devagent import DevAgent
from tests.support.paths import ROOT

ROLE_ENTRY = ROOT / "tests" / "roles" / "role_entry.yml"

WEB: dict[str, Any] = {
    "name": "web", "id": "web-1", "port": 18080, "checks": [],
    "sidecar": {"port": 21000, "admin_port": 19000, "upstreams": [
        {"destination_name": "db", "local_bind_port": 19191},
        {"destination_name": "db-nearest", "destination_type": "prepared_query",
         "local_bind_port": 19192}]},
}  # fmt: skip
DB: dict[str, Any] = {
    "name": "db", "id": "db-1", "port": 18090, "checks": [],
    "sidecar": {"port": 21001, "admin_port": 19001},
}  # fmt: skip
MESH: dict[str, Any] = {
    "meshkit_prepared_queries": [{"name": "db-nearest", "service": "db"}],
    "meshkit_intentions": [{"source": "web", "destination": "db", "action": "allow"}],
}


def converge(
    tmp_path: Path, agent: DevAgent, services: list[dict[str, Any]], *args: str, **kw: Any
) -> Run:
    return playbook(
        ROLE_ENTRY,
        {"role_under_test": "mesh_service", "meshkit_services": services,
         "meshkit_consul_http_addr": agent.address, **MESH, **kw},
        tmp_path,
        *args,
    )  # fmt: skip
