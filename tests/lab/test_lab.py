# SPDX-License-Identifier: MPL-2.0
"""Real machines: boot, reach each other, and leave nothing behind, also after failures.

Marked `lab` (root, systemd-nspawn, debootstrap'd image); `.ci/molecule` runs them, or
`pytest -m lab tests/lab`. The labs here are isolated (own gateway namespace) so they run next to
a host-mode lab someone is using.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit_tools.lab import lab, machines
from meshkit_tools.lab.errors import LabError
from meshkit_tools.lab.paths import LabPaths
from meshkit_tools.lab.spec import build_spec

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("systemd-nspawn") is None,
        reason="lab tests need root and systemd-nspawn (apt-get install systemd-container)",
    ),
]


def ansible(inventory: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    res = subprocess.run(
        [str(VENV_BIN / args[0]), "-i", str(inventory), *args[1:]],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    if check and res.returncode != 0:
        raise AssertionError(f"{args[0]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
    return res


@pytest.fixture
def two_machines() -> Iterator[LabPaths]:
    spec = build_spec("t-pair", ["a", "b"], {"pair": ["a", "b"]}, isolated=True)
    lab.down(spec.name, quiet=True)
    paths = lab.up(spec)
    try:
        yield paths
    finally:
        lab.down(spec.name, quiet=True)
    assert lab.leftovers(spec.name) == []


def test_machines_boot_and_talk_over_the_lab_network_only(two_machines: LabPaths) -> None:
    inv = two_machines.inventory
    res = ansible(inv, "ansible", "all", "-m", "command", "-a", "systemctl is-system-running")
    assert res.stdout.count("running") >= 2, res.stdout
    # a listens on its lab address; b connects to it across the bridge.
    ansible(
        inv, "ansible", "a", "-m", "shell", "-a",
        "systemd-run --unit=t-listen python3 -m http.server 8123 --bind 198.18.0.10",
    )  # fmt: skip
    res = ansible(
        inv, "ansible", "b", "-m", "ansible.builtin.uri",
        "-a", "url=http://198.18.0.10:8123/ return_content=false",
    )  # fmt: skip
    assert '"status": 200' in res.stdout, res.stdout
    routes = ansible(inv, "ansible", "b", "-m", "command", "-a", "ip -4 route").stdout
    assert "198.18.0.0/24 dev eth0" in routes
    assert "default" not in routes, "lab machines must have no route out"
    nft = "nft add table inet t && nft list tables"
    tables = ansible(inv, "ansible", "b", "-m", "shell", "-a", nft)
    assert "table inet t" in tables.stdout, "machines manage their own nftables"


def test_down_after_a_converge_that_failed_half_way() -> None:
    """A playbook fails mid-way and a machine is killed under it: down still removes everything."""
    spec = build_spec("t-fail", ["a", "b"], {"pair": ["a", "b"]}, isolated=True)
    lab.down(spec.name, quiet=True)
    paths = lab.up(spec)
    try:
        playbook = paths.state / "half.yml"
        playbook.write_text(
            "- hosts: pair\n  gather_facts: false\n  tasks:\n"
            "    - ansible.builtin.command: systemd-run --unit=t-work sleep 600\n"
            "    - ansible.builtin.fail: {msg: broken step}\n"
            "      when: inventory_hostname == 'b'\n"
        )
        res = ansible(paths.inventory, "ansible-playbook", str(playbook), check=False)
        assert res.returncode != 0 and "broken step" in res.stdout
        nspawn_a = [p for p in machines.running_pids(paths, "a") if _comm(p) == "systemd-nspawn"]
        assert nspawn_a, "machine a should be running before we kill it"
        os.kill(nspawn_a[0], signal.SIGKILL)  # the machine's supervisor dies: a crash
        assert lab.leftovers(spec.name) != []
    finally:
        problems = lab.down(spec.name, quiet=True)
    assert problems == []
    assert lab.leftovers(spec.name) == []
    assert lab.down(spec.name, quiet=True) == [], "down is idempotent"


def test_failed_boot_removes_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = build_spec("t-boot", ["a"], isolated=True)
    lab.down(spec.name, quiet=True)
    monkeypatch.setattr(lab, "BOOT_TIMEOUT", 0.01)  # sshd cannot answer that fast
    with pytest.raises(LabError, match="did not answer"):
        lab.up(spec)
    assert lab.leftovers(spec.name) == []


def test_host_mode_lab_via_the_cli() -> None:
    """The default (host) mode and the CLI: up, status, ssh, down, with nothing left behind."""
    from meshkit_tools.lab.net import gateway_holder

    if gateway_holder() is not None:
        pytest.skip("198.18.0.1 is held by another host-mode lab on this machine")
    meshkit = [sys.executable, "-m", "meshkit_tools.cli", "lab"]
    name = ["--name", "t-host"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "proxy")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*meshkit, *args], capture_output=True, text=True, env=env, timeout=180, check=False
        )

    try:
        up = run("up", *name, "--machines", "h1")
        assert up.returncode == 0, up.stderr
        assert "h1       198.18.0.10" in up.stdout
        status = run("status", *name)
        assert status.returncode == 0 and "running" in status.stdout, status.stdout
        out = run("ssh", *name, "h1", "hostname")
        assert out.stdout.strip() == "h1"
        # in host mode the host itself reaches the machine's sshd
        with socket.create_connection(("198.18.0.10", 22), timeout=5) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-")
    finally:
        down = run("down", *name)
    assert down.returncode == 0, down.stderr
    assert lab.leftovers("t-host") == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
