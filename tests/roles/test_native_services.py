# SPDX-License-Identifier: MPL-2.0
"""Connect-native services in the roles: loopback_guard accepts their public address (their
own port is the mesh port), still refuses it for a proxied app, and mesh_service's model
validation refuses a native service with upstreams, naming the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.ansible_run import playbook

HERE = Path(__file__).resolve().parent

NATIVE: dict[str, Any] = {
    "name": "picker", "port": 8443, "address": "198.18.0.11", "connect": {"native": True},
}  # fmt: skip


def enter(tmp_path, role: str, tasks: str, services: list[dict[str, Any]]):
    return playbook(
        HERE / "role_entry.yml",
        {"role_under_test": role, "role_tasks": tasks, "meshkit_services": services},
        tmp_path,
        "--check",
    )


def test_loopback_check_accepts_a_native_service_on_a_public_address(tmp_path):
    run = enter(tmp_path, "loopback_guard", "check.yml", [NATIVE])
    assert run.rc == 0, run.output


def test_loopback_check_still_refuses_the_same_address_without_native(tmp_path):
    proxied = {k: v for k, v in NATIVE.items() if k != "connect"} | {"sidecar": {}}
    run = enter(tmp_path, "loopback_guard", "check.yml", [proxied])
    assert run.rc != 0
    assert "service picker address is 198.18.0.11, not loopback" in run.output


def test_model_validation_refuses_native_upstreams(tmp_path):
    bad = NATIVE | {"sidecar": {"upstreams": [{"destination_name": "db", "local_bind_port": 9191}]}}
    run = enter(tmp_path, "mesh_service", "validate.yml", [bad])
    assert run.rc != 0
    assert "is Connect-native and cannot have upstreams" in run.output
    assert "picks its upstreams at run time" in run.output
