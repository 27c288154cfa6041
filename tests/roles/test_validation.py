# SPDX-License-Identifier: MPL-2.0
"""Bad descriptions fail before any change: argument specs, the loopback check, the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.ansible_run import playbook

HERE = Path(__file__).resolve().parent

WEB: dict[str, Any] = {
    "name": "web", "port": 8080,
    "sidecar": {"port": 21000, "admin_port": 19000,
                "upstreams": [{"destination_name": "db", "local_bind_port": 9191}]},
}  # fmt: skip


def enter(tmp_path, role: str, tasks: str = "main", **extra: Any):
    return playbook(
        HERE / "role_entry.yml",
        {"role_under_test": role, "role_tasks": tasks, **extra},
        tmp_path,
        "--check",
    )


def test_argument_spec_rejects_a_bad_option_before_any_task(tmp_path):
    run = enter(tmp_path, "mesh_proxy", mesh_proxy_install_method="rsync")
    assert run.rc != 0
    assert "mesh_proxy_install_method" in run.output and "rsync" in run.output
    assert "Work out this host's proxies" not in run.output


def test_argument_spec_rejects_wrong_types(tmp_path):
    run = enter(tmp_path, "loopback_guard", loopback_guard_extra_ports="lots")
    assert run.rc != 0
    assert "loopback_guard_extra_ports" in run.output


def test_loopback_check_names_service_field_and_fix(tmp_path):
    bad = [
        {**WEB, "address": "0.0.0.0"},
        {"name": "db", "id": "db-2", "port": 5432, "sidecar": {
            "local_service_address": "198.18.0.12",
            "upstreams": [{"destination_name": "x", "local_bind_port": 9300,
                           "local_bind_address": "198.18.0.12"}]}},
    ]  # fmt: skip
    run = enter(tmp_path, "loopback_guard", "check.yml", meshkit_services=bad)
    assert run.rc != 0
    out = run.output
    assert "service web address is 0.0.0.0, not loopback" in out
    assert "service db-2 sidecar.local_service_address is 198.18.0.12" in out
    assert "service db-2 sidecar.upstreams[0] (x).local_bind_address is 198.18.0.12" in out
    assert "allow_non_loopback: true" in out


def test_loopback_check_accepts_loopback_and_the_escape_hatch(tmp_path):
    good = [
        WEB,
        {"name": "legacy", "port": 7000, "address": "198.18.0.11", "allow_non_loopback": True,
         "sidecar": {}},
        {"name": "v6", "port": 7001, "address": "::1", "sidecar": {}},
    ]  # fmt: skip
    run = enter(tmp_path, "loopback_guard", "check.yml", meshkit_services=good)
    assert run.rc == 0, run.output


def test_model_validation_reports_every_problem(tmp_path):
    bad = [
        {**WEB, "sidecar": {**WEB["sidecar"], "upstreams": [
            {"destination_name": "db", "local_bind_port": 8080},
            {"destination_name": "nowhere", "destination_type": "prepared_query",
             "local_bind_port": 9192}]}},
    ]  # fmt: skip
    run = enter(tmp_path, "mesh_service", "validate.yml", meshkit_services=bad)
    assert run.rc != 0
    assert "8080" in run.output and "clashes" in run.output
    assert "nowhere" in run.output


def test_model_validation_accepts_the_lab_model(tmp_path):
    model = {
        "meshkit_services": [WEB],
        "meshkit_prepared_queries": [{"name": "db-nearest", "service": "db"}],
        "meshkit_intentions": [{"source": "web", "destination": "db", "action": "allow"}],
    }
    run = enter(tmp_path, "mesh_service", "validate.yml", **model)
    assert run.rc == 0, run.output
