# SPDX-License-Identifier: MPL-2.0
"""Molecule scenarios and the demo read what exists: playbooks parse, paths resolve (no root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshkit_tools.demo import read_shape
from meshkit_tools.lab import access
from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import default_spec

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


def test_both_scenarios_exist() -> None:
    assert {"default", "upgrade"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_playbooks_exist_and_parse(scenario: str) -> None:
    sdir = ROOT / "molecule" / scenario
    config = yaml.safe_load((sdir / "molecule.yml").read_text())
    assert config["driver"]["name"] == "default"
    playbooks = config["provisioner"]["playbooks"]
    assert {"create", "destroy", "converge", "verify"} <= set(playbooks)
    sequence = config["scenario"]["test_sequence"]
    assert sequence[-1] == "destroy" and "lint" not in sequence
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "MOLECULE_SCENARIO_NAME": scenario,
        "MOLECULE_PROJECT_DIRECTORY": str(ROOT),
        "MOLECULE_EPHEMERAL_DIRECTORY": "/nonexistent",
        "MOLECULE_SCENARIO_DIRECTORY": str(sdir),
    }
    for role, rel in playbooks.items():
        path = (sdir / rel).resolve()
        assert path.is_file(), f"{scenario}: playbook {role} = {rel} does not exist"
        res = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", str(ROOT / "inventories"
             / "lab"), str(path)],
            capture_output=True, text=True, env=env, cwd=sdir, check=False, timeout=120,
        )  # fmt: skip
        assert res.returncode == 0, f"{scenario} {role}: {res.stderr[-2000:]}"


def test_demo_reads_its_traffic_from_the_lab_model() -> None:
    shape = read_shape(ROOT / "inventories" / "lab")
    assert 1 <= shape.upstream_port < 65536 and 1 <= shape.db_port < 65536
    assert shape.upstream_name


def test_demo_names_the_file_when_the_model_lacks_the_upstream(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web_servers.yml").write_text("meshkit_services: []\n")
    (tmp_path / "group_vars" / "db_servers.yml").write_text(
        "meshkit_services: [{name: db, port: 1}]\n"
    )
    with pytest.raises(LabError, match=r"group_vars: cannot read the demo's web upstream"):
        read_shape(tmp_path)


def _inventory(*sources: Path, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    argv = [str(VENV_BIN / "ansible-inventory"), "--list", "--export"]
    for source in sources:
        argv += ["-i", str(source)]
    res = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=ROOT, check=True, timeout=120
    )
    data: dict[str, Any] = json.loads(res.stdout)
    return data, res.stderr


def test_molecule_lab_inventory_is_quiet_before_create_and_the_lab_after(tmp_path: Path) -> None:
    """Molecule's lab inventory source: no warning before `create`, the lab's hosts after.

    Passing the lab's hosts.yml itself made Ansible warn "Unable to parse ... as an inventory
    source" on `destroy`, `syntax` and `create`; and groups named like hosts (web, db) made it
    warn "Found both group and host with same name" on every playbook.
    """
    script = ROOT / "molecule" / "resources" / "lab_inventory.py"
    lab_dir = ROOT / "inventories" / "lab"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "MESHKIT_LAB_STATE": str(tmp_path),
        "MOLECULE_SCENARIO_NAME": "quiet",
        "ANSIBLE_NOCOLOR": "1",
    }
    before, stderr = _inventory(lab_dir, script, env=env)
    assert "WARNING" not in stderr, stderr
    assert not before.get("_meta", {}).get("hostvars")

    paths = LabPaths("mol-quiet", base=tmp_path)
    paths.state.mkdir(parents=True)
    access.write_access_files(default_spec("mol-quiet", isolated=True), paths)
    after, stderr = _inventory(lab_dir, script, env=env)
    assert "WARNING" not in stderr, stderr
    from_file, _ = _inventory(lab_dir, paths.inventory, env=env)
    assert after == from_file  # the script answers exactly what the file says
    hostvars = after["_meta"]["hostvars"]
    assert hostvars["web"]["ansible_host"] == "198.18.0.11"
    db_servers = after["db_servers"]
    assert db_servers["hosts"] == ["db", "cp"] and "meshkit_services" in db_servers["vars"]
