# SPDX-License-Identifier: MPL-2.0
"""meshkit.connect.loopback_audit, run by real `ansible` against this machine's real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ansible_run import adhoc
from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.meshkit.connect.plugins.modules import loopback_audit

LISTENER = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
if family == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((sys.argv[1], 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)
"""


class App:
    def __init__(self, address: str) -> None:
        self.address = address
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LISTENER, address], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.comm = Path(f"/proc/{self.proc.pid}/comm").read_text().strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def apps() -> Iterator[dict[str, App]]:
    started: dict[str, App] = {}
    try:
        for name, address in (("open", "0.0.0.0"), ("open6", "::"), ("local", "127.0.0.1"),
                              ("local6", "::1"), ("allowed", "0.0.0.0")):  # fmt: skip
            started[name] = App(address)
        yield started
    finally:
        for app in started.values():
            app.stop()


def test_audit_names_process_pid_address_and_port(apps, tmp_path):
    services = [
        {"name": name, "port": app.port, "allow_non_loopback": name == "allowed"}
        for name, app in apps.items()
    ]
    rc, result = adhoc("meshkit.connect.loopback_audit", {"services": services}, tmp_path)
    assert rc != 0 and result["violations"], result
    bad = {v["service"]: v for v in result["violations"]}
    assert set(bad) == {"open", "open6"}
    for name, address in (("open", "0.0.0.0"), ("open6", "::")):
        app, v = apps[name], bad[name]
        assert (v["pid"], v["address"], v["port"], v["process"]) == (
            app.proc.pid, address, app.port, app.comm,
        )  # fmt: skip
        shown = f"[{address}]" if ":" in address else address
        assert f"process {app.comm} (pid {app.proc.pid}" in v["message"]
        assert f"listens on {shown}:{app.port}" in v["message"]
        assert v["message"] in result["msg"]
    seen = {entry["service"]: entry for entry in result["listeners"]}
    assert seen["local"]["loopback"] and seen["local6"]["loopback"]
    assert seen["allowed"]["pid"] == apps["allowed"].proc.pid and not seen["allowed"]["loopback"]


def test_audit_passes_when_apps_stay_on_loopback(apps, tmp_path):
    services = [{"name": n, "port": apps[n].port} for n in ("local", "local6")]
    rc, result = adhoc("meshkit.connect.loopback_audit", {"services": services}, tmp_path)
    assert rc == 0, result
    assert result["violations"] == [] and len(result["listeners"]) == 2
    assert result["changed"] is False


def test_report_only_mode(apps, tmp_path):
    rc, result = adhoc(
        "meshkit.connect.loopback_audit",
        {"ports": [apps["open"].port], "fail_on_violation": False},
        tmp_path,
    )
    assert rc == 0
    assert [v["pid"] for v in result["violations"]] == [apps["open"].proc.pid]


def test_proc_parsing_matches_the_kernel():
    """Our /proc decoding agrees with getsockname() for a socket we own."""
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        s.listen()
        port = s.getsockname()[1]
        deadline = time.monotonic() + 5
        found: list[loopback_audit.Socket] = []
        while not found and time.monotonic() < deadline:
            found = [x for x in loopback_audit.read_listeners() if x.port == port]
        assert [(x.family, x.address) for x in found] == [("ipv4", "127.0.0.2")]
        owners = loopback_audit.socket_owners({found[0].inode})

        assert owners[found[0].inode].pid == os.getpid()


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("0.0.0.0", False), ("::", False), ("198.18.0.11", False), ("::ffff:10.0.0.1", False)],
)  # fmt: skip
def test_is_loopback(address, loopback):
    assert loopback_audit.is_loopback(address) is loopback
