# SPDX-License-Identifier: MPL-2.0
"""The nomad_job module and the nomad_job_file filter with an operator's own job files,
through real ansible-playbook against a Nomad 0.11.8 double."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.meshkit.connect.plugins.module_utils import nomad_byo
from tests.support.nomad_byo_jobs import JOBS, load
from tests.support.nomad_double import NomadDouble
from tests.support.paths import COLLECTIONS, ROOT

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
    - name: check mode plans a job file and never registers it
      meshkit.connect.nomad_job:
        job_file: "{{ playbook_dir }}/web.nomad"
        mesh: "{{ mesh }}"
        job: {nomad_version: "1.7.7"}
      check_mode: true
      register: r_check

    - name: a model-rendered native job with nomad_version auto written in the settings
      meshkit.connect.nomad_job:
        mesh: "{{ mesh }}"
        job: {name: dbjob, services: [db], nomad_version: auto}
      register: r_model_auto
      ignore_errors: true

    - name: countdash as written, meshkit-proxy sidecars filled in (auto asks the agent)
      meshkit.connect.nomad_job: &countdash
        job_file: "{{ playbook_dir }}/countdash.nomad"
        mesh: "{{ mesh }}"
        job: {nomad_version: auto}
      register: r_run

    - name: the same file again
      meshkit.connect.nomad_job: *countdash
      register: r_again

    - name: a native job on a Nomad that cannot run it
      meshkit.connect.nomad_job:
        job_file: "{{ playbook_dir }}/postgres.nomad"
        mesh: "{{ mesh }}"
        job: {nomad_version: auto}
      register: r_refused
      ignore_errors: true

    - name: render a job file on the controller with the filter
      ansible.builtin.set_fact:
        r_hcl: "{{ lookup('file', 'web.nomad')
                   | meshkit.connect.nomad_job_file(mesh, {'nomad_version': '1.7.7'}) }}"

    - name: keep the results for the test
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: >-
          {{ {'run': r_run, 'again': r_again, 'refused': r_refused, 'hcl': r_hcl,
              'check': r_check, 'model_auto': r_model_auto} | to_json }}
        mode: "0600"
"""


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("play")
    double = NomadDouble(version="0.11.8")
    double.serve()
    try:
        for name in ("countdash.nomad", "postgres.nomad", "web.nomad"):
            shutil.copy(JOBS / name, tmp / name)
        mesh = yaml.safe_load((JOBS / "mesh.yml").read_text())
        variables = {"addr": double.address, "mesh": mesh, "out": str(tmp / "results.json")}
        (tmp / "vars.yml").write_text(yaml.safe_dump(variables))
        (tmp / "play.yml").write_text(PLAYBOOK)
        (tmp / "hosts").write_text(f"localhost ansible_python_interpreter={sys.executable}\n")
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "0",
        }
        env.pop("NOMAD_ADDR", None)
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "hosts", "play.yml"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        results = json.loads((tmp / "results.json").read_text())
        return {"results": results, "double": double}
    finally:
        double.close()


def test_job_file_runs_as_parsed_by_nomad_with_meshkit_filled_in(played: dict[str, Any]) -> None:
    r = played["results"]
    assert r["run"]["changed"] is True and r["run"]["nomad_version"] == "0.11.8"
    assert r["run"]["deployment"]["status"] == "successful"
    assert r["again"]["changed"] is False
    double: NomadDouble = played["double"]
    parses = [x.body["JobHCL"] for x in double.requests if x.path == "/v1/jobs/parse"]
    assert (JOBS / "countdash.nomad").read_text() in parses  # the file exactly as written
    dashboard = next(
        g for g in double.jobs["countdash"].job["TaskGroups"] if g["Name"] == "dashboard"
    )
    proxy = dashboard["Services"][0]["Connect"]["SidecarService"]["Proxy"]
    assert proxy["Upstreams"] == [{"DestinationName": "count-api", "LocalBindPort": 8081}]
    assert dashboard["Tasks"][0]["Env"] == {
        "COUNTING_SERVICE_URL": "http://${NOMAD_UPSTREAM_ADDR_count_api}"
    }


def test_auto_version_refuses_native_on_0_11_8_and_sends_nothing(played: dict[str, Any]) -> None:
    r = played["results"]["refused"]
    assert r["failed"] is True
    assert any(
        "postgres.nomad:46" in p and "needs Nomad >= 0.12.0, but nomad_version is 0.11.8" in p
        for p in r["problems"]
    ), r
    assert "postgres" not in played["double"].jobs
    assert not [x for x in played["double"].requests if "postgres" in x.path]


def test_filter_fills_the_job_file_and_keeps_its_templates(played: dict[str, Any]) -> None:
    hcl = played["results"]["hcl"]
    # lookup('file') drops the file's final newline; nothing else differs
    assert hcl == nomad_byo.render_hcl(load("web.nomad", "1.7.7"), "hcl2").rstrip("\n")
    assert '{{ with secret "kv/data/web" }}API_KEY={{ .Data.data.key }}{{ end }}' in hcl


def test_check_mode_plans_a_job_file_and_registers_nothing(played: dict[str, Any]) -> None:
    r = played["results"]["check"]
    assert r["changed"] is True and r["plan"]["diff_type"] == "Added"
    assert "web" not in played["double"].jobs
    assert not [
        x for x in played["double"].writes() if (x.body or {}).get("Job", {}).get("ID") == "web"
    ]


def test_auto_written_in_model_job_settings_asks_the_agent(played: dict[str, Any]) -> None:
    r = played["results"]["model_auto"]
    assert r["failed"] is True
    assert any("needs Nomad >= 0.12.0, but nomad_version is 0.11.8" in p for p in r["problems"]), r
    assert "dbjob" not in played["double"].jobs
