# SPDX-License-Identifier: MPL-2.0
"""The collection as a Galaxy user gets it: the tarball, installed, rolls the demo mesh out.

Acceptance of issue 16: `.ci/build-collection` builds the tarball; it is installed into an empty
collections path; a fresh virtualenv with nothing but ansible-core runs
`ansible-playbook meshkit.connect.demo` (the demo apps, `meshkit.connect.site`, then
`meshkit.connect.verify`) from a directory outside the checkout, with an ansible.cfg that names
only that collections path and an empty roles path. The proxies on the hosts are installed from
the wheel shipped in the collection's files/ (no checkout holds the installed role). Then
traffic flows web -> db through the mesh and db's app port is closed around it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit_tools import demo
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import LabSpec
from tests.support.lab_rollout import ROLLOUT_MARKS, isolated_lab

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LAB = "t-galaxy"

pytestmark = ROLLOUT_MARKS


def ansible_core_requirement() -> str:
    """The ansible-core of the project's venv, so the fresh one installs from the same cache."""
    from importlib.metadata import version

    return f"ansible-core=={version('ansible-core')}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory outside the checkout: a fresh venv, the installed tarball, an ansible.cfg."""
    home = tmp_path_factory.mktemp("galaxy-user")
    assert not home.resolve().is_relative_to(ROOT)
    env = {**os.environ, "MESHKIT_VENV": str(VENV_BIN.parent)}
    build = subprocess.run(
        [str(ROOT / ".ci" / "build-collection"), str(home / "dist")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    tarball = Path(build.stdout.strip().splitlines()[-1])
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True, timeout=120)
    pip = subprocess.run(
        [str(home / "venv" / "bin" / "pip"), "install", "-q", ansible_core_requirement()],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    (home / "roles").mkdir()
    (home / "ansible.cfg").write_text(
        "[defaults]\n"
        f"collections_path = {home / 'collections'}\n"
        f"roles_path = {home / 'roles'}\n"
        "host_key_checking = False\ninterpreter_python = auto_silent\n"
        "retry_files_enabled = False\n[ssh_connection]\npipelining = True\n"
    )
    shutil.copytree(ROOT / "inventories" / "lab", home / "inventory")
    run(home, "ansible-galaxy", "collection", "install", "-p", str(home / "collections"),
        str(tarball))  # fmt: skip
    return home


def user_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANSIBLE_", "MOLECULE_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return {**env, "HOME": str(home), "ANSIBLE_CONFIG": str(home / "ansible.cfg"),
            "PATH": f"{home / 'venv' / 'bin'}:{os.environ['PATH']}",
            "ANSIBLE_DEPRECATION_WARNINGS": "false"}  # fmt: skip


def run(home: Path, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(home / "venv" / "bin" / argv[0]), *argv[1:]], cwd=home, env=user_env(home),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}"
        )
    return res


@pytest.fixture(scope="module")
def demo_lab() -> Iterator[tuple[LabSpec, LabPaths]]:
    yield from isolated_lab(LAB)


def test_installed_collection_rolls_the_demo_mesh_out(
    installed: Path, demo_lab: tuple[LabSpec, LabPaths]
) -> None:
    spec, paths = demo_lab
    installed_role = installed / "collections/ansible_collections/meshkit/connect/roles/mesh_proxy"
    assert installed_role.is_dir() and not installed_role.is_symlink()
    res = run(installed, "ansible-playbook", "-i", "inventory", "-i", str(paths.inventory),
              "meshkit.connect.demo", timeout=1800)  # fmt: skip
    assert "failed=0" in res.stdout and "unreachable=0" in res.stdout, res.stdout[-3000:]
    # The hosts' release was built from the shipped wheel (no checkout holds the installed role).
    (wheel,) = (installed_role.parent.parent / "files").glob("meshkit-*-py3-none-any.whl")
    artefacts = sorted((installed / ".cache" / "meshkit" / "artefacts").glob("meshkit-*.tar.gz"))
    assert artefacts, "no artefact was built from the shipped wheel"
    shape = demo.read_shape(installed / "inventory")
    assert demo.show_traffic(spec, paths, shape), "traffic did not flow as the demo shows"
    again = run(installed, "ansible-playbook", "-i", "inventory", "-i", str(paths.inventory),
                "meshkit.connect.site", timeout=1800)  # fmt: skip
    assert "failed=0" in again.stdout, again.stdout[-3000:]
    assert wheel.name.startswith("meshkit-")


def test_ansible_doc_of_the_installed_collection(installed: Path) -> None:
    listing = run(installed, "ansible-doc", "-l", "meshkit.connect").stdout
    modules = sorted(line.split()[0] for line in listing.splitlines() if line.strip())
    assert "meshkit.connect.consul_service" in modules
    for module in modules:
        run(installed, "ansible-doc", module)
    text = run(installed, "ansible-doc", "meshkit.connect.consul_service").stdout
    assert "sidecar" in text and "upstreams" in text
    roles = run(installed, "ansible-doc", "-t", "role", "-l", "meshkit.connect").stdout
    for role in ("consul_dev", "loopback_guard", "mesh_proxy", "mesh_service", "nomad_jobs"):
        assert f"meshkit.connect.{role}" in roles
        run(installed, "ansible-doc", "-t", "role", f"meshkit.connect.{role}")
    proxy = run(installed, "ansible-doc", "-t", "role", "meshkit.connect.mesh_proxy").stdout
    assert "default: /opt/meshkit" in proxy, proxy[:2000]
