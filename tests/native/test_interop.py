# SPDX-License-Identifier: MPL-2.0
"""Interop between meshkit.native and real meshkit-proxy processes on the real dev agent.

- a native client reaches `api` behind `meshkit-proxy -sidecar-for api`;
- `web`'s meshkit-proxy upstream reaches a native server, whose handler sees web's identity;
- both refused when an intention denies: the proxied app accepts nothing, and the native
  server's recording handler is never called and records 0 bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.devagent import DevAgent
from tests.support.echo import App
from tests.support.native import Recorder, intention, register_native, roundtrip, run, service
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.waits import wait_until


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevAgent]:
    with DevAgent(tmp_path_factory.mktemp("native-interop")) as dev:
        yield dev


def sidecar(
    agent: DevAgent, workdir: Path, name: str, app_port: int, upstreams: list[dict[str, object]]
) -> ProxyProcess:
    agent.register(
        {
            "Name": name,
            "ID": name,
            "Port": app_port,
            "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": upstreams}}},
        }
    )
    proxy = ProxyProcess(workdir, name, ["-sidecar-for", name], {"CONSUL_HTTP_ADDR": agent.address})
    return proxy.start().wait_ready()


def passing(agent: DevAgent, name: str) -> bool:
    status, _, body = agent.get(f"/v1/health/connect/{name}?passing=1")
    return status == 200 and bool(body)


def test_native_client_to_proxied_service_then_denied(agent: DevAgent, tmp_path: Path) -> None:
    app = App("api")
    proxy = sidecar(agent, tmp_path, "api", app.port, [])
    try:
        wait_until(lambda: passing(agent, "api"), 15, what="api sidecar passing")

        async def scenario() -> tuple[bytes, bytes]:
            async with service("nweb", agent.address) as web:
                allowed = await roundtrip(*await web.connect("api"), b"Ehello")
                intention(agent, "nweb", "api", "deny")
                for _ in range(100):  # the proxy's intentions watch returns at once
                    if "intentions for api: 1 entries" in proxy.log():
                        break
                    await asyncio.sleep(0.1)
                denied = await roundtrip(*await web.connect("api"), b"Esecret")
                return allowed, denied

        allowed, denied = run(scenario)
        assert allowed == b"api:hello"
        assert denied == b""
        assert app.accepted == 1  # the denied connection never reached the app
    finally:
        proxy.stop()
        app.close()


def test_proxy_upstream_to_native_server_then_denied(agent: DevAgent, tmp_path: Path) -> None:
    native_port, upstream_port = free_port(), free_port()
    register_native(agent, "nat", native_port)
    web_app = App("pweb")
    proxy = sidecar(
        agent,
        tmp_path,
        "pweb",
        web_app.port,
        [{"DestinationName": "nat", "LocalBindPort": upstream_port}],
    )
    rec = Recorder("nat")

    async def through_upstream(payload: bytes) -> bytes:
        for _ in range(50):  # the upstream listener opens once discovery answered
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", upstream_port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("web's upstream listener never opened")
        return await roundtrip(reader, writer, payload)

    async def scenario() -> tuple[bytes, list[str], bytes]:
        async with service("nat", agent.address) as nat:  # noqa: SIM117 (the server needs the started service)
            async with await nat.start_server(rec, "127.0.0.1", native_port):
                allowed = await through_upstream(b"hi")
                peers = list(rec.peers)
                intention(agent, "pweb", "nat", "deny")
                assert nat.intentions is not None
                await nat.intentions.watch.wait_changed(5)
                rec.received.clear()
                calls = rec.calls
                denied = await through_upstream(b"must-not-arrive")
                assert rec.calls == calls
                return allowed, peers, denied

    try:
        allowed, peers, denied = run(scenario)
    finally:
        proxy.stop()
        web_app.close()
    assert allowed == b"nat:hi"
    assert peers == ["pweb"]
    assert denied == b""
    assert bytes(rec.received) == b""  # the recording handler saw 0 bytes from the refused peer
