# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy-host` SIGUSR2 (upgrade in place) and the roll, with real sidecars forked from a
real parent against the real dev agent.

The parent is started the way systemd starts it: a console script (here a wrapper with the same
shape: a `#!python` line and `main()`), so `sys.argv[0]` is the script's path. The tests replace
the script between start and SIGUSR2; the new one writes a marker line, which proves the upgrade
ran the code at that path and not the code already loaded."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meshkit.host import upgrade
from tests.support.devagent import DevAgent
from tests.support.echo import echo, try_echo
from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.proxy_host import HostProcess, SidecarHost, admin_status, alive
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

IDS = ("api", "db", "web")  # the roll's order: IDs sorted


def write_program(path: Path, marker: Path, version: str) -> None:
    """A console script as pip writes one, plus a line in `marker`: `<version> <pid>`."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"with open({str(marker)!r}, 'a') as out:\n"
        f"    out.write('{version} %d\\n' % os.getpid())\n"
        "from meshkit.host.main import main\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(main())\n"
    )
    tmp.chmod(0o755)
    os.replace(tmp, path)  # as a release switch does: the path names a new file


@dataclass
class Host(SidecarHost):
    """The three sidecars under a parent started from `program`, whose runs `marker` records."""

    program: Path = field(kw_only=True)
    marker: Path = field(kw_only=True)

    @property
    def parent(self) -> int:
        assert self.host.process is not None
        return self.host.process.pid

    def versions(self) -> list[str]:
        return self.marker.read_text().split() if self.marker.exists() else []

    def wait_replaced(self, before: dict[str, int], timeout: float = 60.0) -> dict[str, int]:
        """Every sidecar of `before` under a new pid, ready, and seen ready by the parent's roll;
        the new pids."""
        for sidecar_id, old in before.items():
            wait_until(
                lambda i=sidecar_id, o=old: self.host.pid_of(i) not in (0, o)
                and admin_status(self.admin[i]) == 200
                and f"roll: sidecar {i} ready (pid {self.host.pid_of(i)}," in self.host.log(),
                timeout, what=lambda: self.host.log()[-4000:],
            )  # fmt: skip
        return self.host.pids(*before)


@pytest.fixture
def host(agent: DevAgent, tmp_path: Path) -> Iterator[Host]:
    env_dir = tmp_path / "proxy"
    env_dir.mkdir()
    program = tmp_path / "bin" / "meshkit-proxy-host"
    program.parent.mkdir()
    marker = tmp_path / "versions"
    write_program(program, marker, "v1")
    process = HostProcess(tmp_path, env_dir, "-ready-timeout", "4", program=[str(program)])
    h = Host(agent, tmp_path, env_dir, process, program=program, marker=marker)
    h.register_three()
    for sidecar_id in IDS:
        h.write(sidecar_id)
    try:
        h.host.start()
        h.host.wait_ready(h.admin)
        yield h
    finally:
        h.close()


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def position(log: str, text: str) -> int:
    assert text in log, f"{text!r} not in the log:\n{log[-4000:]}"
    return log.index(text)


def assert_one_at_a_time(log: str, old: dict[str, int], new: dict[str, int]) -> None:
    """For each ID in order: its old child gone, then its new child started, then ready; and the
    next one's old child is stopped only after that."""
    last_ready = -1
    for sidecar_id in sorted(old):
        stopped = position(log, f"sidecar {sidecar_id} stopped: pid {old[sidecar_id]},")
        started = position(log, f"sidecar {sidecar_id} started: pid {new[sidecar_id]},")
        ready = position(log, f"roll: sidecar {sidecar_id} ready (pid {new[sidecar_id]},")
        assert last_ready < stopped < started < ready, (sidecar_id, log[-4000:])
        last_ready = ready


def test_sigusr2_replaces_every_sidecar_one_at_a_time_under_the_same_parent(host: Host) -> None:
    parent = host.parent
    mask_before = {f: status_field(parent, f) for f in ("SigBlk", "SigIgn")}
    wait_until(lambda: try_echo(host.upstream_port), 20, what=host.host.log)
    assert echo(host.upstream_port, b"before") == b"api:before"
    before = host.host.pids(*IDS)

    write_program(host.program, host.marker, "v2")
    host.host.signal(signal.SIGUSR2)
    after = host.wait_replaced(before)

    # The code at argv[0] ran again, in the same process: the new release keeps systemd's MainPID.
    assert host.versions() == ["v1", str(parent), "v2", str(parent)]
    assert host.host.process is not None and host.host.process.poll() is None
    assert_one_at_a_time(host.host.log(), before, after)
    assert not any(alive(pid) for pid in before.values())
    for pid in after.values():
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) == parent and int(stat[2]) == pid  # its child, its own group
        assert status_field(pid, "SigBlk") == "0000000000000000"
    # The blocked signals stayed blocked across the exec and nothing new is ignored.
    assert {f: status_field(parent, f) for f in mask_before} == mask_before
    # The hand-over was for the exec only: neither the parent nor any child shows it.
    for pid in (parent, *after.values()):
        assert upgrade.HANDOVER_VARIABLE.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert "upgrade: adopted 3 running sidecars (api pid" in host.host.log()

    wait_until(lambda: try_echo(host.upstream_port), 20, what=host.host.log)
    assert echo(host.upstream_port, b"after") == b"api:after"
    assert host.host.stop() == 0
    assert not any(alive(pid) for pid in after.values())


def test_sighup_replaces_changed_sidecars_one_at_a_time(host: Host) -> None:
    before = host.host.pids(*IDS)
    host.write("api", extra={"MESHKIT_TEST_OWNER": "api2"})
    host.write("db", extra={"MESHKIT_TEST_OWNER": "db2"})
    host.host.signal(signal.SIGHUP)
    after = host.wait_replaced({"api": before["api"], "db": before["db"]})
    assert_one_at_a_time(host.host.log(), {i: before[i] for i in after}, after)
    assert host.host.pid_of("web") == before["web"]
    assert host.versions() == ["v1", str(host.parent)]  # a reload is not an upgrade


def test_a_bad_file_at_sigusr2_refuses_the_upgrade(host: Host) -> None:
    before = host.host.pids(*IDS)
    bad = host.env_dir / "bad.env"
    bad.write_text("not an assignment\n")
    write_program(host.program, host.marker, "v2")
    host.host.signal(signal.SIGUSR2)
    wait_until(lambda: "upgrade refused" in host.host.log(), 10, what=host.host.log)
    assert f"SIGUSR2: {bad}:1: not a KEY=VALUE line" in host.host.log()
    time.sleep(2)  # an exec or a roll after the refusal would show within this
    assert "roll: replacing" not in host.host.log()
    assert host.host.pids(*IDS) == before
    assert host.versions() == ["v1", str(host.parent)]
    assert all(admin_status(host.admin[i]) == 200 for i in IDS)


def test_an_exec_that_fails_keeps_the_old_parent_and_its_sidecars(host: Host) -> None:
    before = host.host.pids(*IDS)
    host.program.unlink()  # a release switch gone wrong: the path names nothing
    host.host.signal(signal.SIGUSR2)
    wait_until(lambda: "upgrade failed" in host.host.log(), 10, what=host.host.log)
    assert f"SIGUSR2: cannot exec {host.program}: No such file or directory" in host.host.log()
    assert host.host.process is not None and host.host.process.poll() is None
    assert host.host.pids(*IDS) == before

    # Still supervising, and a later SIGUSR2 with the program back upgrades.
    write_program(host.program, host.marker, "v2")
    host.host.signal(signal.SIGUSR2)
    host.wait_replaced(before)
    assert host.versions() == ["v1", str(host.parent), "v2", str(host.parent)]


def test_a_sidecar_never_ready_stops_the_roll_and_the_rest_keep_their_pids(host: Host) -> None:
    """api (first in ID order) points at a Consul that does not answer, so its new child never
    becomes ready: the roll stops after -ready-timeout (4 s here), db and web stay as they
    were, and the parent keeps supervising."""
    before = host.host.pids(*IDS)
    host.write("api", consul=f"127.0.0.1:{free_port()}")
    write_program(host.program, host.marker, "v2")
    host.host.signal(signal.SIGUSR2)
    # the old api drains (-grace 5 at most), the new one gets 4 s; bounded well inside 20 s
    wait_until(lambda: "roll stopped" in host.host.log(), 20, what=host.host.log)
    log = host.host.log()
    line = next(x for x in log.splitlines() if "roll stopped" in x)
    assert re.search(
        rf"roll: sidecar api not ready 4s after its start \(127\.0\.0\.1:{host.admin['api']} "
        r"/ready: .+\); roll stopped",
        line,
    ), line
    new_api = host.host.pid_of("api")
    assert new_api not in (0, before["api"]) and alive(new_api)
    assert host.host.pids("db", "web") == {"db": before["db"], "web": before["web"]}
    assert "roll: replacing sidecar db" not in host.host.log()
    assert admin_status(host.admin["db"]) == 200 and admin_status(host.admin["web"]) == 200

    # Fixed, a SIGHUP takes the roll up again: api's definition and the two older children.
    host.write("api")
    host.host.signal(signal.SIGHUP)
    host.wait_replaced({"api": new_api, "db": before["db"], "web": before["web"]})


def test_sigterm_during_a_roll_stops_everything_and_exits_0(host: Host) -> None:
    before = host.host.pids(*IDS)
    write_program(host.program, host.marker, "v2")
    host.host.signal(signal.SIGUSR2)
    wait_until(lambda: "roll: sidecar api ready" in host.host.log(), 30, what=host.host.log)
    seen = {*before.values(), *host.host.pids(*IDS).values()} - {0}
    assert host.host.stop() == 0
    assert not any(alive(pid) for pid in seen)
    assert not any(host.host.run_dir.glob("*.pid"))
    assert all(admin_status(host.admin[i]) == 0 for i in IDS)


def test_the_exec_command_is_the_script_path_or_the_module(tmp_path: Path) -> None:
    script = tmp_path / "meshkit-proxy-host"
    script.write_text("#!/bin/sh\n")
    assert upgrade.exec_command(
        [str(script), "-dir", "d"], ["/venv/bin/python3", str(script), "-dir", "d"], "/py"
    ) == [str(script), "-dir", "d"]
    assert upgrade.exec_command(
        ["/src/meshkit/host/main.py", "-dir", "d"],
        ["/py", "-X", "dev", "-m", "meshkit.host.main", "-dir", "d"],
        "/py",
    ) == ["/py", "-X", "dev", "-m", "meshkit.host.main", "-dir", "d"]


@pytest.mark.parametrize("value", ["web", "web=1", "web=x", "../x=5", "a=2,b"])
def test_a_malformed_handover_is_refused(value: str) -> None:
    with pytest.raises(upgrade.HandoverError):
        upgrade.decode(value)


def test_a_handover_round_trips() -> None:
    pids = {"web-1": 4242, "db": 17, "a:b.c_d": 99}
    assert upgrade.decode(upgrade.encode(pids)) == pids
    assert upgrade.decode("") == {}


RESTART_SCRIPT = (
    ROOT / "collections/ansible_collections/meshkit/connect/roles/mesh_proxy/files"
    / "meshkit-proxy-restart"
)  # fmt: skip


def test_the_role_restart_script_upgrades_and_waits_for_every_sidecar(host: Host) -> None:
    """files/meshkit-proxy-restart --host upgrade: `systemctl kill --kill-whom=main
    --signal=SIGUSR2` (here a stand-in on PATH that sends it to the parent), then every listed
    sidecar's new pid and /ready; a parent without the run directory's mark (a release before
    upgrades in place, which SIGUSR2 would kill) is restarted instead."""
    bin_dir = host.workdir / "shim"
    bin_dir.mkdir()
    calls = host.workdir / "systemctl-calls"
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        'case "$*" in\n'
        f'  "kill --kill-whom=main --signal=SIGUSR2 meshkit-proxy-host.service") '
        f"exec kill -USR2 {host.parent};;\n"
        '  "restart meshkit-proxy-host.service") exit 0;;\n'
        "esac\nexit 3\n"
    )
    (bin_dir / "systemctl").chmod(0o755)

    def upgrade_and_wait(timeout_s: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(RESTART_SCRIPT), "--host", "upgrade", str(host.host.run_dir),
             str(timeout_s), *(f"{i}:{host.admin[i]}" for i in IDS)],
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    before = host.host.pids(*IDS)
    write_program(host.program, host.marker, "v2")
    proc = upgrade_and_wait(20)
    assert proc.returncode == 0, proc.stderr + host.host.log()[-3000:]
    after = host.host.pids(*IDS)
    for sidecar_id in IDS:
        assert after[sidecar_id] != before[sidecar_id]
        assert f"sidecar {sidecar_id} ready (pid {after[sidecar_id]})" in proc.stdout
    assert host.versions() == ["v1", str(host.parent), "v2", str(host.parent)]

    (host.host.run_dir / ".upgrade-in-place").unlink()
    proc = upgrade_and_wait(1)
    assert "a release before upgrades in place); restarting instead" in proc.stdout
    assert calls.read_text().splitlines()[-1] == "restart meshkit-proxy-host.service"
    assert proc.returncode == 1  # the stand-in restarts nothing: no new pid within 3 x 1 s
    assert host.host.pids(*IDS) == after
