# SPDX-License-Identifier: MPL-2.0
"""Run real ansible / ansible-playbook against localhost for the role tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.devagent import dev_agent  # noqa: F401  (a fixture for the role tests)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def playbook(path: Path, extra_vars: dict[str, Any], tmp: Path, *args: str) -> Run:
    vars_file = tmp / f"vars-{len(list(tmp.glob('vars-*.json')))}.json"
    vars_file.write_text(json.dumps(extra_vars))
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)]
    cmd += ["-e", f"@{vars_file}", *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=300, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def adhoc(module: str, args: dict[str, Any], tmp: Path) -> tuple[int, dict[str, Any]]:
    """One module on localhost; returns (rc, the module's JSON result from the tree callback)."""
    tree = tmp / f"tree-{len(list(tmp.glob('tree-*')))}"
    cmd = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local"]
    cmd += ["-m", module, "-a", json.dumps(args)]
    env = ansible_env()
    env.update(
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
        ANSIBLE_CALLBACK_TREE_DIR=str(tree),
    )
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False
    )
    result: dict[str, Any] = json.loads((tree / "localhost").read_text())
    return proc.returncode, result


@pytest.fixture
def render(tmp_path: Path):
    """Render one role template with the role's defaults, as the role would."""

    def _render(role: str, template: str, dest: Path, **extra: Any) -> Path:
        run = playbook(
            HERE / "render.yml",
            {"role_dir": str(ROOT / "roles" / role), "template_name": template,
             "dest": str(dest), **extra},
            dest.parent,
        )  # fmt: skip
        assert run.rc == 0, run.output
        return dest

    return _render
