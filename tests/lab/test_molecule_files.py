"""Molecule scenarios and the demo read what exists: playbooks parse, paths resolve (no root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshkit.demo import read_shape
from meshkit.lab.errors import LabError

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
    (tmp_path / "group_vars" / "web.yml").write_text("meshkit_services: []\n")
    (tmp_path / "group_vars" / "db.yml").write_text("meshkit_services: [{name: db, port: 1}]\n")
    with pytest.raises(LabError, match=r"group_vars: cannot read the demo's web upstream"):
        read_shape(tmp_path)
