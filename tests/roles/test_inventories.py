# SPDX-License-Identifier: MPL-2.0
"""The shipped inventories hold a valid mesh model (site.yml's first play, no connection)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.support.ansible_run import BIN, ansible_env
from tests.support.paths import ROOT

HERE = Path(__file__).resolve().parent

LAB_HOSTS = {
    "all": {
        "hosts": {
            "cp": {"ansible_host": "198.18.0.10"},
            "web": {"ansible_host": "198.18.0.11"},
            "db": {"ansible_host": "198.18.0.12"},
        },
        "children": {
            "mesh_control": {"hosts": {"cp": {}}},
            "web_servers": {"hosts": {"web": {}}},
            "db_servers": {"hosts": {"db": {}, "cp": {}}},
        },
    }
}


def validate(*inventories: Path) -> str:
    cmd = [str(BIN / "ansible-playbook"), str(HERE / "validate_inventory.yml")]
    for inventory in inventories:
        cmd += ["-i", str(inventory)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_example_inventory_is_valid():
    out = validate(ROOT / "inventories" / "example")
    for host, service in (("web1", "web"), ("web2", "web"), ("db1", "db"), ("db2", "db")):
        assert re.search(rf'ok: \[{host}\] => {{\s*"msg": \[\s*"{service}"', out), out


def test_lab_inventory_is_valid_with_unique_ids(tmp_path):
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(yaml.safe_dump(LAB_HOSTS))
    out = validate(ROOT / "inventories" / "lab", hosts)
    assert "Found both group and host with same name" not in out, out
    for host, service in (("web", "web-web"), ("db", "db-db"), ("cp", "db-cp")):
        assert re.search(rf'ok: \[{host}\] => {{\s*"msg": \[\s*"{service}"', out), out
