# SPDX-License-Identifier: MPL-2.0
"""Every nomad_version refusal: too old is refused with the field and the fix; new enough passes."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import to_api
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_versions import (
    NomadVersion,
    parse_nomad_version,
)


def one_service(pattern: str, upstream: dict[str, Any], **nomad: Any) -> dict[str, Any]:
    return {
        "prepared_queries": [{"name": "db-nearest", "service": "db"}],
        "services": [
            {
                "name": "web",
                "port": 8080,
                "sidecar": {"upstreams": [{"local_bind_port": 9191, **upstream}]},
                "nomad": {"pattern": pattern, "task": {"config": {"command": "/srv/web"}}, **nomad},
            }
        ],
    }


def build(data: dict[str, Any], version: str) -> dict[str, Any]:
    settings = parse_job_settings({"name": "web", "nomad_version": version})
    return dict(to_api(build_job(parse_mesh(data), settings)))


PQ = {"destination_name": "db-nearest", "destination_type": "prepared_query"}
DC = {"destination_name": "db", "datacenter": "dc2"}
BIND = {"destination_name": "db", "local_bind_address": "127.0.0.2"}
CFG = {"destination_name": "db", "config": {"connect_timeout_ms": 2000}}

# (case, model, version refused, version accepted, words the refusal must carry)
CASES = [
    ("prepared query upstream", one_service("sidecar", PQ), "1.6.1", "1.6.2", "prepared_query"),
    ("prepared query, envoy", one_service("envoy", PQ), "1.5.6", "1.7.0", "prepared_query"),
    ("native", one_service("native", {"destination_name": "db"}), "0.11.8", "0.12.0", "native"),
    (
        "native in bridge",
        one_service("native", {"destination_name": "db"}, network_mode="bridge"),
        "0.12.1",
        "0.12.2",
        "bridge",
    ),
    ("upstream datacenter", one_service("sidecar", DC), "0.12.9", "1.0.0", "datacenter"),
    ("local_bind_address", one_service("sidecar", BIND), "1.0.18", "1.1.0", "local_bind_address"),
    ("upstream config", one_service("sidecar", CFG), "1.4.9", "1.5.0", "upstream config"),
]


@pytest.mark.parametrize(
    ("model", "old", "new", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refused_before_and_accepted_from(
    model: dict[str, Any], old: str, new: str, words: str
) -> None:
    with pytest.raises(ModelError) as err:
        build(model, old)
    text = str(err.value)
    assert words in text and f"nomad_version is {parse_nomad_version(old)}" in text
    assert "fix:" in text and "services.web" in text
    build(model, new)  # the first version that has the feature renders


def test_native_pattern_needs_no_gate_for_prepared_queries() -> None:
    """meshkit-proxy resolves the query itself, so an old Nomad is fine for native."""
    job = build(one_service("native", PQ), "0.12.0")
    proxy = job["TaskGroups"][0]["Tasks"][1]
    assert proxy["Config"]["args"] == ["-config", "${NOMAD_TASK_DIR}/meshkit-proxy.yaml"]
    data = proxy["Templates"][0]["EmbeddedTmpl"]
    assert '  - destination_name: "db-nearest"\n    destination_type: "prepared_query"\n' in data


def test_default_bind_address_is_not_sent_so_old_nomad_accepts_it() -> None:
    job = build(one_service("sidecar", {"destination_name": "db"}), "0.11.8")
    upstream = job["TaskGroups"][0]["Services"][0]["Connect"]["SidecarService"]["Proxy"][
        "Upstreams"
    ][0]
    assert upstream == {"DestinationName": "db", "LocalBindPort": 9191}


def test_version_parsing() -> None:
    assert parse_nomad_version("v1.6.2") == NomadVersion(1, 6, 2)
    assert parse_nomad_version("1.8.0-beta.1") == NomadVersion(1, 8, 0)
    assert parse_nomad_version("1.7") == NomadVersion(1, 7, 0)
    with pytest.raises(ValueError, match="not a Nomad version"):
        parse_nomad_version("latest")
    with pytest.raises(ModelError, match=r"job\.nomad_version"):
        parse_job_settings({"name": "x", "nomad_version": "new"})


def test_exec_proxy_in_bridge_mode_is_refused_where_lo_stays_down() -> None:
    """hashicorp/nomad#10014: before 1.3.2 a bridge namespace's lo is down for exec tasks."""
    data = one_service("sidecar", {"destination_name": "db"})

    def with_exec(version: str) -> dict[str, Any]:
        settings = parse_job_settings(
            {"name": "web", "nomad_version": version, "proxy": {"driver": "exec"}}
        )
        return dict(to_api(build_job(parse_mesh(data), settings)))

    with pytest.raises(ModelError) as err:
        with_exec("1.3.1")
    text = str(err.value)
    assert "job.proxy.driver" in text and "issue 10014" in text and "ip link set lo up" in text
    with_exec("1.3.2")
    build(data, "0.11.8")  # raw_exec (the default) is allowed: the wrapper can bring lo up
