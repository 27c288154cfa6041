# SPDX-License-Identifier: MPL-2.0
"""The rollout lab tests' common parts: their pytest marks, an isolated lab of their own, the
lab inventory's playbooks run against it, and a command on one of its machines.

Each rollout test boots its own isolated lab so that `.ci/molecule` can run it beside Molecule
and the other rollout tests; these helpers keep that set-up one piece of code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshkit_tools.lab import access, lab
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import LabSpec, default_spec
from tests.support.paths import ROOT
from tests.support.waits import wait_until

VENV_BIN = Path(sys.executable).parent

# Several full rollouts, run beside Molecule on two cores (.ci/molecule): 570-820 s there, so
# pytest's 600 s default is too tight; .ci/molecule bounds the whole step at 1500 s.
ROLLOUT_MARKS = [
    pytest.mark.lab,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("systemd-nspawn") is None,
        reason="lab tests need root and systemd-nspawn (apt-get install systemd-container)",
    ),
]


def isolated_lab(name: str) -> Iterator[tuple[LabSpec, LabPaths]]:
    """Boot the default lab (cp, web, db) as `name` in its own namespaces; yield it; tear it
    down and check nothing of it is left. Use it as a module-scoped fixture's body."""
    spec = default_spec(name, isolated=True)
    lab.down(spec.name, quiet=True)
    paths = lab.up(spec)
    try:
        yield spec, paths
    finally:
        lab.down(spec.name, quiet=True)
    assert lab.leftovers(spec.name) == []


def playbook(paths: LabPaths, tmp: Path, name: str, *extra: str) -> str:
    """`ansible-playbook` of playbooks/NAME with the lab inventory and this lab's hosts; its
    output is kept under `tmp` and returned; a failed run fails the test with its tail."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "lab"),
            "-i", str(paths.inventory), *extra, str(ROOT / "playbooks" / name)]  # fmt: skip
    res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1500,
                         check=False)  # fmt: skip
    (tmp / f"{name}.{time.monotonic_ns()}.log").write_text(res.stdout + res.stderr)
    assert res.returncode == 0, f"{name} failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}"
    return res.stdout.strip()


def run(
    spec: LabSpec, paths: LabPaths, machine: str, command: str
) -> subprocess.CompletedProcess[str]:
    """A shell command on one machine of the lab, over its ssh access (30 s at most)."""
    return access.ssh(spec, paths, spec.machine(machine), command, timeout=30)


def on(spec: LabSpec, paths: LabPaths, machine: str, command: str) -> str:
    """The stdout of a command that must succeed on one machine of the lab, stripped."""
    res = run(spec, paths, machine, command)
    assert res.returncode == 0, f"{machine}$ {command}: {res.stdout}{res.stderr}"
    return res.stdout.strip()


def changed_counts(output: str) -> set[str]:
    """The distinct `changed=` counts of a playbook's recap ({"0"}: the run changed nothing)."""
    return set(re.findall(r"changed=(\d+)", output.split("PLAY RECAP", 1)[-1]))


def settle(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    """A lab machine's state converging: polled every 0.5 s (each look may be an ssh round
    trip) until `check()` holds, for at most `timeout` seconds."""
    wait_until(check, timeout=timeout, interval=0.5, what=what)
