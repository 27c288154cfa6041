# SPDX-License-Identifier: MPL-2.0
"""The collection as it ships: the tarball's tree, ansible-doc of the installed collection, the
mesh schema written where it is documented, and `meshkit render` from a plain pip install.

Real builds (`.ci/build-collection`: pip wheel + ansible-galaxy collection build), a real
install into an empty collections path, real `ansible-doc` and `meshkit` processes run from a
directory outside the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.support.mesh_examples import good
from tests.support.nomad_model import job_settings, mesh_data

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLES = ("consul_dev", "loopback_guard", "mesh_proxy", "mesh_service", "nomad_jobs")
PLAYBOOKS = ("site.yml", "verify.yml", "demo.yml")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "MESHKIT_VENV": str(VENV_BIN.parent)}
    build = subprocess.run(
        [str(ROOT / ".ci" / "build-collection"), str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    path = Path(build.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out
    return path


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("galaxy-user")
    (home / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {home / 'collections'}\nroles_path = {home / 'roles'}\n"
    )
    (home / "roles").mkdir()
    run_in(home, "ansible-galaxy", "collection", "install", "-p", str(home / "collections"),
           str(tarball))  # fmt: skip
    return home


def run_in(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(home / "ansible.cfg"), HOME=str(home), NO_COLOR="1")
    res = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:]], cwd=home, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, f"{argv}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
    return res


def test_the_tarball_holds_the_whole_product(tarball: Path) -> None:
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = set(members)
        assert not [n for n, m in members.items() if m.issym() or m.islnk()]
        for role in ROLES:
            for part in ("meta/argument_specs.yml", "defaults/main.yml", "tasks/main.yml"):
                assert f"roles/{role}/{part}" in names, f"roles/{role}/{part}"
        for playbook in PLAYBOOKS:
            assert f"playbooks/{playbook}" in names
        assert "playbooks/tasks/demo_app.yml" in names
        assert "roles/mesh_proxy/files/build_artefact.py" in names
        for doc in (
            "LICENSE",
            "README.md",
            "docs/mesh-model.md",
            "docs/rollout.md",
            "docs/nomad.md",
        ):
            assert doc in names, doc
        (host_name,) = [n for n in names if n.startswith("files/meshkit-") and n.endswith(".whl")]
        (tools_name,) = [n for n in names if n.startswith("files/meshkit_tools-")]
        inside = {}
        for name in (host_name, tools_name):
            wheel_file = tar.extractfile(name)
            assert wheel_file is not None
            wheel_path = tarball.parent / Path(name).name
            wheel_path.write_bytes(wheel_file.read())
            with zipfile.ZipFile(wheel_path) as wheel:
                inside[name] = set(wheel.namelist())
    # The host wheel: the proxy and nothing of the tools (no dev agent, lab, CLIs, module_utils).
    assert "meshkit/proxy_main.py" in inside[host_name]
    assert not [n for n in inside[host_name] if n.startswith(("meshkit_tools/", "meshkit/_coll"))]
    utils = "meshkit_tools/_collection/ansible_collections/meshkit/connect/plugins/module_utils/"
    tools = inside[tools_name]
    assert f"{utils}mesh_model.py" in tools and f"{utils}nomad_render.py" in tools
    assert "meshkit_tools/devagent/server.py" in tools and "meshkit_tools/cli.py" in tools


def test_ansible_doc_shows_suboptions_and_role_defaults(installed: Path) -> None:
    listing = run_in(installed, "ansible-doc", "-l", "meshkit.connect").stdout
    modules = sorted(line.split()[0] for line in listing.splitlines() if line.strip())
    assert "meshkit.connect.consul_service" in modules and "meshkit.connect.nomad_job" in modules
    docs = {m: run_in(installed, "ansible-doc", m).stdout for m in modules}
    service = docs["meshkit.connect.consul_service"]
    for field in ("local_bind_port", "destination_type", "local_service_address", "admin_port"):
        assert field in service, field
    assert "only_passing" in docs["meshkit.connect.consul_prepared_query"]
    for role in ROLES:
        run_in(installed, "ansible-doc", "-t", "role", f"meshkit.connect.{role}")
    proxy = run_in(installed, "ansible-doc", "-t", "role", "meshkit.connect.mesh_proxy").stdout
    assert "default: /opt/meshkit" in proxy
    assert "upstreams" in proxy and "local_bind_port" in proxy
    mesh = run_in(installed, "ansible-doc", "-t", "role", "meshkit.connect.mesh_service").stdout
    assert "destination" in mesh and "only_passing" in mesh


def test_the_playbooks_resolve_from_the_installed_collection(installed: Path) -> None:
    for playbook in ("site", "verify", "demo"):
        res = run_in(installed, "ansible-playbook", "--syntax-check", f"meshkit.connect.{playbook}")
        assert f"connect/playbooks/{playbook}.yml" in res.stdout


def test_the_written_schema_is_current() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "mesh-schema"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


def test_meshkit_render_from_a_plain_install(tarball: Path, tmp_path: Path) -> None:
    """A fresh venv outside the checkout with the wheel installed (not editable): the commands
    that need the collection's model code find the copy the wheel carries."""
    wheels = sorted(tarball.parent.glob("meshkit*.whl"))
    if len(wheels) != 2:  # the tree test extracts them; extract here when run alone
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".whl"):
                    data = tar.extractfile(member)
                    assert data is not None
                    (tarball.parent / Path(member.name).name).write_bytes(data.read())
        wheels = sorted(tarball.parent.glob("meshkit*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The dependencies come from this venv (no index needed); meshkit itself only from the wheels.
    site = Path(sysconfig.get_paths()["purelib"])
    (next(venv.glob("lib/python3*/site-packages")) / "deps.pth").write_text(f"{site}\n")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", *map(str, wheels)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    (work / "mesh.yml").write_text(yaml.safe_dump(good()))
    (work / "nomad-mesh.yml").write_text(yaml.safe_dump(mesh_data("native")))
    (work / "job.yml").write_text(yaml.safe_dump(job_settings()))
    dropped = ("PYTHONPATH", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["HOME"] = str(tmp_path)

    def meshkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "meshkit"), *args], cwd=work, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import meshkit; print(meshkit.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), where
    rendered = meshkit("render", "mesh.yml")
    assert rendered.returncode == 0, rendered.stderr
    assert "# service db: PUT /v1/agent/service/register" in rendered.stdout
    job = meshkit("nomad", "render", "--mesh", "nomad-mesh.yml", "--job", "job.yml")
    assert job.returncode == 0, job.stderr
    golden = ROOT / "tests" / "nomad" / "golden" / "native.nomad.hcl"
    assert job.stdout == golden.read_text()
