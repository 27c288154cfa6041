# SPDX-License-Identifier: MPL-2.0
"""Bring your own job: real-world job files that ask for meshkit, rendered, planned and run
against the Nomad double through `meshkit nomad` as a process; everything not meshkit's comes
out equal in meaning (the parsed job before and after, minus meshkit's additions)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils import nomad_byo
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import hcl_syntax
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_versions import (
    parse_nomad_version,
)
from tests.support.meshkit_cli import meshkit_nomad
from tests.support.nomad_byo_jobs import FAST, JOBS, load, meaning
from tests.support.nomad_double import NomadDouble
from tests.support.nomad_hcl import parse_job

# job file -> (job ID, the Nomad version it is written for)
CASES = {
    "countdash.nomad": ("countdash", "0.11.8"),
    "postgres.nomad": ("postgres", "1.7.7"),
    "web.nomad": ("web", "1.7.7"),
}
HOST = {"Mode": "host"}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in (*CASES, "mesh.yml"):
        shutil.copy(JOBS / name, tmp_path / name)
    return tmp_path


def without_meshkit(job: dict[str, Any], byo: nomad_byo.ByoJob) -> dict[str, Any]:
    """The parsed job minus exactly what meshkit adds for each marked service."""
    out = copy.deepcopy(job)
    groups = {g["Name"]: g for g in out["TaskGroups"]}
    for part in byo.parts:
        group = groups[part.ref.group]
        (svc,) = [s for s in group["Services"] if s["Name"] == part.ref.name]
        del svc["Connect"]
        spec = part.group.services[0]
        if spec.native:
            assert svc.pop("PortLabel") == "mesh" and svc.pop("TaskName") == "meshkit-proxy"
            ours = {c.name for c in spec.checks}
            svc["Checks"] = [c for c in svc.get("Checks", []) if c["Name"] not in ours]
            if not svc["Checks"]:
                del svc["Checks"]
            for net in group.get("Networks", []):
                for key in ("DynamicPorts", "ReservedPorts"):
                    if key in net:
                        net[key] = [p for p in net[key] if p["Label"] != "mesh"]
                        if not net[key]:
                            del net[key]
            # a network meshkit wrote for its port alone (host mode, Nomad's default) goes too
            group["Networks"] = [n for n in group.get("Networks", []) if n not in ({}, HOST)]
            if not group["Networks"]:
                del group["Networks"]
            group["Tasks"] = [t for t in group["Tasks"] if t["Name"] != "meshkit-proxy"]
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_changes_nothing_but_meshkits_parts(files: Path, name: str) -> None:
    _job_id, version = CASES[name]
    proc = meshkit_nomad(
        "render", "--mesh", "mesh.yml", "--job-file", name, "--nomad-version", version, cwd=files
    )
    assert proc.returncode == 0, proc.stderr
    original = (JOBS / name).read_text()
    rendered = proc.stdout
    # every line the operator wrote is still there, in order (only lines were added)
    added = iter(rendered.splitlines())
    assert all(any(line == r for r in added) for line in original.splitlines())
    syntax = hcl_syntax(parse_nomad_version(version))
    before, after = parse_job(original, syntax), parse_job(rendered, syntax)
    byo = load(name, version)
    assert meaning(without_meshkit(after, byo)) == meaning(before)
    # the HCL splice and the JSON merge say the same job
    assert meaning(nomad_byo.merge_api(before, byo)) == meaning(after)
    assert {(p.ref.group, p.ref.name) for p in byo.parts}


def test_hcl1_job_keeps_the_sidecar_id_interpolation(files: Path) -> None:
    """Nomad 0.11.8 reads the file as HCL1: the -proxy-id must reach the job as ${...}."""
    proc = meshkit_nomad(
        "render", "--mesh", "mesh.yml", "--job-file", "countdash.nomad",
        "--nomad-version", "0.11.8", cwd=files,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "$${" not in proc.stdout
    job = parse_job(proc.stdout, "hcl1")
    api = next(g for g in job["TaskGroups"] if g["Name"] == "api")
    args = api["Services"][0]["Connect"]["SidecarTask"]["Config"]["args"]
    assert (
        args[1]
        == "_nomad-task-${NOMAD_ALLOC_ID}-group-${NOMAD_GROUP_NAME}-count-api-9001-sidecar-proxy"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_and_run_against_the_double(files: Path, double: NomadDouble, name: str) -> None:
    job_id, version = CASES[name]
    double.version = version
    common = ["--mesh", "mesh.yml", "--job-file", name, "--address", double.address]
    proc = meshkit_nomad("plan", *common, cwd=files)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith(f'+ Job: "{job_id}"')
    assert double.writes() == []
    parses = [r for r in double.requests if r.path == "/v1/jobs/parse"]
    assert parses and parses[0].body["JobHCL"] == (JOBS / name).read_text()  # the file as is

    proc = meshkit_nomad("run", *common, *FAST, cwd=files)
    assert proc.returncode == 0, proc.stderr
    assert '"status": "successful"' in proc.stdout
    registered = double.jobs[job_id].job
    syntax = double.hcl_syntax
    expected = nomad_byo.merge_api(
        parse_job((JOBS / name).read_text(), syntax), load(name, version)
    )
    bookkeeping = {"Version", "JobModifyIndex", "ModifyIndex", "CreateIndex", "Status", "Stop",
                   "Stable", "Namespace", "Type"}  # fmt: skip
    assert {k: v for k, v in registered.items() if k not in bookkeeping} == {
        k: v for k, v in expected.items() if k not in bookkeeping
    }
    proc = meshkit_nomad("plan", *common, cwd=files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_json_job_file_is_merged_and_run(files: Path, double: NomadDouble) -> None:
    """The API JSON form (what `nomad job run -output` prints) works the same way."""
    job = parse_job((JOBS / "postgres.nomad").read_text(), "hcl2")
    (files / "postgres.json").write_text(json.dumps({"Job": job}, indent=2))
    proc = meshkit_nomad(
        "render", "--mesh", "mesh.yml", "--job-file", "postgres.json",
        "--nomad-version", "1.7.7", cwd=files,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rendered = json.loads(proc.stdout)["Job"]
    byo = load("postgres.json", "1.7.7", json.dumps({"Job": job}))
    assert meaning(without_meshkit(rendered, byo)) == meaning(job)
    common = ["--mesh", "mesh.yml", "--job-file", "postgres.json", "--address", double.address]
    proc = meshkit_nomad("run", *common, *FAST, cwd=files)
    assert proc.returncode == 0, proc.stderr
    assert not [r for r in double.requests if r.path == "/v1/jobs/parse"]
    assert double.jobs["postgres"].job["TaskGroups"][0]["Tasks"][-1]["Name"] == "meshkit-proxy"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("name", "version", "edit", "expected"),
    [
        pytest.param(
            "countdash.nomad", "0.11.8",
            ("countdash.nomad", 'name = "count-api"', 'name = "count-apx"'),
            ["countdash.nomad:17:", 'service "count-apx" meta.meshkit',
             "service 'count-apx' is not in the mesh model", "fix: use one of: count-api"],
            id="unknown-service",
        ),
        pytest.param(
            "countdash.nomad", "0.11.8",
            ("countdash.nomad", "static = 9002", "static = 8081"),
            ["countdash.nomad:45:", "upstream count-api local_bind_port",
             '8081 (mesh model services.count-dashboard.sidecar.upstreams[0]) is already used '
             'in group \'dashboard\' by port "http" static (line 34)',
             "fix: choose another local_bind_port"],
            id="upstream-port-clash",
        ),
        pytest.param(
            "postgres.nomad", "0.11.8", None,
            ["postgres.nomad:46:", 'service "db" meta.meshkit',
             "connect { native = true } with a service task needs Nomad >= 0.12.0, but "
             "nomad_version is 0.11.8", "fix: upgrade Nomad to 0.12.0 or later, or use "
             'meta { meshkit = "sidecar" }'],
            id="pattern-too-new",
        ),
        pytest.param(
            "countdash.nomad", "1.7.7",
            ("countdash.nomad", '      port = "9001"\n', '      port = = "9001"\n'),
            ["countdash.nomad:14:14:", "not valid HCL near '='", "fix: fix the HCL at that line"],
            id="malformed-hcl",
        ),
        pytest.param(
            "countdash.nomad", "1.7.7",
            ("countdash.nomad", 'mode = "bridge"\n    }\n\n    service {\n      name = "count-api"',
             'mode = "host"\n    }\n\n    service {\n      name = "count-api"'),
            ["countdash.nomad:17:", 'group "api" network.mode',
             "pattern sidecar needs bridge networking",
             'fix: set network { mode = "bridge" } in group "api"'],
            id="sidecar-in-host-mode",
        ),
        pytest.param(
            "countdash.nomad", "0.11.8",
            ("countdash.nomad", 'meta {\n        meshkit = "sidecar"\n      }',
             'meta = { meshkit = "sidecar" }'),
            ["countdash.nomad:16:", 'group "api" service meta',
             "not a meta = {...} attribute", 'fix: write meta { meshkit = "..." }'],
            id="meta-as-attribute",
        ),
    ],
)  # fmt: skip
def test_bad_input_names_file_line_field_and_fix_and_submits_nothing(
    files: Path,
    double: NomadDouble,
    name: str,
    version: str,
    edit: tuple[str, str, str] | None,
    expected: list[str],
) -> None:
    if edit:
        _edit(files / edit[0], edit[1], edit[2])
    double.version = version
    for action in ("render", "plan", "run"):
        extra = (
            ["--nomad-version", version] if action == "render" else ["--address", double.address]
        )
        proc = meshkit_nomad(action, "--mesh", "mesh.yml", "--job-file", name, *extra, cwd=files)
        assert proc.returncode == 255, (action, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        for text in expected:
            assert text in proc.stderr, (action, text, proc.stderr)
        assert proc.stdout == ""
    assert [r.path for r in double.requests if r.path != "/v1/agent/self"] == []


def test_token_handling_is_a_meta_key_per_service() -> None:
    """meta.meshkit_consul_acls = "true": that sidecar reads Nomad's SI token; others do not."""
    text = (JOBS / "countdash.nomad").read_text()
    text = text.replace(
        'meshkit = "sidecar"\n      }\n    }\n\n    task "web"',
        'meshkit = "sidecar"\n        meshkit_consul_acls = "true"\n'
        '      }\n    }\n\n    task "web"',
    )
    byo = load("countdash.nomad", "0.11.8", text)
    job = parse_job(nomad_byo.render_hcl(byo, "hcl1"), "hcl1")
    args = {
        g["Name"]: g["Services"][0]["Connect"]["SidecarTask"]["Config"]["args"]
        for g in job["TaskGroups"]
    }
    assert args["api"][2:] == ["-token-file", "${NOMAD_SECRETS_DIR}/si_token"]
    assert "-token-file" not in args["dashboard"]


def test_an_hcl_file_does_not_render_as_json_offline(files: Path) -> None:
    proc = meshkit_nomad(
        "render", "--mesh", "mesh.yml", "--job-file", "web.nomad", "--format", "json", cwd=files
    )
    assert proc.returncode == 255 and "use --format hcl" in proc.stderr and proc.stdout == ""
