# SPDX-License-Identifier: MPL-2.0
"""Consul's connection variables in real module runs (issue 16 item 5).

The real dev agent serves its API on a unix socket too (``-http-unix-socket``, as Consul's
``addresses.http = "unix:///..."``); modules reach it with ``CONSUL_HTTP_ADDR=unix:///path``.
A typo in ``CONSUL_HTTP_SSL`` and a missing ``CONSUL_HTTP_TOKEN_FILE`` fail the task with a
message naming the variable (and the path), never a traceback, never plain http.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.consul_api import (
    Connection,
    ConsulClient,
)
from meshkit.consul.client import ConsulClient as ProxyConsulClient
from meshkit.consul.settings import HTTPFlags, resolve
from tests.support.ansible_run import run_play
from tests.support.devagent import DevAgent

SERVICE = "meshkit.connect.consul_service"
# No host/port defaults: the modules read CONSUL_HTTP_ADDR (run_play sets them otherwise).
FROM_ENV: dict[str, Any] = {"host": None, "port": None}


@pytest.fixture
def socket_agent(tmp_path: Path) -> Iterator[tuple[DevAgent, Path]]:
    # A short path: a unix socket path is limited to 107 bytes.
    sock = Path(f"/tmp/mk-conv-{tmp_path.name[-20:]}.sock")
    agent = DevAgent(tmp_path / "agent", extra_args=["-http-unix-socket", str(sock)])
    agent.start()
    try:
        yield agent, sock
    finally:
        agent.stop()
        sock.unlink(missing_ok=True)


def test_module_utils_speak_http_over_the_unix_socket(socket_agent: tuple[DevAgent, Path]) -> None:
    agent, sock = socket_agent
    assert sock.is_socket() and sock.stat().st_mode & 0o777 == 0o600
    conn = Connection.from_params({}, {"CONSUL_HTTP_ADDR": f"unix://{sock}"})
    assert conn.unix_socket == str(sock) and conn.describe() == f"unix://{sock}"
    client = ConsulClient(conn)
    try:
        assert client.version() == (1, 7, 14)
        client.put("/v1/agent/service/register", {"Name": "over-unix", "Port": 7000})
    finally:
        # ansible's open_url installs its opener (with the unix socket) process-wide; a
        # module runs once per process, this test does not: later urlopen calls use TCP.
        urllib.request.install_opener(None)
    # The TCP listener sees what came over the socket: one agent, two doors.
    status, _, services = agent.get("/v1/agent/services")
    assert status == 200 and "over-unix" in services


def test_a_playbook_registers_over_the_unix_socket(
    socket_agent: tuple[DevAgent, Path], tmp_path: Path
) -> None:
    agent, sock = socket_agent
    task = {"name": "db", SERVICE: {"service": {"name": "db", "port": 5432}}}
    play = run_play(
        tmp_path / "unix",
        [task],
        agent.address,
        module_defaults=FROM_ENV,
        extra_env={"CONSUL_HTTP_ADDR": f"unix://{sock}"},
    )
    assert play.returncode == 0, play.output
    assert play.task("db")["changed"] is True
    status, _, services = agent.get("/v1/agent/services")
    assert status == 200 and "db" in services


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        (
            {"CONSUL_HTTP_SSL": "ture"},
            ["CONSUL_HTTP_SSL='ture' is not a boolean", "accepted: 1, t, T, TRUE, true, True"],
        ),
        (
            {"CONSUL_HTTP_SSL_VERIFY": "yes"},
            ["CONSUL_HTTP_SSL_VERIFY='yes' is not a boolean", "0, f, F, FALSE, false, False"],
        ),
        (
            {"CONSUL_HTTP_TOKEN_FILE": "/nonexistent/meshkit/token"},
            [
                "cannot read the ACL token file '/nonexistent/meshkit/token' "
                "(from CONSUL_HTTP_TOKEN_FILE): No such file or directory"
            ],
        ),
    ],
    ids=["ssl-typo", "ssl-verify-typo", "missing-token-file"],
)
def test_bad_connection_variables_fail_the_task_by_name(
    env: dict[str, str], needles: list[str], tmp_path: Path
) -> None:
    # Nothing listens here: the task must stop at the setting, before any request.
    env = {"CONSUL_HTTP_ADDR": "127.0.0.1:9", **env}
    task = {"name": "db", SERVICE: {"service": {"name": "db", "port": 5432}}}
    play = run_play(
        tmp_path / "bad", [task], "127.0.0.1:9", module_defaults=FROM_ENV, extra_env=env
    )
    assert play.returncode != 0
    assert next(r["status"] for r in play.results if r["task"] == "db") == "failed"
    result = play.task("db")
    assert "Traceback" not in str(result), result
    for needle in needles:
        assert needle in result["msg"], result["msg"]
    assert "Traceback" not in play.output and "cannot reach" not in result["msg"]


def test_the_proxy_and_the_modules_reach_the_same_socket_from_one_environment(
    socket_agent: tuple[DevAgent, Path],
) -> None:
    """One CONSUL_HTTP_ADDR=unix://..., both resolvers, one real agent answering both."""
    agent, sock = socket_agent
    env = {"CONSUL_HTTP_ADDR": f"unix://{sock}"}

    async def proxy_side() -> Any:
        async with ProxyConsulClient(resolve(HTTPFlags(), env)) as client:
            return (await client.get("/v1/agent/self")).body

    proxy_view = asyncio.run(proxy_side())
    try:
        module_view = ConsulClient(Connection.from_params({}, env)).get("/v1/agent/self")
    finally:
        urllib.request.install_opener(None)
    assert proxy_view["Config"]["NodeName"] == module_view["Config"]["NodeName"] == agent.node
