#!/usr/bin/python
# SPDX-License-Identifier: MPL-2.0
"""Ansible module: run the mesh's services as a Nomad job, planned and checked."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nomad_job
short_description: Render a Nomad job from the mesh model, plan it, register it, wait for it
description:
  - Builds a Nomad job from the mesh model (O(mesh)) and job settings (O(job)), or takes a
    ready API job (O(job_json)), then plans it with a diff, registers exactly the planned
    version (C(EnforceIndex) with the planned C(JobModifyIndex)) and optionally waits for
    the deployment.
  - Or takes the operator's own job file (O(job_file), HCL or API JSON) and fills in meshkit
    where a group service says C(meta { meshkit = "native" | "sidecar" | "envoy" }), from the
    mesh model service of the same name; the rest of the file reaches Nomad as Nomad's own
    C(/v1/jobs/parse) reads it (docs/nomad.md, "Bring your own job").
  - In check mode it stops after the plan and reports it; with C(--diff) the plan's field
    changes are shown. C(changed) is true only when the plan's diff type is not C(None).
  - O(state=absent) stops the job, and purges it with O(purge=true).
  - Each service becomes one group using the pattern in its C(nomad.pattern) (C(native),
    C(sidecar) or C(envoy)); see docs/nomad.md for the settings and the version gates.
version_added: "0.1.0"
author:
  - meshkit maintainers (@meshkit)
requirements:
  - python-nomad >= 2.0 on the host that runs the module
extends_documentation_fragment:
  - meshkit.connect.attributes
options:
  state:
    description: C(present) plans and registers; C(absent) stops the job.
    type: str
    choices: [present, absent]
    default: present
  name:
    description:
      - The job ID. Required for O(state=absent); for O(state=present) it defaults to
        C(job.name) or the C(ID) of O(job_json).
    type: str
  mesh:
    description:
      - The mesh model (C(services), C(prepared_queries), C(datacenter)), as in
        docs/mesh-model.md; the C(meshkit_) prefix of inventory variables is accepted.
    type: dict
  job:
    description:
      - Job settings (C(name), C(datacenters), C(namespace), C(region), C(type),
        C(priority), C(services), C(update), C(restart), C(proxy), C(groups)).
    type: dict
  job_file:
    description:
      - Path (on the host that runs the module) of your own Nomad job, HCL or API JSON, whose
        services ask for meshkit with C(meta) keys. Needs O(mesh); O(job) may then hold only
        C(nomad_version) and C(proxy). HCL is parsed by the Nomad agent (C(/v1/jobs/parse)).
    type: path
  job_json:
    description:
      - A job already in the API form (for example from the C(meshkit.connect.nomad_job_json)
        filter). Mutually exclusive with O(mesh).
    type: dict
  nomad_version:
    description:
      - The cluster's Nomad version, used to refuse fields it would silently drop. C(auto)
        asks the agent (C(/v1/agent/self)).
    type: str
    default: auto
  address:
    description: Nomad HTTP address with scheme; defaults to E(NOMAD_ADDR), then http://127.0.0.1:4646.
    type: str
  token:
    description: ACL token; defaults to E(NOMAD_TOKEN). Never logged or returned.
    type: str
  namespace:
    description: Namespace to plan and register in; defaults to the job's, then E(NOMAD_NAMESPACE).
    type: str
  region:
    description: Region; defaults to E(NOMAD_REGION).
    type: str
  validate_certs:
    description: Verify the server's TLS certificate. On by default (python-nomad's default is off).
    type: bool
    default: true
  ca_cert:
    description: CA bundle that signed the server's certificate; defaults to E(NOMAD_CACERT).
    type: path
  client_cert:
    description: Client certificate for mutual TLS; defaults to E(NOMAD_CLIENT_CERT).
    type: path
  client_key:
    description: Client key for mutual TLS; defaults to E(NOMAD_CLIENT_KEY).
    type: path
  timeout:
    description: Seconds for each HTTP request.
    type: int
    default: 10
  wait:
    description:
      - Wait for the evaluation and, for service jobs with an update block and a non-zero
        count, for the deployment to finish. System and batch jobs, count 0 and jobs without
        an update block do not wait for a deployment.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the deployment before failing with the unhealthy allocations.
    type: int
    default: 300
  purge:
    description: With O(state=absent), purge the job instead of only stopping it.
    type: bool
    default: false
attributes:
  check_mode:
    description: Plans and reports the plan; never registers or stops anything.
  diff_mode:
    description: Shows the plan's field changes the way C(nomad job plan) prints them.
notes:
  - Refusals of the version gates name the service, the field, the version needed and the fix.
"""

EXAMPLES = r"""
- name: Run web and db on Nomad through meshkit-proxy
  meshkit.connect.nomad_job:
    address: https://nomad.example.internal:4646
    ca_cert: /etc/meshkit/nomad-ca.pem
    mesh:
      datacenter: "{{ meshkit_datacenter }}"
      services: "{{ meshkit_services }}"
      prepared_queries: "{{ meshkit_prepared_queries }}"
    job:
      name: shop
      datacenters: [dc1]
      groups:
        db: {pattern: sidecar}
    wait_timeout: 600

- name: Run your own countdash job file, meshkit-proxy filling in the sidecars
  meshkit.connect.nomad_job:
    address: https://nomad.example.internal:4646
    job_file: /srv/jobs/countdash.nomad
    mesh:
      services: "{{ meshkit_services }}"

- name: Stop and purge it
  meshkit.connect.nomad_job:
    name: shop
    state: absent
    purge: true
"""

RETURN = r"""
job_id:
  description: The job ID.
  returned: always
  type: str
job:
  description: The job in the API form that was planned (no secrets in it).
  returned: state=present
  type: dict
plan:
  description: >-
    The plan: diff_type, job_modify_index, warnings, failed_groups (placement failures),
    desired_updates and the raw diff.
  returned: state=present
  type: dict
eval_id:
  description: The evaluation created by the registration.
  returned: when registered
  type: str
deployment:
  description: id, status, description of the deployment waited for, or a note why none.
  returned: when registered and wait=true
  type: dict
nomad_version:
  description: The Nomad version the gates were checked against.
  returned: state=present
  type: str
messages:
  description: Warnings worth reading (plan warnings, placement failures, nothing to do).
  returned: when any
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshkit.connect.plugins.module_utils import nomad_byo
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import (
    parse_mesh,
)
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import to_api
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
    version_request,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_submit import (
    NomadSubmitError,
    apply,
    client,
    connection_from,
    detect_version,
    format_diff,
    stop,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "name": {"type": "str"},
    "mesh": {"type": "dict"},
    "job": {"type": "dict"},
    "job_json": {"type": "dict"},
    "job_file": {"type": "path"},
    "nomad_version": {"type": "str", "default": "auto"},
    "address": {"type": "str"},
    "token": {"type": "str", "no_log": True},
    "namespace": {"type": "str"},
    "region": {"type": "str"},
    "validate_certs": {"type": "bool", "default": True},
    "ca_cert": {"type": "path"},
    "client_cert": {"type": "path"},
    "client_key": {"type": "path"},
    "timeout": {"type": "int", "default": 10},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 300},
    "purge": {"type": "bool", "default": False},
}


def _job_file(module: AnsibleModule, nomad: Any, conn: Any) -> tuple[dict[str, Any], str]:
    """An operator's own job file, meshkit filled in, as Nomad parses it."""
    p = module.params
    settings_data = dict(p["job"] or {})
    version = version_request(p["nomad_version"], settings_data.get("nomad_version"))
    if version == "auto":
        version = detect_version(nomad, conn)
    mesh = parse_mesh(p["mesh"] or {}, source="mesh option")
    read = nomad_byo.settings_reader(settings_data, "job option", version)
    byo = nomad_byo.load(nomad_byo.read_job_file(p["job_file"]), p["job_file"], mesh, read)
    return nomad_byo.job_for_nomad(nomad, conn, byo), version


def _render(module: AnsibleModule, nomad: Any, conn: Any) -> tuple[dict[str, Any], str]:
    p = module.params
    if p["job_file"] is not None:
        return _job_file(module, nomad, conn)
    if p["job_json"] is not None:
        job = dict(p["job_json"].get("Job", p["job_json"]))
        return job, p["nomad_version"]
    settings_data = dict(p["job"] or {})
    if p["name"] and not settings_data.get("name"):
        settings_data["name"] = p["name"]
    version = version_request(p["nomad_version"], settings_data.get("nomad_version"))
    if version == "auto":
        version = detect_version(nomad, conn)
    mesh = parse_mesh(p["mesh"] or {}, source="mesh option")
    settings = parse_job_settings(settings_data, source="job option", nomad_version=version)
    return to_api(build_job(mesh, settings)), version


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    job_ns = (p["job"] or {}).get("namespace") or ""
    conn = connection_from(
        address=p["address"],
        token=p["token"],
        namespace=p["namespace"] or job_ns,
        region=p["region"],
        validate_certs=p["validate_certs"],
        ca_cert=p["ca_cert"],
        client_cert=p["client_cert"],
        client_key=p["client_key"],
        timeout=p["timeout"],
    )
    nomad = client(conn)
    if p["state"] == "absent":
        job_id = str(p["name"] or (p["job"] or {}).get("name") or "")
        if not job_id:
            module.fail_json(msg="state=absent needs name (the job ID)")
        outcome = stop(nomad, conn, job_id, purge=p["purge"], check_mode=module.check_mode)
        result = outcome.result()
        result["job_id"] = job_id
        if module._diff:
            result["diff"] = {
                "before": f"job {job_id}: present\n" if outcome.changed else "",
                "after": "job stopped\n" if outcome.changed else "",
            }
        return result
    job, version = _render(module, nomad, conn)
    outcome = apply(
        nomad,
        conn,
        job,
        check_mode=module.check_mode,
        wait_for_deployment=p["wait"],
        wait_timeout=p["wait_timeout"],
    )
    result = outcome.result()
    result.update({"job_id": job["ID"], "job": job, "nomad_version": version})
    if module._diff and outcome.plan is not None:
        result["diff"] = {"prepared": format_diff(outcome.plan.diff)}
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[("mesh", "job_json"), ("job_file", "job_json")],
        required_by={"job_file": ("mesh",)},
        required_if=[("state", "present", ("mesh", "job_json"), True)],
    )
    try:
        module.exit_json(**run(module))
    except ModelError as exc:
        module.fail_json(msg=str(exc), problems=[str(x) for x in exc.problems])
    except NomadSubmitError as exc:
        module.fail_json(msg=str(exc), **dict(exc.details))


if __name__ == "__main__":
    main()
