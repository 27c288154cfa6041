# SPDX-License-Identifier: MPL-2.0
"""The nomad_job module through real ansible-playbook against the Nomad double."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import to_api
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)
from tests.support.nomad_double import NomadDouble
from tests.support.nomad_model import USER_TEMPLATE, job_settings, mesh_data
from tests.support.paths import COLLECTIONS, ROOT

TOKEN = "tok-5e1d-never-print-me"
PLAYBOOK_BIN = str(Path(sys.executable).parent / "ansible-playbook")

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [vars.yml]
  module_defaults:
    meshkit.connect.nomad_job:
      address: "{{ addr }}"
      wait_timeout: 20
  tasks:
    - name: plan a new job in check mode
      meshkit.connect.nomad_job: &shop
        mesh: "{{ mesh }}"
        job: "{{ job }}"
      check_mode: true
      register: r_check

    - name: check mode on another new job never registers it
      meshkit.connect.nomad_job:
        mesh: "{{ mesh }}"
        job: "{{ job | combine({'name': 'checkonly'}) }}"
      check_mode: true
      register: r_checkonly

    - name: run it
      meshkit.connect.nomad_job: *shop
      register: r_run

    - name: run it again
      meshkit.connect.nomad_job: *shop
      register: r_again

    - name: scale web, with diff
      meshkit.connect.nomad_job:
        mesh: "{{ mesh }}"
        job: "{{ job | combine({'groups': {'web': {'count': 3}}}) }}"
      diff: true
      register: r_diff

    - name: someone else changes the job between plan and register
      meshkit.connect.nomad_job:
        mesh: "{{ mesh }}"
        job: "{{ job | combine({'name': 'conflict', 'priority': 70}) }}"
      register: r_conflict
      ignore_errors: true

    - name: a deployment that fails
      meshkit.connect.nomad_job:
        mesh: "{{ mesh }}"
        job: "{{ job | combine({'name': 'broken'}) }}"
      register: r_broken
      ignore_errors: true

    - name: a field the cluster's Nomad does not know
      meshkit.connect.nomad_job:
        mesh: "{{ mesh }}"
        job: "{{ job | combine({'name': 'tooold', 'groups': {'web': {'pattern': 'sidecar'}}}) }}"
        nomad_version: "1.6.1"
      register: r_refused
      ignore_errors: true

    - name: stop it
      meshkit.connect.nomad_job:
        name: shop
        state: absent
      register: r_absent

    - name: stop it again
      meshkit.connect.nomad_job:
        name: shop
        state: absent
        purge: true
      register: r_purge

    - name: render on the controller with the filters
      ansible.builtin.set_fact:
        r_hcl: "{{ mesh | meshkit.connect.nomad_job_hcl(pinned) }}"
        r_json: "{{ mesh | meshkit.connect.nomad_job_json(pinned) }}"
      vars:
        pinned: "{{ job | combine({'nomad_version': '1.7.7'}) }}"

    - name: keep the results for the test
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: >-
          {{ {'check': r_check, 'checkonly': r_checkonly, 'run': r_run, 'again': r_again,
              'diff': r_diff, 'conflict': r_conflict, 'broken': r_broken,
              'refused': r_refused, 'absent': r_absent, 'purge': r_purge,
              'hcl': r_hcl, 'json': r_json} | to_json }}
        mode: "0600"
"""


class Unsafe(str):
    """Written as `!unsafe`: how a user keeps Ansible's Jinja2 off Nomad's {{ }} in vars."""


class VarsDumper(yaml.SafeDumper):
    pass


VarsDumper.add_representer(
    Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value), style="|")
)


def _job(name: str) -> dict[str, Any]:
    settings = parse_job_settings({**job_settings(), "name": name})
    return dict(to_api(build_job(parse_mesh(mesh_data("native")), settings)))


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("play")
    double = NomadDouble(version="1.7.7")
    double.serve()
    double.token = TOKEN
    double.register({"Job": _job("conflict")}, None)
    double.bump_after_plan.add("conflict")
    double.deployment_outcome["broken"] = "failed"
    try:
        settings = job_settings()
        del settings["nomad_version"]  # the module asks the agent: 1.7.7
        mesh = mesh_data("native")
        for service in mesh["meshkit_services"]:
            for template in service["nomad"]["task"].get("templates", []):
                template["data"] = Unsafe(template["data"])
        variables = {"addr": double.address, "mesh": mesh, "job": settings}
        variables["out"] = str(tmp / "results.json")
        (tmp / "vars.yml").write_text(yaml.dump(variables, Dumper=VarsDumper))
        (tmp / "play.yml").write_text(PLAYBOOK)
        (tmp / "hosts").write_text(f"localhost ansible_python_interpreter={sys.executable}\n")
        env = {
            **os.environ,
            "NOMAD_TOKEN": TOKEN,
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "0",
        }
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                "hosts",
                "-v",
                "play.yml",
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        if os.environ.get("MESHKIT_SHOW_PLAY"):
            print(proc.stdout, proc.stderr)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        results = json.loads((tmp / "results.json").read_text())
        return {"results": results, "stdout": proc.stdout + proc.stderr, "double": double}
    finally:
        double.close()


def writes_for(double: NomadDouble, job_id: str) -> list[Any]:
    return [
        r
        for r in double.writes()
        if (r.body or {}).get("Job", {}).get("ID") == job_id or r.path.endswith(f"/{job_id}")
    ]


def test_check_mode_plans_and_never_registers(played: dict[str, Any]) -> None:
    r = played["results"]
    assert r["check"]["changed"] is True and r["check"]["plan"]["diff_type"] == "Added"
    assert "eval_id" not in r["check"]
    assert r["checkonly"]["changed"] is True
    assert writes_for(played["double"], "checkonly") == []


def test_run_registers_and_waits_for_the_deployment(played: dict[str, Any]) -> None:
    r = played["results"]["run"]
    assert r["changed"] is True and r["eval_id"]
    assert r["deployment"]["status"] == "successful"
    assert r["nomad_version"] == "1.7.7"
    web = r["job"]["TaskGroups"][0]
    assert web["Services"][0]["Connect"] == {"Native": True}
    # The user's consul-template text, marked !unsafe in the vars, reached Nomad untouched.
    assert web["Tasks"][0]["Templates"][0]["EmbeddedTmpl"] == USER_TEMPLATE


def test_unchanged_job_is_not_changed(played: dict[str, Any]) -> None:
    r = played["results"]["again"]
    assert r["changed"] is False and r["plan"]["diff_type"] == "None"
    assert "eval_id" not in r


def test_changed_job_shows_the_plan_diff(played: dict[str, Any]) -> None:
    r = played["results"]["diff"]
    assert r["changed"] is True and r["plan"]["diff_type"] == "Edited"
    assert 'Task Group: "web"' in r["diff"]["prepared"]
    assert 'Count: "2" => "3"' in played["stdout"]


def test_index_conflict_is_a_clear_failure(played: dict[str, Any]) -> None:
    r = played["results"]["conflict"]
    assert r["failed"] is True
    assert "changed by someone else after the plan" in r["msg"]
    assert "Nothing was registered" in r["msg"]
    assert played["double"].jobs["conflict"].job["Priority"] == 50


def test_failed_deployment_names_the_allocation(played: dict[str, Any]) -> None:
    r = played["results"]["broken"]
    assert r["failed"] is True and r["changed"] is True
    assert "broken.web[0]" in r["msg"] and "unhealthy" in r["msg"]


def test_version_refusal_names_field_and_fix_and_sends_nothing(played: dict[str, Any]) -> None:
    r = played["results"]["refused"]
    assert r["failed"] is True
    assert any("prepared_query needs Nomad >= 1.6.2" in p for p in r["problems"])
    assert writes_for(played["double"], "tooold") == []


def test_absent_stops_then_purges(played: dict[str, Any]) -> None:
    assert played["results"]["absent"]["changed"] is True
    assert played["results"]["purge"]["changed"] is True
    assert "shop" not in played["double"].jobs


def test_token_is_sent_but_never_printed(played: dict[str, Any]) -> None:
    assert TOKEN not in played["stdout"]
    assert TOKEN not in json.dumps(played["results"])
    sent = {r.headers.get("X-Nomad-Token") for r in played["double"].requests}
    assert sent == {TOKEN}


def test_filters_render_the_golden_job_on_the_controller(played: dict[str, Any]) -> None:
    golden = Path(__file__).parent / "golden"
    assert played["results"]["hcl"] == (golden / "native.nomad.hcl").read_text()
    assert played["results"]["json"] == json.loads((golden / "native.nomad.json").read_text())
