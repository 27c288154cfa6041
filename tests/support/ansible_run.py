# SPDX-License-Identifier: MPL-2.0
"""Run real ansible / ansible-playbook against localhost.

`run_play` writes a play of Consul module tasks aimed at a dev agent and collects what every task
returned (through the `record_results` callback next to this file); `playbook` and `adhoc` run a
playbook or one module the way the role tests do, and `recap` reads the play recap they print.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ROOT

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class PlayRun:
    returncode: int
    results: list[dict[str, Any]]
    output: str
    seconds: float

    def task(self, name: str) -> dict[str, Any]:
        """The result of the task called ``name`` (the last one, if several ran)."""
        found = [r for r in self.results if r["task"] == name]
        assert found, f"no task {name!r} in {[r['task'] for r in self.results]}\n{self.output}"
        result: dict[str, Any] = found[-1]["result"]
        return result


def run_play(
    workdir: Path,
    tasks: list[dict[str, Any]],
    agent_address: str,
    *,
    name: str = "play",
    diff: bool = True,
    check: bool = False,
    extra_env: dict[str, str] | None = None,
    module_defaults: dict[str, Any] | None = None,
    timeout: float = 300,
) -> PlayRun:
    host, port = agent_address.rsplit(":", 1)
    defaults = {"host": host, "port": int(port)}
    defaults.update(module_defaults or {})
    play = [
        {
            "name": name,
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/meshkit.connect.consul": defaults},
            "tasks": tasks,
        }
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    playbook = workdir / f"{name}.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    results_file = workdir / f"{name}.results.json"
    results_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "ANSIBLE_"))}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
        ANSIBLE_CALLBACKS_ENABLED="record_results",
        ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(workdir / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        MESHKIT_RESULTS=str(results_file),
    )
    env.update(extra_env or {})
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        str(playbook),
    ]
    if diff:
        cmd.append("--diff")
    if check:
        cmd.append("--check")
    started = time.monotonic()
    proc = subprocess.run(
        cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False
    )
    seconds = time.monotonic() - started
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    return PlayRun(proc.returncode, results, proc.stdout + proc.stderr, seconds)


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


def recap(run: Run) -> dict[str, int]:
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+).*?failed=(\d+)", run.stdout)
    assert match, run.output
    return {"ok": int(match[1]), "changed": int(match[2]), "failed": int(match[3])}
