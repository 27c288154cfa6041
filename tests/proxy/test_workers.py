# SPDX-License-Identifier: MPL-2.0
"""`-workers`: the auto rule, bad values, and real worker processes behind one admin listener."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshkit.flags import AUTO, FlagError, parse, parse_setting
from meshkit.workers import (
    WorkersError,
    cgroup_cpu_max_texts,
    check_consul_mode,
    quota_cpus,
    resolve,
    usable_cpus,
)
from tests.support.echo import EchoApp, echo_once
from tests.support.pki_files import ThrowawayCA
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess, run_proxy_cli, start_proxy
from tests.support.static_mesh import inbound_config, outbound_config
from tests.support.waits import wait_until

# -- the auto rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cpus,quota,expected,why",
    [
        (8, None, 4, "auto: 8 CPUs, capped at 4"),
        (2, None, 2, "auto: 2 CPUs"),
        (1, None, 1, "auto: 1 CPU"),
        (3, None, 3, "auto: 3 CPUs"),
        (8, 1.5, 2, "auto: 8 CPUs, cgroup quota 1.5 CPUs"),
        (8, 0.2, 1, "auto: 8 CPUs, cgroup quota 0.2 CPUs"),
        (8, 3.0, 3, "auto: 8 CPUs, cgroup quota 3 CPUs"),
        (2, 16.0, 2, "auto: 2 CPUs, cgroup quota 16 CPUs"),
        (16, 12.0, 4, "auto: 16 CPUs, cgroup quota 12 CPUs, capped at 4"),
        (0, None, 1, "auto: 0 CPUs"),
    ],
)
def test_auto_is_cpus_quota_and_cap(
    cpus: int, quota: float | None, expected: int, why: str
) -> None:
    assert resolve(AUTO, cpus=cpus, quota=quota) == (expected, why)


def test_explicit_count_is_kept_beyond_cpus_and_cap() -> None:
    assert resolve(6, cpus=2, quota=1.0) == (6, "configured")


def test_cpu_max_quota_parsing() -> None:
    assert quota_cpus([]) is None
    assert quota_cpus(["max 100000\n"]) is None
    assert quota_cpus(["150000 100000\n"]) == 1.5
    assert quota_cpus(["max 100000", "300000 100000", "50000 50000"]) == 1.0
    assert quota_cpus(["garbage", "-1 100000"]) is None


def test_cpu_max_is_read_from_the_own_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    (root / "system.slice" / "web.service").mkdir(parents=True)
    (root / "system.slice" / "cpu.max").write_text("max 100000\n")
    (root / "system.slice" / "web.service" / "cpu.max").write_text("250000 100000\n")
    own = tmp_path / "self-cgroup"
    own.write_text("1:cpu:/ignored\n0::/system.slice/web.service\n")
    texts = cgroup_cpu_max_texts(root, own)
    assert texts == ["max 100000\n", "250000 100000\n"]
    assert resolve(AUTO, cpus=8, quota=quota_cpus(texts))[0] == 3
    # a container's own cgroup at the root of its namespace: /sys/fs/cgroup/cpu.max itself
    (root / "cpu.max").write_text("100000 100000\n")
    own.write_text("0::/\n")
    assert quota_cpus(cgroup_cpu_max_texts(root, own)) == 1.0
    # cgroup v1 only, or nothing readable: no quota
    assert cgroup_cpu_max_texts(tmp_path / "none", tmp_path / "missing") == []


# -- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "65", "many", "1.5", "", "²", 0, -3, 65, True, 2.0])
def test_bad_settings_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="1 to 64, or auto"):
        parse_setting(value)


@pytest.mark.parametrize("value,expected", [("auto", AUTO), ("AUTO", AUTO), ("3", 3), (64, 64)])
def test_good_settings(value: object, expected: object) -> None:
    assert parse_setting(value) == expected


@pytest.mark.parametrize("value", ["0", "-2", "65", "lots"])
def test_bad_flag_names_the_flag_and_the_fix(value: str) -> None:
    with pytest.raises(FlagError, match=r"^-workers: .*give a number of processes from 1 to 64"):
        parse(["-service", "x", "-workers", value], env={})


def test_flag_default_is_unset_and_auto_parses() -> None:
    assert parse(["-service", "x"], env={}).workers is None
    assert parse(["-service", "x", "-workers=auto"], env={}).workers == AUTO


def test_bad_flag_exits_2() -> None:
    done = run_proxy_cli("-config", "x.yaml", "-workers", "0")
    assert done.returncode == 2
    assert "-workers: '0' is not a positive whole number" in done.stderr


def _static_file(tmp_path: Path, ca: ThrowawayCA, **extra: Any) -> Path:
    config = inbound_config("db", ca.leaf("db"), [ca.root_file()], 8080, free_port())
    config.update(extra)
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("value", [0, 100, "few", True])
def test_bad_file_key_exits_2_naming_file_and_key(
    tmp_path: Path, ca: ThrowawayCA, value: object
) -> None:
    path = _static_file(tmp_path, ca, workers=value)
    done = run_proxy_cli("-config", str(path))
    assert done.returncode == 2, done.stderr
    assert re.search(
        rf"^meshkit-proxy: {re.escape(str(path))}: workers: .*1 to 64, or auto", done.stderr, re.M
    )


def test_port_0_with_explicit_workers_is_refused(tmp_path: Path, ca: ThrowawayCA) -> None:
    config = inbound_config("db", ca.leaf("db"), [ca.root_file()], 8080, 0)
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_proxy_cli("-config", str(path), "-workers", "2")
    assert done.returncode == 2
    assert "public_listener binds port 0" in done.stderr


def test_consul_mode_takes_one_worker() -> None:
    for ok in (None, AUTO, 1):
        check_consul_mode(ok)
    with pytest.raises(WorkersError, match="static-mode only"):
        check_consul_mode(2)


def test_consul_mode_refuses_workers_2() -> None:
    # refused before any agent is contacted: the address below has nothing listening
    done = run_proxy_cli("-proxy-id", "web-proxy", "-http-addr", "127.0.0.1:1", "-workers", "2")
    assert done.returncode == 2
    assert "-workers 2: worker processes are static-mode only" in done.stderr
    assert "Consul watches and leaf-certificate requests" in done.stderr


# -- real worker processes -----------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie that someone other than us must reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def reaped(pid: int) -> bool:
    """Gone for good: worker 0 collected it (a zombie of a dead worker 0 would still show)."""
    return not Path(f"/proc/{pid}").exists()


def start_workers(
    tmp_path: Path, name: str, config: dict[str, Any], count: int = 2
) -> ProxyProcess:
    proxy = start_proxy(tmp_path, name, config, "-workers", str(count))
    wait_until(lambda: len(children_of(proxy.process.pid)) == count - 1, timeout=5)
    return proxy


@pytest.fixture
def db_proxy(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> Iterator[ProxyProcess]:
    config = inbound_config("db", ca.leaf("db"), [ca.root_file()], app.port, free_port())
    proxy = start_workers(tmp_path, "db-proxy", config)
    yield proxy
    proxy.stop()


def test_metrics_and_readiness_cover_every_worker(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    public, upstream = free_port(), free_port()
    generous = {"handshake_timeout_ms": 30000, "local_connect_timeout_ms": 30000}
    inbound = start_workers(
        tmp_path,
        "db-proxy",
        inbound_config("db", ca.leaf("db"), [ca.root_file()], app.port, public, **generous),
    )
    target = {"address": f"127.0.0.1:{public}", "spiffe_id": ca.identity("db").uri}
    outbound = start_workers(
        tmp_path,
        "web-proxy",
        outbound_config(
            "web", ca.leaf("web"), [ca.root_file()], [target], upstream, connect_timeout_ms=30000
        ),
    )
    try:
        assert inbound.admin("/ready") == (200, "ready\n")
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: echo_once(upstream, b"%03d" % i, 30), range(200)))
        assert replies == [b"%03d" % i for i in range(200)]
        assert app.accepts == 200
        for proxy in (inbound, outbound):
            # closes are counted when each side has finished; poll briefly
            wait_until(lambda p=proxy: p.metric_sum("inbound_conns") == 0, timeout=5)
            metrics = proxy.metrics()
            assert proxy.metric_sum("connections_total") == 200, metrics
            assert metrics["meshkit_proxy_workers"] == 2
            assert metrics["meshkit_proxy_workers_up"] == 2
            assert metrics["meshkit_proxy_ready"] == 1
        assert inbound.metric_sum("inbound_rx_bytes_total") == 600
        assert outbound.metric_sum("upstream_tx_bytes_total") == 600

        # A stuck worker (SIGSTOP) is reported within the query timeout, not waited on; its
        # connections drop out of the sum, which shows it had some of the 200.
        child = children_of(inbound.process.pid)[0]
        os.kill(child, signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, body = inbound.admin("/ready", timeout=5)
            assert time.monotonic() - started < 3
            assert status == 503
            assert body.startswith("not ready: worker 1: no answer within 1 s"), body
            metrics = inbound.metrics()
            assert metrics["meshkit_proxy_workers_up"] == 1
            assert metrics["meshkit_proxy_ready"] == 0
            assert 0 < inbound.metric_sum("connections_total") < 200
        finally:
            os.kill(child, signal.SIGCONT)
        wait_until(lambda: inbound.admin("/ready") == (200, "ready\n"), timeout=5)
        assert inbound.metric_sum("connections_total") == 200
        assert inbound.metrics()["meshkit_proxy_workers_up"] == 2
    finally:
        codes = (outbound.stop(), inbound.stop())
    assert codes == (0, 0), f"{outbound.log()}\n{inbound.log()}"


def test_worker_stopped_on_its_own_stops_the_proxy(db_proxy: ProxyProcess) -> None:
    # Only worker 0 is asked to stop (SIGTERM to the unit's main process); a worker that ends
    # by itself, even cleanly, leaves the proxy short of a process: all stop, exit 1.
    child = children_of(db_proxy.process.pid)[0]
    os.kill(child, signal.SIGTERM)
    db_proxy.process.wait(10)
    assert db_proxy.process.returncode == 1
    assert re.search(
        rf"worker 1 \(pid {child}\) exited unexpectedly: exit status 0", db_proxy.log()
    )
    assert reaped(child)


def test_killed_worker_stops_the_whole_proxy(db_proxy: ProxyProcess) -> None:
    children = children_of(db_proxy.process.pid)
    assert len(children) == 1
    started = time.monotonic()
    os.kill(children[0], signal.SIGKILL)
    db_proxy.process.wait(10)
    elapsed = time.monotonic() - started
    assert db_proxy.process.returncode == 1, db_proxy.log()
    assert elapsed < 5, elapsed  # found within a reap interval, then an idle drain
    assert f"worker 1 (pid {children[0]}) exited unexpectedly: killed by signal 9 (SIGKILL)" in (
        db_proxy.log()
    )
    assert all(reaped(pid) for pid in children)
    assert not children_of(db_proxy.process.pid)


def test_sigterm_drains_every_worker_and_exits_0(db_proxy: ProxyProcess) -> None:
    children = children_of(db_proxy.process.pid)
    assert db_proxy.stop() == 0, db_proxy.log()
    assert all(reaped(pid) for pid in children)
    assert db_proxy.log().count("stopping: draining connections") == 2


def test_sighup_reaches_every_worker(db_proxy: ProxyProcess) -> None:
    db_proxy.signal(signal.SIGHUP)
    wait_until(
        lambda: db_proxy.log().count("configuration reloaded from") == 2,
        timeout=10,
        what=db_proxy.log,
    )


def test_killed_parent_takes_its_workers_along(db_proxy: ProxyProcess) -> None:
    children = children_of(db_proxy.process.pid)
    db_proxy.process.kill()
    db_proxy.process.wait(5)
    wait_until(lambda: all(gone(pid) for pid in children), timeout=10)


def test_flag_wins_over_the_file_key(tmp_path: Path, ca: ThrowawayCA) -> None:
    from meshkit.static.file import load

    path = _static_file(tmp_path, ca, workers=3)
    assert load(parse(["-config", str(path)], env={})).workers == 3
    assert load(parse(["-config", str(path), "-workers", "1"], env={})).workers == 1
    assert load(parse(["-config", str(_static_file(tmp_path, ca))], env={})).workers == AUTO


@pytest.mark.skipif(usable_cpus() < 2, reason="auto is 1 anyway on one CPU")
def test_auto_with_a_port_0_listener_runs_one_process(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    config = inbound_config("db", ca.leaf("db"), [ca.root_file()], app.port, 0)
    proxy = start_proxy(tmp_path, "db-proxy", config)
    try:
        assert "1 worker (auto: public_listener binds port 0, one port per process)" in (
            proxy.log()
        )
        assert children_of(proxy.process.pid) == []
        assert proxy.metrics()["meshkit_proxy_workers"] == 1
    finally:
        assert proxy.stop() == 0


def test_bad_tls_file_with_workers_is_one_line_from_worker_0(
    tmp_path: Path, ca: ThrowawayCA
) -> None:
    """The TLS files are read once, before forking: a bad key is one error line and exit 2,
    not one line per worker (every forked worker used to load the files and report them)."""
    leaf = ca.leaf("db")
    leaf.key.write_bytes(b"\xff\xfe not a key")
    config = inbound_config("db", leaf, [ca.root_file()], 8080, free_port())
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_proxy_cli("-config", str(path), "-workers", "8")
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("meshkit-proxy:")]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert f"{leaf.key}: not UTF-8: byte 0xff at offset 0" in lines[0]
