# SPDX-License-Identifier: MPL-2.0
"""The nomad_jobs role submits the model's jobs through meshkit.connect.nomad_job (Nomad double)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ansible_run import playbook, recap
from tests.support.nomad_double import NomadDouble
from tests.support.nomad_model import job_settings, mesh_data

HERE = Path(__file__).resolve().parent


@pytest.fixture
def nomad() -> Iterator[NomadDouble]:
    double = NomadDouble()
    double.serve()
    try:
        yield double
    finally:
        double.close()


def model() -> dict[str, Any]:
    """The Nomad tests' mesh, minus the user's consul-template text: passed with -e it would be
    templated by Ansible (in an inventory it needs !unsafe, see the role's README)."""
    data = copy.deepcopy(mesh_data("native"))
    del data["meshkit_services"][0]["nomad"]["task"]["templates"]
    return data


def test_submit_unchanged_then_stop(tmp_path, nomad):
    base = {
        "role_under_test": "nomad_jobs",
        **model(),
        "meshkit_nomad_jobs": [job_settings()],
        "nomad_jobs_address": nomad.address,
        "nomad_jobs_wait_timeout": 20,
    }
    first = playbook(HERE / "role_entry.yml", base, tmp_path)
    assert first.rc == 0, first.output
    assert recap(first)["changed"] == 1
    assert nomad.jobs["shop"].job["ID"] == "shop"
    writes = len(nomad.writes())

    again = playbook(HERE / "role_entry.yml", base, tmp_path)
    assert again.rc == 0, again.output
    assert recap(again)["changed"] == 0
    assert len(nomad.writes()) == writes

    stop = playbook(HERE / "role_entry.yml", {**base, "nomad_jobs_state": "absent"}, tmp_path)
    assert stop.rc == 0, stop.output
    assert recap(stop)["changed"] == 1
    assert nomad.jobs["shop"].job["Stop"] is True


def test_job_file_item_submits_the_operators_own_job(tmp_path, nomad):
    """An item with job_file: the file as written, meshkit filled in, next to a model job."""
    import yaml

    from tests.support.nomad_byo_jobs import JOBS

    jobs_mesh = yaml.safe_load((JOBS / "mesh.yml").read_text())
    base = {
        "role_under_test": "nomad_jobs",
        **jobs_mesh,
        "meshkit_nomad_jobs": [{"name": "postgres", "job_file": str(JOBS / "postgres.nomad")}],
        "nomad_jobs_address": nomad.address,
        "nomad_jobs_wait_timeout": 20,
    }
    first = playbook(HERE / "role_entry.yml", base, tmp_path)
    assert first.rc == 0, first.output
    assert recap(first)["changed"] == 1
    group = nomad.jobs["postgres"].job["TaskGroups"][0]
    assert [t["Name"] for t in group["Tasks"]] == ["postgres", "meshkit-proxy"]
    assert group["Volumes"]["pgdata"]["Source"] == "pgdata"
    parses = [r.body["JobHCL"] for r in nomad.requests if r.path == "/v1/jobs/parse"]
    assert parses == [(JOBS / "postgres.nomad").read_text()]
