# SPDX-License-Identifier: MPL-2.0
"""The bring-your-own job files of tests/nomad/jobs/, loaded the way `meshkit nomad` loads them
(with the mesh model beside them), and the equality Nomad itself applies to a parsed job."""

from __future__ import annotations

from typing import Any

import yaml

from ansible_collections.meshkit.connect.plugins.module_utils import nomad_byo
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)
from tests.support.paths import ROOT

JOBS = ROOT / "tests" / "nomad" / "jobs"
# `meshkit nomad run` flags that keep a run against the Nomad double short
FAST = ["--wait-timeout", "20", "--poll-interval", "0.05"]


def load(name: str, version: str, text: str | None = None) -> nomad_byo.ByoJob:
    mesh = parse_mesh(yaml.safe_load((JOBS / "mesh.yml").read_text()))
    return nomad_byo.load(
        text if text is not None else (JOBS / name).read_text(),
        name,
        mesh,
        lambda job_id: parse_job_settings({"name": job_id, "nomad_version": version}),
    )


def meaning(value: Any) -> Any:
    """Equal in meaning to Nomad: a false bool, an empty list and null are all "unset"."""
    if isinstance(value, dict):
        return {k: meaning(v) for k, v in value.items() if v not in (False, None, [])}
    if isinstance(value, list):
        return [meaning(v) for v in value]
    return value
