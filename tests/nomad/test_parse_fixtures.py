# SPDX-License-Identifier: MPL-2.0
"""Issue 17 item 5: the HCL meshkit writes is the job it submits, on every Nomad it claims.

Nomad before 1.0 reads job files as HCL1 (keeps `${...}`, does not unescape `$$`), from 1.0 on
as HCL2. The derived `jobs/parse` answers in fixtures/nomad-0.11.8-derived/ say what 0.11.8
makes of given HCL; the double serves them."""

from __future__ import annotations

import json
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
from tests.support.meshkit_cli import meshkit_nomad
from tests.support.nomad_byo_jobs import meaning
from tests.support.nomad_double import DERIVED, NomadDouble
from tests.support.nomad_hcl import parse_job
from tests.support.nomad_model import USER_TEMPLATE
from tests.support.nomad_parse_cases import CASES, sidecar_model

PROXY_ID = "_nomad-task-${NOMAD_ALLOC_ID}-group-${NOMAD_GROUP_NAME}-db-5432-sidecar-proxy"


@pytest.mark.parametrize("stem", sorted(CASES()))
def test_stored_answers_are_current(stem: str) -> None:
    """Each stored answer is for the HCL meshkit writes today, as the reader derives it."""
    what, syntax, text = CASES()[stem]
    stored = json.loads((DERIVED / f"{stem}.json").read_text())
    assert stored["request"]["JobHCL"] == text, "rerun python -m tests.nomad.fixtures.derive"
    assert stored["syntax"] == syntax and stored["what"] == what
    assert stored["answer"] == parse_job(text, syntax)


def _sidecar_args(answer: dict[str, Any]) -> list[str]:
    db = next(g for g in answer["TaskGroups"] if g["Name"] == "db")
    return list(db["Services"][0]["Connect"]["SidecarTask"]["Config"]["args"])


def test_hcl2_escapes_read_by_nomad_0_11_8_break_the_proxy_id() -> None:
    """The defect, on record: HCL1 keeps $${NOMAD_ALLOC_ID}, so the ID never matches."""
    stored = json.loads((DERIVED / "p04-model-sidecar-hcl2-read-as-hcl1.json").read_text())
    assert _sidecar_args(stored["answer"])[1] == PROXY_ID.replace("${", "$${")


@pytest.mark.parametrize("version", ["0.11.8", "1.7.7"])
def test_rendered_hcl_parses_to_the_rendered_json(tmp_path: Path, version: str) -> None:
    """`meshkit nomad render --format hcl` for the version, parsed by that Nomad (the double's
    jobs/parse, stored answer for 0.11.8), is exactly the job `--format json` describes."""
    model, settings = sidecar_model(version)
    (tmp_path / "mesh.yml").write_text(yaml.safe_dump(model))
    (tmp_path / "job.yml").write_text(yaml.safe_dump(settings))
    outputs = {}
    for fmt in ("hcl", "json"):
        proc = meshkit_nomad("render", "--mesh", "mesh.yml", "--job", "job.yml", "--format", fmt,
                       cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outputs[fmt] = proc.stdout
    double = NomadDouble(version=version)
    double.serve()
    try:
        import nomad

        answer = nomad.Nomad(address=double.address, verify=False).jobs.parse(outputs["hcl"])
    finally:
        double.close()
    expected = json.loads(outputs["json"])["Job"]
    assert meaning(answer) == meaning(expected)
    assert _sidecar_args(answer)[1] == PROXY_ID
    web = next(g for g in answer["TaskGroups"] if g["Name"] == "web")
    assert web["Tasks"][0]["Templates"][0]["EmbeddedTmpl"] == USER_TEMPLATE
    if version == "0.11.8":
        assert "$${" not in outputs["hcl"] and "%%{" not in outputs["hcl"]
        assert expected == to_api(build_job(parse_mesh(model), parse_job_settings(settings)))
