# SPDX-License-Identifier: MPL-2.0
"""meshkit.native against the real dev agent: serving, dialling, refusing, errors, rotation.

One dev agent per module (its start and stop dominate otherwise); every test registers its own
service names so the tests do not see each other.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from meshkit.native import (
    Denied,
    DialFailed,
    IdentityMismatch,
    NoHealthyInstance,
    NotReady,
    Query,
    ServiceID,
)
from meshkit.native.web import NativeSite, client_session, peer
from meshkit.tls import _load_chain
from meshkit_tools import pki
from tests.support.devagent import DevAgent
from tests.support.native import Recorder, intention, register_native, roundtrip, run, service
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevAgent]:
    with DevAgent(tmp_path_factory.mktemp("native-agent")) as dev:
        yield dev


def test_native_client_reaches_native_server_and_handler_sees_identity(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "db1", port)
    rec = Recorder("db1")

    async def scenario() -> bytes:
        async with service("db1", agent.address) as db, service("web1", agent.address) as web:
            assert db.is_ready and web.identity.service == "web1"
            async with await db.start_server(rec, "127.0.0.1", port):
                reader, writer = await web.connect("db1")
                return await roundtrip(reader, writer, b"hello")

    assert run(scenario) == b"db1:hello"
    assert rec.peers == ["web1"]


def test_denied_peer_gets_zero_bytes_to_the_handler(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "db2", port)
    intention(agent, "web2", "db2", "deny")
    rec = Recorder("db2")

    async def scenario() -> tuple[bytes, bool]:
        async with service("db2", agent.address) as db, service("web2", agent.address) as web:  # noqa: SIM117 (the server needs the started service)
            async with await db.start_server(rec, "127.0.0.1", port):
                reader, writer = await web.connect("db2")
                got = await roundtrip(reader, writer, b"secret-bytes")
                decision = await web.check("db2")
                with pytest.raises(Denied, match="web2 -> db2 denied"):
                    await web.connect("db2", check_intentions=True)
                return got, decision.allowed

    got, allowed = run(scenario)
    assert got == b""
    assert allowed is False
    assert rec.calls == 0 and bytes(rec.received) == b""


def test_intention_change_applies_to_the_next_connection(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "db3", port)
    rec = Recorder("db3")

    async def scenario() -> list[bytes]:
        out = []
        async with service("db3", agent.address) as db, service("web3", agent.address) as web:  # noqa: SIM117 (the server needs the started service)
            async with await db.start_server(rec, "127.0.0.1", port):
                out.append(await roundtrip(*await web.connect("db3"), b"a"))
                intention(agent, "web3", "db3", "deny")
                assert db.intentions is not None
                await db.intentions.watch.wait_changed(5)
                out.append(await roundtrip(*await web.connect("db3"), b"b"))
        return out

    assert run(scenario) == [b"db3:a", b""]
    assert bytes(rec.received) == b"a"


def test_agent_authz_mode_refuses_too(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "db4", port)
    intention(agent, "web4", "db4", "deny")
    rec = Recorder("db4")

    async def scenario() -> bytes:
        async with service("db4", agent.address, authz="agent") as db:  # noqa: SIM117 (the server needs the started service)
            async with (
                service("web4", agent.address) as web,
                await db.start_server(rec, "127.0.0.1", port),
            ):
                return await roundtrip(*await web.connect("db4"), b"x")

    assert run(scenario) == b""
    assert rec.calls == 0


def test_identity_mismatch_is_refused_before_a_byte_is_sent(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "db5", port)  # the catalog says db5 is there ...
    rec = Recorder("impostor")

    async def scenario() -> str:
        async with service("impostor", agent.address) as imp, service("web5", agent.address) as web:  # noqa: SIM117 (the server needs the started service)
            async with await imp.start_server(rec, "127.0.0.1", port):  # ... but it is not db5
                with pytest.raises(IdentityMismatch) as err:
                    await web.connect("db5")
                return str(err.value)

    message = run(scenario)
    assert "expected spiffe://" in message and "/svc/db5" in message and "/svc/impostor" in message
    assert bytes(rec.received) == b""  # the client sent nothing to the wrong server


def test_pinned_service_id_and_prepared_query(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "db6", port)
    rec = Recorder("db6")

    async def scenario() -> None:
        async with service("db6", agent.address) as db, service("web6", agent.address) as web:  # noqa: SIM117 (the server needs the started service)
            async with await db.start_server(rec, "127.0.0.1", port):
                ok = ServiceID(web.trust_domain, "default", "dc1", "db6")
                assert await roundtrip(*await web.connect(ok), b"p") == b"db6:p"
                agent.ok("POST", "/v1/query", {"Name": "db6-q", "Service": {"Service": "db6"}})
                assert await roundtrip(*await web.connect(Query("db6-q")), b"q") == b"db6:q"

    run(scenario)


def test_no_healthy_instance_and_dead_instances(agent: DevAgent) -> None:
    dead = free_port()
    register_native(agent, "db7", dead)

    async def scenario() -> tuple[str, str]:
        async with service("web7", agent.address) as web:
            with pytest.raises(NoHealthyInstance) as none:
                await web.connect("nothing-here", timeout=3)
            with pytest.raises(DialFailed) as failed:
                await web.connect("db7", timeout=2)
            return str(none.value), str(failed.value)

    none, failed = run(scenario)
    assert "no healthy Connect-capable instance" in none and "'nothing-here'" in none
    assert f"127.0.0.1:{dead}" in failed and "ConnectionRefused" in failed


def test_next_instance_is_tried_when_one_is_down(agent: DevAgent) -> None:
    live, dead = free_port(), free_port()
    register_native(agent, "db8", live, "db8-live")
    register_native(agent, "db8", dead, "db8-dead")
    rec = Recorder("db8")

    async def scenario() -> list[bytes]:
        async with service("db8", agent.address) as db, service("web8", agent.address) as web:  # noqa: SIM117 (the server needs the started service)
            async with await db.start_server(rec, "127.0.0.1", live):
                return [await roundtrip(*await web.connect("db8"), b"%d" % i) for i in range(6)]

    assert run(scenario) == [b"db8:%d" % i for i in range(6)]


def test_not_ready_names_the_agent_and_the_fix() -> None:
    async def scenario() -> str:
        svc = service("web9", f"127.0.0.1:{free_port()}")
        with pytest.raises(NotReady) as err:
            await svc.ready(timeout=1.0)
        return str(err.value)

    message = run(scenario)
    assert "CONSUL_HTTP_ADDR" in message and "unreachable" in message


def test_aiohttp_app_served_and_called_through_the_mesh(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "api10", port)
    agent.ok("POST", "/v1/query", {"Name": "api10-q", "Service": {"Service": "api10"}})
    seen: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        seen.append(peer(request).service.service)
        return web.Response(text=f"hello {peer(request).service.service} {request.path}")

    async def scenario() -> list[str]:
        app = web.Application()
        app.router.add_get("/{tail:.*}", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        async with service("api10", agent.address) as api, service("web10", agent.address) as w:
            await NativeSite(runner, api, "127.0.0.1", port).start()
            try:
                out = []
                async with client_session(w) as http:
                    for url in (
                        "http://api10.service.consul/a",
                        "http://api10.connect.consul/b",
                        "http://api10-q.query.consul/c",
                        "http://api10/d",
                    ):
                        async with http.get(url) as resp:
                            out.append(await resp.text())
                return out
            finally:
                await runner.cleanup()

    assert run(scenario) == [
        "hello web10 /a",
        "hello web10 /b",
        "hello web10 /c",
        "hello web10 /d",
    ]
    assert seen == ["web10"] * 4


def test_aiohttp_denied_peer_never_reaches_the_handler(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "api11", port)
    intention(agent, "web11", "api11", "deny")
    calls: list[int] = []

    async def hello(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(text="no")

    async def scenario() -> str:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        async with service("api11", agent.address) as api, service("web11", agent.address) as w:
            await NativeSite(runner, api, "127.0.0.1", port).start()
            try:
                async with client_session(w) as http:
                    with pytest.raises(aiohttp.ClientError) as err:
                        async with http.get("http://api11.service.consul/") as resp:
                            await resp.read()
                    return type(err.value).__name__
            finally:
                await runner.cleanup()

    assert run(scenario) in ("ServerDisconnectedError", "ClientOSError")
    assert calls == []


def test_rotation_keeps_open_connections_and_new_ones_use_the_new_root(agent: DevAgent) -> None:
    port = free_port()
    register_native(agent, "db12", port)
    rec = Recorder("db12")

    async def scenario() -> tuple[bytes, bytes, bytes]:
        async with service("db12", agent.address) as db, service("web12", agent.address) as web:  # noqa: SIM117 (the server needs the started service)
            async with await db.start_server(rec, "127.0.0.1", port):
                held_r, held_w = await web.connect("db12")
                held_w.write(b"one")
                await held_w.drain()
                assert await held_r.read(100) == b"db12:one"
                serials = (db.store.leaf_serial, web.store.leaf_serial)
                config = agent.ok("GET", "/v1/connect/ca/configuration")
                new_key = pki.key_pem(pki.generate_key())
                agent.ok(
                    "PUT",
                    "/v1/connect/ca/configuration",
                    {"Provider": "consul", "Config": {**config["Config"], "PrivateKey": new_key}},
                )
                roots = agent.ok("GET", "/v1/agent/connect/ca/roots")
                new_pem = next(r["RootCert"] for r in roots["Roots"] if r["Active"])
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and (
                    db.store.leaf_serial == serials[0] or web.store.leaf_serial == serials[1]
                ):
                    await asyncio.sleep(0.05)
                held_w.write(b"two")
                await held_w.drain()
                still = await held_r.read(100)
                held_w.close()
                fresh = await roundtrip(*await web.connect("db12"), b"three")
                # A client trusting only the new root, presenting web12's new leaf: the server
                # must present its new leaf and accept a client chained to the new root.
                mat = web.store.material
                assert mat is not None
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.load_verify_locations(cadata=new_pem)
                _load_chain(ctx, mat.chain_pem, mat.key_pem)
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname=""
                )
                only_new = await roundtrip(reader, writer, b"four")
                return still, fresh, only_new

    still, fresh, only_new = run(scenario)
    assert still == b"db12:two"
    assert fresh == b"db12:three"
    assert only_new == b"db12:four"


def test_sync_facade_connects_with_a_blocking_socket(agent: DevAgent) -> None:
    from meshkit.flags import HTTPFlags
    from meshkit.native.sync import Service as SyncService

    port = free_port()
    register_native(agent, "db13", port)
    rec = Recorder("db13")
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:  # the server on its own loop, in its own thread
        async with service("db13", agent.address) as db:  # noqa: SIM117 (the server needs the started service)
            async with await db.start_server(rec, "127.0.0.1", port):
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30)
    got = b""
    try:
        with SyncService("web13", consul=HTTPFlags(http_addr=agent.address), env={}) as web:
            with web.connect("db13") as sock:
                sock.sendall(b"blocking")
                while not got.endswith(b"blocking"):
                    chunk = sock.recv(100)
                    if not chunk:
                        break
                    got += chunk
            with pytest.raises(NoHealthyInstance):
                web.connect("nobody-13", timeout=3)
    finally:
        stop.set()
        thread.join(10)
    assert got == b"db13:blocking"
    assert rec.peers == ["web13"]


def test_ready_is_bounded_when_the_agent_accepts_but_never_answers() -> None:
    import socket as socket_mod

    silent = socket_mod.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    port = silent.getsockname()[1]

    async def scenario() -> tuple[str, float]:
        svc = service("web14", f"127.0.0.1:{port}")
        started = time.monotonic()
        with pytest.raises(NotReady) as err:
            await svc.ready(timeout=1.5)
        return str(err.value), time.monotonic() - started

    try:
        message, took = run(scenario)
    finally:
        silent.close()
    assert took < 5 and "did not answer within 1.5s" in message
