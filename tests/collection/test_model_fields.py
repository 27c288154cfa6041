# SPDX-License-Identifier: MPL-2.0
"""One set of field rules for everything users write in inventory: the mesh model and the Nomad
job settings read booleans (and Go durations) the same way and refuse them in the same words."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.module_utils.parsing.convert_bool import BOOLEANS, boolean

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
    Problem,
    format_duration,
    parse_duration,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)


def _mesh_flag(value: Any) -> bool | Problem:
    """The service's allow_non_loopback as the mesh model reads it, or the one problem."""
    data = {"meshkit_services": [{"name": "db", "port": 5432, "allow_non_loopback": value}]}
    try:
        return parse_mesh(data, source="host_vars/h1.yml").services[0].allow_non_loopback
    except ModelError as err:
        (problem,) = err.problems
        return problem


def _nomad_flag(value: Any) -> bool | Problem:
    """The job's proxy.consul_acls as the Nomad settings read it, or the one problem."""
    try:
        return parse_job_settings(
            {"name": "web", "proxy": {"consul_acls": value}}
        ).proxy.consul_acls
    except ModelError as err:
        (problem,) = err.problems
        return problem


ANSIBLE_ACCEPTS = sorted(
    {*BOOLEANS, "Yes", "YES", "On", "OFF", "True", "FALSE", " yes ", "N", "T"}, key=repr
)
ANSIBLE_REFUSES = ["maybe", "2", 2, -1, 0.5, "", "yes please", "enabled", "null"]


def test_the_same_inventory_yes_is_accepted_by_both() -> None:
    assert _mesh_flag("yes") is True
    assert _nomad_flag("yes") is True


def test_the_same_inventory_maybe_is_refused_by_both_in_the_same_words() -> None:
    mesh, nomad = _mesh_flag("maybe"), _nomad_flag("maybe")
    assert isinstance(mesh, Problem) and isinstance(nomad, Problem)
    assert mesh.path == "services[0] (db).allow_non_loopback"
    assert nomad.path == "job.proxy.consul_acls"
    assert mesh.message == nomad.message == "expected true or false, got 'maybe'"
    assert mesh.fix == nomad.fix == "write true or false"


@pytest.mark.parametrize("value", ANSIBLE_ACCEPTS, ids=repr)
def test_both_accept_exactly_what_ansible_accepts(value: Any) -> None:
    expected = boolean(value)
    assert _mesh_flag(value) is expected
    assert _nomad_flag(value) is expected


@pytest.mark.parametrize("value", ANSIBLE_REFUSES, ids=repr)
def test_both_refuse_what_ansible_refuses(value: Any) -> None:
    with pytest.raises(TypeError):
        boolean(value)
    assert isinstance(_mesh_flag(value), Problem)
    assert isinstance(_nomad_flag(value), Problem)


def test_the_error_names_the_source_and_counts_the_problems() -> None:
    with pytest.raises(ModelError) as mesh:
        parse_mesh(
            {"meshkit_services": [{"name": "db", "allow_non_loopback": "maybe"}]}, source="h"
        )
    assert str(mesh.value).startswith("h: 1 problem(s) in the mesh model:\n  - services[0] (db)")
    with pytest.raises(ModelError) as nomad:
        parse_job_settings({"name": "web", "proxy": {"consul_acls": "maybe"}}, source="job.yml")
    assert str(nomad.value).startswith("job.yml: 1 problem(s):\n  - job.proxy.consul_acls")


GO_DURATIONS = ["10s", "500ms", "1m30s", "1h", "1.5s", "2h45m", "100us", "100µs", "7ns"]
NOT_DURATIONS = ["10", "10 s", " 10s", "1d", "s", "1.s", "-1s", "1m 30s", "\u0661\u0660s", "ten"]


@pytest.mark.parametrize("text", GO_DURATIONS + NOT_DURATIONS)
def test_one_duration_grammar_for_check_fields_and_nomad_blocks(text: str) -> None:
    """A check's interval (passed on to Consul verbatim) and a Nomad update block's
    min_healthy_time (parsed, then written back) take the same texts with units."""
    service = {
        "name": "db",
        "port": 5432,
        "checks": [{"name": "up", "tcp": "x:1", "interval": text}],
    }
    try:
        parse_mesh({"meshkit_services": [service]})
        mesh_ok = True
    except ModelError as err:
        (problem,) = err.problems
        assert problem.path.endswith(".interval") and "Go duration" in problem.fix
        mesh_ok = False
    try:
        parse_job_settings({"name": "web", "update": {"min_healthy_time": text}})
        nomad_ok = True
    except ModelError as err:
        (problem,) = err.problems
        assert problem.path == "job.update.min_healthy_time" and "Go duration" in problem.fix
        nomad_ok = False
    if text.strip() == text:  # Nomad's block also forgives surrounding spaces
        assert mesh_ok == nomad_ok == (text in GO_DURATIONS)
    if nomad_ok:
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
