# SPDX-License-Identifier: MPL-2.0
"""The demo's closing words: commands that run as printed, and "dropped" for a timeout (no root).

`./run demo` runs `.venv/bin/meshkit` without the venv on PATH, so a hint reading
`meshkit lab ssh ...` was "command not found"; and the direct connection the loopback guard
drops (curl times out) was reported as "refused".
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from meshkit_tools.demo import DemoShape, closing_hints, direct_verdict
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import default_spec

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_a_timeout_is_dropped_never_refused() -> None:
    blocked, words = direct_verdict(28)  # curl: operation timed out
    assert blocked and words.startswith("dropped") and "refused" not in words
    blocked, words = direct_verdict(7)  # curl: failed to connect (reset)
    assert blocked and words.startswith("refused")
    blocked, words = direct_verdict(0)
    assert not blocked and words.startswith("NOT blocked")


@pytest.mark.parametrize("venv_on_path", [False, True])
def test_closing_hints_run_as_printed(
    venv_on_path: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if venv_on_path:
        path = f"{VENV_BIN}{os.pathsep}{path}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.chdir(ROOT)
    spec = default_spec("hint-test")
    hints = closing_hints(spec, LabPaths(spec.name, base=tmp_path), DemoShape(9191, "db", 8090))
    commands = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in hints}
    meshkit = shlex.split(commands["status"])[0]
    if venv_on_path:
        assert meshkit == "meshkit"
    else:  # .venv/bin/meshkit in a checkout's own venv; this venv's path here
        assert "/" in meshkit and Path(ROOT, meshkit).resolve() == (VENV_BIN / "meshkit").resolve()
    # Each meshkit hint starts a real meshkit (the lab is not up: it says so, by name).
    env = {**os.environ, "PATH": path, "MESHKIT_LAB_STATE": str(tmp_path)}
    for key in ("status", "tear down"):
        res = subprocess.run(
            shlex.split(commands[key]), capture_output=True, text=True, env=env, cwd=ROOT,
            timeout=60, check=False,
        )  # fmt: skip
        assert "command not found" not in res.stderr and res.returncode != 127, res.stderr
    ansible = shlex.split(commands["Ansible"])
    assert Path(ROOT, ansible[0]).is_file() or ansible[0] == "ansible-playbook"
    assert "inventories/lab" in ansible and "playbooks/verify.yml" in ansible
