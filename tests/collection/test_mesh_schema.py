# SPDX-License-Identifier: MPL-2.0
"""The argument specs' schema of the mesh model against the parser it must never contradict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.meshkit.connect.plugins.module_utils import mesh_model, mesh_schema
from tests.support.ansible_run import run_play
from tests.support.devagent import DevAgent


def test_every_field_the_parser_reads_is_declared() -> None:
    """A field the parser accepts but the suboptions lack would be refused by Ansible first."""
    pairs = [
        (mesh_model._SERVICE_KEYS, mesh_schema.SERVICE),
        (mesh_model._SIDECAR_KEYS, mesh_schema.SIDECAR),
        (mesh_model._UPSTREAM_KEYS, mesh_schema.UPSTREAM),
        (mesh_model._CHECK_KEYS, mesh_schema.CHECK),
        (mesh_model._QUERY_KEYS, mesh_schema.QUERY),
        (mesh_model._INTENTION_KEYS, mesh_schema.INTENTION),
    ]
    for keys, spec in pairs:
        assert set(keys) <= set(spec), sorted(set(keys) - set(spec))


def test_argspec_is_the_schema_without_descriptions() -> None:
    spec = mesh_schema.argspec(mesh_schema.SERVICE)
    assert spec["port"] == {"type": "int"}
    upstream = spec["sidecar"]["options"]["upstreams"]
    assert upstream["type"] == "list" and upstream["elements"] == "dict"
    assert upstream["options"]["local_bind_port"] == {"type": "int"}
    assert "description" not in str(spec)


def test_drop_unset_removes_only_the_nones_ansible_filled_in() -> None:
    filled = {
        "name": "web", "id": None, "port": 8080, "checks": None, "connect": None,
        "sidecar": {
            "port": None, "config": {"keep": None},
            "upstreams": [{"destination_name": "db", "local_bind_port": 9191,
                           "datacenter": None, "config": None}],
        },
        "unknown": None,
    }  # fmt: skip
    assert mesh_schema.drop_unset(filled, mesh_schema.SERVICE) == {
        "name": "web", "port": 8080,
        "sidecar": {"config": {"keep": None},
                    "upstreams": [{"destination_name": "db", "local_bind_port": 9191}]},
        "unknown": None,
    }  # fmt: skip
    assert mesh_schema.drop_unset(None, mesh_schema.SERVICE) is None


def test_the_module_checks_types_and_names_from_the_schema(
    dev_agent: DevAgent,
    tmp_path: Path,
) -> None:
    """Ansible now refuses a wrong type or an unknown field inside the model, naming its path;
    a model with only the fields a user wrote still registers (drop_unset)."""
    good_service = {"name": "db", "port": 5432, "sidecar": {"upstreams": [
        {"destination_name": "cache", "local_bind_port": 9191}]}}  # fmt: skip
    wrong_type = {"name": "db", "port": 5432, "sidecar": {"upstreams": [
        {"destination_name": "cache", "local_bind_port": "nine"}]}}  # fmt: skip
    unknown = {"name": "db", "port": 5432, "sidecar": {"upstreams": [
        {"destination_name": "cache", "local_bind_prot": 9191}]}}  # fmt: skip
    mod = "meshkit.connect.consul_service"
    tasks: list[dict[str, Any]] = [
        {"name": "wrong type", mod: {"service": wrong_type}, "ignore_errors": True},
        {"name": "unknown", mod: {"service": unknown}, "ignore_errors": True},
        {"name": "good", mod: {"service": good_service}},
    ]
    play = run_play(tmp_path, tasks, dev_agent.address)
    msg = play.task("wrong type")["msg"]
    assert "local_bind_port" in msg and "int" in msg, msg
    msg = play.task("unknown")["msg"]
    assert "Unsupported parameters" in msg and "local_bind_prot" in msg, msg
    assert play.task("good")["changed"], play.output
    _, _, services = dev_agent.get("/v1/agent/services")
    assert set(services) == {"db", "db-sidecar-proxy"}
