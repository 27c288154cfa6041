# SPDX-License-Identifier: MPL-2.0
"""Issue 12: a mesh with no intentions at all, and the last intention deleted under traffic.

Real Consul 1.7 answers the intentions match with `{"<name>": null}` when nothing matches
(fixture consul-1.7.14-edges/e01); the proxy used to exit on it ("expected a list of
intentions"). An empty match means "no intentions": the agent's default policy decides. These
run the real dev agent (which answers `null` as Consul does) and real `meshkit-proxy -sidecar-for`
processes with real TLS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.consul_mesh import Mesh, build_mesh
from tests.support.devagent import DevAgent
from tests.support.echo import OpenEcho, try_echo
from tests.support.waits import wait_until

AGENT_STOP_S = 1.0
EXACT = "/v1/connect/intentions/exact?source=web&destination=api"


@pytest.fixture(params=["local", "agent"])
def authz(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _agent(tmp_path: Path, policy: str | None) -> DevAgent:
    return DevAgent(tmp_path / "agent", default_intention_policy=policy).start()


@pytest.fixture
def allow_agent(tmp_path: Path) -> Iterator[DevAgent]:
    a = _agent(tmp_path, None)  # ACLs off, no flag: Consul's default allow
    try:
        yield a
    finally:
        a.stop(timeout=AGENT_STOP_S)


@pytest.fixture
def deny_agent(tmp_path: Path) -> Iterator[DevAgent]:
    a = _agent(tmp_path, "deny")
    try:
        yield a
    finally:
        a.stop(timeout=AGENT_STOP_S)


def _alive(mesh: Mesh) -> None:
    for name, proxy in mesh.proxies.items():
        assert proxy.process is not None and proxy.process.poll() is None, (
            f"proxy {name} exited:\n{proxy.log()[-3000:]}"
        )
        assert proxy.admin("/ready") == (200, "ready\n"), name


def test_zero_intentions_default_allow_carries_traffic(
    allow_agent: DevAgent, tmp_path: Path, authz: str
) -> None:
    # What real Consul sends for a destination without intentions (and what the proxy reads).
    status, _, body = allow_agent.get("/v1/connect/intentions/match?by=destination&name=api")
    assert (status, body) == (200, {"api": None})
    mesh = build_mesh(allow_agent, tmp_path, ("-authz", authz))
    try:
        for port in mesh.upstream_ports.values():
            assert try_echo(port)
        _alive(mesh)
        if authz == "local":
            healthy = mesh.proxies["api"].metric(
                "meshkit_proxy_consul_watch_healthy", watch="intentions:api"
            )
            assert healthy == 1
    finally:
        mesh.close()


def test_zero_intentions_default_deny_refuses(
    deny_agent: DevAgent, tmp_path: Path, authz: str
) -> None:
    mesh = build_mesh(deny_agent, tmp_path, ("-authz", authz), expect_traffic=False)
    try:
        _alive(mesh)
        for port in mesh.upstream_ports.values():
            assert not try_echo(port, timeout=1)
        assert mesh.apps["api"].accepted == 0, "a refused peer reached the app"
        # The pair itself works: an allow intention lets the same traffic through.
        deny_agent.ok("PUT", EXACT, {"SourceType": "consul", "Action": "allow"})
        wait_until(lambda: try_echo(mesh.upstream_ports["api"], timeout=1), 5, what="allow")
    finally:
        mesh.close()


class _Traffic:
    """New connections through one upstream, back to back, counted by outcome."""

    def __init__(self, port: int) -> None:
        self.port, self.ok, self.refused = port, 0, 0
        self.last_ok_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 60  # bounded whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            if try_echo(self.port, timeout=1):
                self.ok += 1
                self.last_ok_at = time.monotonic()
            else:
                self.refused += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_deleting_the_last_intention_under_traffic(tmp_path: Path, authz: str, policy: str) -> None:
    """Default allow: the last (deny) intention goes, traffic resumes. Default deny: the last
    (allow) intention goes, new connections are refused. Neither proxy ever stops."""
    agent = _agent(tmp_path, policy)
    mesh: Mesh | None = None
    try:
        action = "deny" if policy == "allow" else "allow"
        agent.ok("PUT", EXACT, {"SourceType": "consul", "Action": action})
        mesh = build_mesh(agent, tmp_path, ("-authz", authz), expect_traffic=(action == "allow"))
        port = mesh.upstream_ports["api"]
        held = OpenEcho(port) if action == "allow" else None
        traffic = _Traffic(port)
        try:
            time.sleep(0.5)
            before = (traffic.ok, traffic.refused)
            agent.ok("DELETE", EXACT)
            _, _, body = agent.get("/v1/connect/intentions/match?by=destination&name=api")
            assert body == {"api": None}
            if policy == "allow":
                assert before[0] == 0, "the deny intention let traffic through"
                wait_until(lambda: traffic.ok > 0, 5, what="default allow after the delete")
            else:
                assert before[0] > 0, "the allow intention carried no traffic"
                wait_until(
                    lambda: (
                        traffic.refused > before[1] + 3
                        and time.monotonic() - traffic.last_ok_at > 0.5
                    ),
                    5,
                    what="default deny after the delete",
                )
            time.sleep(1.0)  # keep traffic flowing across several watch returns
            _alive(mesh)
            if held is not None:
                # As in Consul, intentions apply at connection setup: the open one stays.
                assert held.roundtrip()
        finally:
            traffic.stop()
            if held is not None:
                held.close()
        _alive(mesh)
        assert "expected a list" not in mesh.proxies["api"].log()
    finally:
        if mesh is not None:
            mesh.close()
        agent.stop(timeout=AGENT_STOP_S)


def test_ready_names_each_failing_watch_and_its_endpoint(
    allow_agent: DevAgent, tmp_path: Path
) -> None:
    mesh = build_mesh(allow_agent, tmp_path)
    try:
        api = mesh.proxies["api"]
        allow_agent.stop(timeout=AGENT_STOP_S)
        wait_until(lambda: api.admin("/ready")[0] == 503, 10, what="/ready reports the outage")
        _, text = api.admin("/ready")
        assert text.startswith("not ready: condition control_plane not met (watch "), text
        wait_until(
            lambda: (
                "watch intentions:api (GET /v1/connect/intentions/match)" in api.admin("/ready")[1]
            ),
            10,
            what="the intentions watch named on /ready",
        )
        assert "(GET /v1/connect/intentions/match)" in api.log()
        assert try_echo(mesh.upstream_ports["api"])  # fail static: the last state serves
    finally:
        mesh.close()
