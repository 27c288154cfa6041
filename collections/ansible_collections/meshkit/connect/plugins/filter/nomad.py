"""Filters that render a Nomad job from the mesh model on the controller.

`{{ mesh | meshkit.connect.nomad_job_hcl(job) }}` and `nomad_job_json` give the same job as
the `nomad_job` module submits, for `nomad job run`, review or a CI artefact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    MeshError,
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import (
    JobSpec,
    build_job,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import (
    to_api,
    to_hcl,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    NomadSettingsError,
    parse_job_settings,
)


def _spec(mesh: Mapping[str, Any], job: Mapping[str, Any]) -> JobSpec:
    try:
        return build_job(
            parse_mesh(mesh, source="nomad filter mesh"),
            parse_job_settings(job, source="nomad filter job settings"),
        )
    except (MeshError, NomadSettingsError) as exc:
        raise AnsibleFilterError(str(exc)) from None


def nomad_job_hcl(mesh: Mapping[str, Any], job: Mapping[str, Any]) -> str:
    """HCL2 text of the job."""
    return to_hcl(_spec(mesh, job))


def nomad_job_json(mesh: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """The job in the API form, wrapped as {"Job": ...} like `nomad job run -output`."""
    return {"Job": to_api(_spec(mesh, job))}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"nomad_job_hcl": nomad_job_hcl, "nomad_job_json": nomad_job_json}
