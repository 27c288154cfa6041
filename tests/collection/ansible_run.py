# SPDX-License-Identifier: MPL-2.0
"""Run real ansible-playbook against a dev agent and collect what every task returned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


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
