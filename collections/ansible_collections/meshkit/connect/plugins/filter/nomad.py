# SPDX-License-Identifier: MPL-2.0
"""Filters that render a Nomad job from the mesh model on the controller.

`{{ mesh | meshkit.connect.nomad_job_hcl(job) }}` and `nomad_job_json` give the same job as
the `nomad_job` module submits, for `nomad job run`, review or a CI artefact.
`{{ lookup('file', 'countdash.nomad') | meshkit.connect.nomad_job_file(mesh, job) }}` fills
meshkit into an operator's own job file (docs/nomad.md, "Bring your own job").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.meshkit.connect.plugins.module_utils import nomad_byo
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import (
    JobSpec,
    build_job,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import (
    hcl_syntax,
    to_api,
    to_hcl,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    JobSettings,
    parse_job_settings,
)


def _spec(mesh: Mapping[str, Any], job: Mapping[str, Any]) -> tuple[JobSpec, JobSettings]:
    try:
        settings = parse_job_settings(job, source="nomad filter job settings")
        return build_job(parse_mesh(mesh, source="nomad filter mesh"), settings), settings
    except ModelError as exc:
        raise AnsibleFilterError(str(exc)) from None


def nomad_job_hcl(mesh: Mapping[str, Any], job: Mapping[str, Any]) -> str:
    """HCL text of the job, in the syntax of its nomad_version (HCL1 before Nomad 1.0)."""
    spec, settings = _spec(mesh, job)
    return to_hcl(spec, hcl_syntax(settings.nomad_version))


def nomad_job_json(mesh: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """The job in the API form, wrapped as {"Job": ...} like `nomad job run -output`."""
    return {"Job": to_api(_spec(mesh, job)[0])}


def nomad_job_file(text: str, mesh: Mapping[str, Any], job: Mapping[str, Any] | None = None) -> Any:
    """An operator's own job (HCL or API JSON text) with meshkit's parts filled in where its
    services say `meta { meshkit = ... }`: HCL text back for HCL, {"Job": ...} for JSON."""
    settings_data = dict(job or {})
    version = settings_data.get("nomad_version")
    version = None if version in (None, "", "auto") else str(version)
    try:
        read = nomad_byo.settings_reader(settings_data, "nomad_job_file job settings", version)
        seen: list[JobSettings] = []

        def settings_for(job_id: str) -> JobSettings:
            seen.append(read(job_id))
            return seen[-1]

        byo = nomad_byo.load(
            str(text),
            "nomad_job_file input",
            parse_mesh(mesh, source="nomad filter mesh"),
            settings_for,
        )
        if byo.form == "json":
            return {"Job": nomad_byo.merge_api(byo.api or {}, byo)}
        return nomad_byo.render_hcl(byo, hcl_syntax(seen[-1].nomad_version))
    except ModelError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "nomad_job_hcl": nomad_job_hcl,
            "nomad_job_json": nomad_job_json,
            "nomad_job_file": nomad_job_file,
        }
