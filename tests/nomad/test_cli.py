# SPDX-License-Identifier: MPL-2.0
"""`meshkit nomad render|plan|run` as a real process: output and nomad-pack's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.meshkit_cli import meshkit_nomad
from tests.support.nomad_double import NomadDouble
from tests.support.nomad_model import job_settings, mesh_data

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "mesh.yml").write_text(yaml.safe_dump(mesh_data("native")))
    (tmp_path / "job.yml").write_text(yaml.safe_dump(job_settings()))
    return tmp_path


def test_render_prints_the_golden_job(files: Path) -> None:
    """Mesh-wide vars and the services in separate files, as group_vars would hold them."""
    data = mesh_data("native")
    services = {"meshkit_services": data.pop("meshkit_services")}
    (files / "all.yml").write_text(yaml.safe_dump(data))
    (files / "web.yml").write_text(yaml.safe_dump(services))
    for fmt, suffix in (("hcl", "hcl"), ("json", "json")):
        proc = meshkit_nomad(
            "render",
            "--mesh",
            "all.yml",
            "--mesh",
            "web.yml",
            "--job",
            "job.yml",
            "--format",
            fmt,
            cwd=files,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (GOLDEN / f"native.nomad.{suffix}").read_text()


def test_plan_and_run_exit_codes(files: Path, double: NomadDouble) -> None:
    double.token = "cli-token-1"
    (files / "token").write_text("cli-token-1\n")
    common = ["--mesh", "mesh.yml", "--job", "job.yml", "--address", double.address]
    auth = ["--token-file", "token"]

    proc = meshkit_nomad("plan", *common, cwd=files)
    assert proc.returncode == 255 and "HTTP 403" in proc.stderr

    proc = meshkit_nomad("plan", *common, *auth, cwd=files)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith('+ Job: "shop"')
    assert double.writes() == []

    proc = meshkit_nomad(
        "run", *common, *auth, "--wait-timeout", "20", "--poll-interval", "0.05", cwd=files
    )
    assert proc.returncode == 0, proc.stderr
    assert '"status": "successful"' in proc.stdout

    proc = meshkit_nomad("plan", *common, *auth, cwd=files)
    assert proc.returncode == 0, proc.stderr
    assert "cli-token-1" not in proc.stdout + proc.stderr


def test_bad_model_is_an_error_naming_the_file(files: Path) -> None:
    data = mesh_data("native")
    data["meshkit_services"][0]["nomad"]["pattern"] = "istio"
    (files / "mesh.yml").write_text(yaml.safe_dump(data))
    proc = meshkit_nomad("render", "--mesh", "mesh.yml", "--job", "job.yml", cwd=files)
    assert proc.returncode == 255
    assert "services.web.nomad.pattern" in proc.stderr and "native, sidecar, envoy" in proc.stderr
    assert proc.stdout == ""


def test_unreachable_nomad_is_an_error(files: Path) -> None:
    proc = meshkit_nomad(
        "plan",
        "--mesh",
        "mesh.yml",
        "--job",
        "job.yml",
        "--address",
        "http://127.0.0.1:9",
        cwd=files,
    )
    assert proc.returncode == 255
    assert "planning job shop failed at http://127.0.0.1:9" in proc.stderr


def test_nomad_version_auto_in_the_settings_file_asks_the_agent(
    files: Path, double: NomadDouble
) -> None:
    """`nomad_version: auto` written in the job file is not a version: the agent is asked, and
    a native job is refused on a 0.11.8 agent instead of being planned against 1.7.7."""
    double.version = "0.11.8"
    (files / "job.yml").write_text(yaml.safe_dump(job_settings(nomad_version="auto")))
    proc = meshkit_nomad(
        "plan", "--mesh", "mesh.yml", "--job", "job.yml", "--address", double.address, cwd=files
    )
    assert proc.returncode == 255, proc.stdout
    assert "needs Nomad >= 0.12.0, but nomad_version is 0.11.8" in proc.stderr
    assert [r.path for r in double.requests] == ["/v1/agent/self"]
