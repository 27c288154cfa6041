#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Ansible inventory script: the lab inventory `meshkit lab up` wrote for this scenario.

Molecule passes its inventories to every playbook, `destroy` and `create` included, which run
before the lab (and its hosts.yml) exists. Given the hosts.yml path directly, Ansible warns
"Unable to parse .../hosts.yml as an inventory source" on each of them; this script answers an
empty inventory until the file exists, then the file's hosts, groups and connection variables.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def lab_inventory_file() -> Path:
    state = Path(os.environ.get("MESHKIT_LAB_STATE") or "/run/meshkit-lab")
    return state / f"mol-{os.environ.get('MOLECULE_SCENARIO_NAME', 'default')}" / "hosts.yml"


def to_script_format(data: dict[str, Any]) -> dict[str, Any]:
    """The YAML inventory shape ({all: {vars, hosts, children}}) as an inventory script's JSON."""
    out: dict[str, Any] = {"_meta": {"hostvars": {}}}
    hostvars: dict[str, Any] = out["_meta"]["hostvars"]

    def walk(name: str, group: dict[str, Any]) -> None:
        # A group may appear twice (defined under all, named again as a child): merge.
        entry: dict[str, Any] = out.setdefault(name, {"hosts": [], "children": []})
        hosts = group.get("hosts") or {}
        entry["hosts"] += [h for h in hosts if h not in entry["hosts"]]  # the file's order
        for host, variables in hosts.items():
            hostvars.setdefault(host, {}).update(variables or {})
        if group.get("vars"):
            entry.setdefault("vars", {}).update(group["vars"])
        children = group.get("children") or {}
        entry["children"] += [c for c in children if c not in entry["children"]]
        for child, body in children.items():
            walk(child, body or {})

    for name, group in data.items():
        walk(name, group or {})
    return out


def main() -> int:
    if "--host" in sys.argv:
        print("{}")  # every host variable is in _meta
        return 0
    path = lab_inventory_file()
    if not path.exists():
        print(json.dumps({"_meta": {"hostvars": {}}}))
        return 0
    import yaml  # the controller's Python (the venv's, or the system's python3-yaml)

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        print(f"{path}: cannot read the lab inventory: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(to_script_format(data or {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
