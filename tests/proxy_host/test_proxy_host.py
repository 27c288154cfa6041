# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy-host`: real sidecars forked from one real parent, against the real dev agent,
with real TLS between them: start, traffic, SIGHUP (add, remove, change, token rotation, a bad
file), a killed child, a bad file at start, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.host import child, envdir
from tests.support.devagent import DevAgent
from tests.support.echo import echo, try_echo
from tests.support.paths import ROOT
from tests.support.proxy_host import (
    HostProcess,
    SidecarHost,
    admin_status,
    alive,
    host_command,
    write_env,
)
from tests.support.proxy_process import proxy_env
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def host(agent: DevAgent, tmp_path: Path) -> Iterator[SidecarHost]:
    env_dir = tmp_path / "proxy"
    env_dir.mkdir()
    h = SidecarHost(agent, tmp_path, env_dir, HostProcess(tmp_path, env_dir))
    h.register_three()
    for sidecar_id in ("web", "api", "db"):
        token = h.token_file(sidecar_id)
        token.write_text(f"token-of-{sidecar_id}\n")
        h.write(sidecar_id, token_file=token, extra={"MESHKIT_TEST_OWNER": sidecar_id})
    try:
        h.host.start()
        h.host.wait_ready(h.admin)
        yield h
    finally:
        h.close()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_three_sidecars_ready_traffic_flows_and_sigterm_stops_them_all(host: SidecarHost) -> None:
    assert host.host.process is not None
    pids = host.host.pids("web", "api", "db")
    assert all(pids.values()), pids
    for sidecar_id, pid in pids.items():
        # Children of the one parent, each its own process group, named after its ID.
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) == host.host.process.pid and int(stat[2]) == pid
        assert Path(f"/proc/{pid}/comm").read_text().strip() == f"mk:{sidecar_id}"
        # What the kernel shows is the parent's exec-time environment: no sidecar's variables.
        seen = environ(pid)
        assert "MESHKIT_TEST_OWNER" not in seen and "CONSUL_HTTP_TOKEN_FILE" not in seen
    # upstream -> web's sidecar -> api's public listener (mTLS) -> api app
    wait_until(lambda: try_echo(host.upstream_port), 20, what=host.host.log)
    assert echo(host.upstream_port, b"through-host") == b"api:through-host"
    log = host.host.log()
    assert "[web] meshkit.proxy: serving as web" in log and "[api] meshkit" in log
    assert f"sidecar db started: pid {pids['db']}" in log

    assert host.host.stop() == 0
    assert not any(alive(p) for p in pids.values())
    assert not any(host.host.run_dir.glob("*.pid"))
    assert all(admin_status(p) == 0 for p in host.admin.values())


def test_a_child_environment_holds_only_its_file_and_the_basics(tmp_path: Path) -> None:
    """What a child puts in its os.environ before it runs the proxy (the kernel's
    /proc/PID/environ keeps showing the parent's exec-time environment, checked above)."""
    env_dir = tmp_path / "proxy"
    env_dir.mkdir()
    for sidecar_id in ("web", "api"):
        write_env(env_dir, sidecar_id, "127.0.0.1:8500", token_file=tmp_path / f"{sidecar_id}.tok")
    definitions = envdir.read_dir(env_dir)
    inherited = {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "JOURNAL_STREAM": "8:1",
        "CONSUL_HTTP_TOKEN": "the-parent's", "CONSUL_HTTP_ADDR": "10.0.0.1:8500",
        "MESHKIT_ADMIN_BIND": "127.0.0.1:1", "RUNTIME_DIRECTORY": "/run/x", "SECRET": "s",
    }  # fmt: skip
    got = child.environment(definitions["web"], inherited)
    assert got == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "JOURNAL_STREAM": "8:1",
        "CONSUL_HTTP_ADDR": "127.0.0.1:8500",
        "CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "web.tok"),
        "MESHKIT_ADMIN_BIND": definitions["web"].admin_bind,
        "MESHKIT_PROXY_ARGS": "-log-level debug",
        "MESHKIT_LOG_TAG": "web",
    }  # fmt: skip
    assert definitions["web"].argv == (
        "-sidecar-for", "web", "-admin-bind", definitions["web"].admin_bind,
        "-log-level", "debug",
    )  # fmt: skip


def test_sighup_adds_removes_and_restarts_only_what_changed(host: SidecarHost) -> None:
    before = host.host.pids("web", "api", "db")
    host.register("cache")
    host.write("cache")
    (host.env_dir / "db.env").unlink()
    host.write("api", token_file=host.token_file("api"), extra={"MESHKIT_TEST_OWNER": "api2"})
    host.host.signal(signal.SIGHUP)

    wait_until(lambda: admin_status(host.admin["db"]) == 0, 15, what="db's admin port closes")
    wait_until(lambda: host.host.pid_of("api") not in (0, before["api"]), 15, what=host.host.log)
    host.host.wait_ready({"api": host.admin["api"], "cache": host.admin["cache"]})
    assert not alive(before["db"]) and host.host.pid_of("db") == 0
    assert host.host.pid_of("web") == before["web"]

    # A token rotation: only the sidecar whose CONSUL_HTTP_TOKEN_FILE changed restarts.
    after = host.host.pids("web", "api", "cache")
    tmp = host.token_file("web").with_suffix(".new")
    tmp.write_text("rotated-token-of-web\n")
    os.replace(tmp, host.token_file("web"))
    host.host.signal(signal.SIGHUP)
    wait_until(lambda: host.host.pid_of("web") not in (0, after["web"]), 15, what=host.host.log)
    host.host.wait_ready({"web": host.admin["web"]})
    assert host.host.pids("api", "cache") == {"api": after["api"], "cache": after["cache"]}
    wait_until(lambda: try_echo(host.upstream_port), 20, what=host.host.log)


def test_a_killed_child_is_restarted(host: SidecarHost) -> None:
    before = host.host.pids("web", "api", "db")
    os.kill(before["api"], signal.SIGKILL)
    wait_until(lambda: host.host.pid_of("api") not in (0, before["api"]), 10, what=host.host.log)
    host.host.wait_ready({"api": host.admin["api"]})
    assert host.host.pids("web", "db") == {"web": before["web"], "db": before["db"]}
    assert f"sidecar api exited: pid {before['api']}, killed by signal 9" in host.host.log()


def test_a_bad_file_at_sighup_changes_nothing(host: SidecarHost) -> None:
    before = host.host.pids("web", "api", "db")
    bad = host.env_dir / "bad.env"
    bad.write_text("# a sidecar\nthis is not an assignment\n")
    host.register("cache")
    host.write("cache")
    host.host.signal(signal.SIGHUP)
    wait_until(lambda: f"{bad}:2: not a KEY=VALUE line" in host.host.log(), 10, what="the error")
    assert "nothing changed, the running sidecars keep running" in host.host.log()
    assert host.host.pids("web", "api", "db") == before
    assert host.host.pid_of("cache") == 0
    assert all(admin_status(host.admin[i]) == 200 for i in before)


def test_a_bad_file_at_start_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    env_dir = tmp_path / "proxy"
    env_dir.mkdir()
    write_env(env_dir, "web", "127.0.0.1:1")
    (env_dir / "db.env").write_text("CONSUL_HTTP_ADDR=127.0.0.1:1\n=oops\n")
    proc = subprocess.run(
        host_command("-dir", str(env_dir), "-run-dir", str(tmp_path / "run")),
        env=proxy_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"meshkit-proxy-host: {env_dir}/db.env:2: not a KEY=VALUE line")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-dir", "/nonexistent/meshkit"],
         "/nonexistent/meshkit: cannot list: No such file or directory"),
        (["-grace", "soon"],
         "-grace 'soon': not a number of seconds (see meshkit-proxy-host -help)"),
        (["-bogus"], "flag provided but not defined: -bogus (see meshkit-proxy-host -help)"),
        (["-dir"], "flag needs an argument: -dir (see meshkit-proxy-host -help)"),
    ],
)  # fmt: skip
def test_bad_flags_or_directory_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = subprocess.run(
        host_command("-run-dir", str(tmp_path / "run"), *args),
        env=proxy_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"meshkit-proxy-host: {message}\n"


RESTART_SCRIPT = (
    ROOT / "collections/ansible_collections/meshkit/connect/roles/mesh_proxy/files"
    / "meshkit-proxy-restart"
)  # fmt: skip


def test_the_role_restart_script_waits_for_the_changed_sidecar(host: SidecarHost) -> None:
    """files/meshkit-proxy-restart --host reload: `systemctl reload` (here a stand-in on PATH
    that does what ExecReload= does: SIGHUP to the parent), then each listed sidecar's new pid
    and /ready."""
    assert host.host.process is not None
    bin_dir = host.workdir / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "systemctl"
    shim.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "reload meshkit-proxy-host.service" ] || exit 3\n'
        f"exec kill -HUP {host.host.process.pid}\n"
    )
    shim.chmod(0o755)

    def reload_and_wait(timeout_s: int, sidecar: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(RESTART_SCRIPT), "--host", "reload", str(host.host.run_dir),
             str(timeout_s), f"{sidecar}:{host.admin[sidecar]}"],
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    before = host.host.pids("web", "api", "db")
    host.write("api", token_file=host.token_file("api"), extra={"MESHKIT_TEST_OWNER": "api3"})
    proc = reload_and_wait(20, "api")
    assert proc.returncode == 0, proc.stderr + host.host.log()[-3000:]
    new = host.host.pid_of("api")
    assert f"meshkit-proxy-host.service: sidecar api ready (pid {new})" in proc.stdout
    assert new != before["api"] and admin_status(host.admin["api"]) == 200
    assert host.host.pids("web", "db") == {"web": before["web"], "db": before["db"]}

    # Nothing changed: the sidecar keeps its pid, and the script says so when time is up.
    proc = reload_and_wait(1, "web")
    assert proc.returncode == 1
    assert f"sidecar web not restarted and ready after 1s (127.0.0.1:{host.admin['web']}" in (
        proc.stderr
    )
    assert host.host.pid_of("web") == before["web"]


def test_a_failing_sidecar_backs_off_and_the_others_run(host: SidecarHost) -> None:
    """A sidecar whose proxy exits at once (a bad flag: exit 2) is restarted after 1 s, 2 s,
    4 s, ...; it never stops the parent or the others."""
    before = host.host.pids("web", "api", "db")
    port = write_env(host.env_dir, "broken", host.agent.address)
    env_file = host.env_dir / "broken.env"
    env_file.write_text(env_file.read_text().replace("-log-level debug", "-no-such-flag"))
    host.host.signal(signal.SIGHUP)
    wait_until(lambda: "restarting in 4s" in host.host.log(), 15, what=host.host.log)
    log = host.host.log()
    assert log.index("sidecar broken exited") < log.index("restarting in 1s")
    assert log.index("restarting in 1s") < log.index("restarting in 2s")
    assert "sidecar broken exited: pid" in log and "exit status 2" in log
    assert "meshkit-proxy: flag provided but not defined: -no-such-flag" in log
    assert admin_status(port) == 0
    assert host.host.pids("web", "api", "db") == before

    # Fixed while it waits out a back-off: the new definition starts at once; removed: it stops.
    host.register("broken")
    env_file.write_text(env_file.read_text().replace("-no-such-flag", "-log-level debug"))
    host.host.signal(signal.SIGHUP)
    host.host.wait_ready({"broken": port}, timeout=3.5)  # sooner than the 4 s back-off
    assert "sidecar broken: definition changed; replacing it" in host.host.log()
    pid = host.host.pid_of("broken")
    env_file.unlink()
    host.host.signal(signal.SIGHUP)
    wait_until(lambda: not alive(pid) and host.host.pid_of("broken") == 0, 15, what=host.host.log)
    assert admin_status(port) == 0
    assert host.host.pids("web", "api", "db") == before
