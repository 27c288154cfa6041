# SPDX-License-Identifier: MPL-2.0
"""`Proxy.apply` diffs listeners in-process on real sockets; SIGHUP reloads a running proxy."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import yaml

from meshkit.certstore import CertStore
from meshkit.config import ProxyConfig, PublicListener, UpstreamListener
from meshkit.resolver import StaticResolver, Target
from meshkit.runtime import PUBLIC, Proxy
from meshkit.static.certs import FileWatcher, MaterialFiles
from tests.support.echo import EchoApp, echo_once
from tests.support.pki_files import ThrowawayCA
from tests.support.ports import free_port
from tests.support.proxy_process import start_proxy
from tests.support.static_mesh import inbound_config, outbound_config
from tests.support.waits import wait_until


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_apply_opens_closes_rebinds_and_leaves_connections_alone(
    ca: ThrowawayCA, app: EchoApp
) -> None:
    db, web = ca.leaf("db"), ca.leaf("web")

    async def scenario() -> None:
        db_certs, web_certs = CertStore(), CertStore()
        FileWatcher(MaterialFiles(db.cert, db.key, (ca.root_file(),)), db_certs).load_now()
        FileWatcher(MaterialFiles(web.cert, web.key, (ca.root_file(),)), web_certs).load_now()
        inbound, outbound = Proxy(db_certs), Proxy(web_certs)
        await inbound.apply(
            ProxyConfig("db", PublicListener("127.0.0.1", 0, "127.0.0.1", app.port))
        )
        target = Target("127.0.0.1", inbound.port_of(PUBLIC), ca.identity("db"))
        resolver = StaticResolver((target,))
        p1, p2, p3 = free_port(), free_port(), free_port()
        one = UpstreamListener("db", resolver, bind_port=p1)
        two = UpstreamListener("db2", resolver, bind_port=p2)
        await outbound.apply(ProxyConfig("web", upstreams=(one, two)))
        assert outbound.ready

        reader, writer = await asyncio.open_connection("127.0.0.1", p1)
        writer.write(b"first")
        assert await reader.readexactly(5) == b"first"

        # Remove db2, rebind db to another port, add db3.
        three = UpstreamListener("db3", resolver, bind_port=p3)
        moved = UpstreamListener("db", resolver, bind_port=p2)
        await outbound.apply(ProxyConfig("web", upstreams=(moved, three)))
        assert set(outbound.listeners) == {"upstream:service:db", "upstream:service:db3"}
        assert outbound.port_of("upstream:service:db") == p2
        loop = asyncio.get_running_loop()
        assert not await loop.run_in_executor(None, _listening, p1)
        assert await loop.run_in_executor(None, echo_once, p3, b"three") == b"three"
        assert await loop.run_in_executor(None, echo_once, p2, b"moved") == b"moved"

        # The connection accepted on the old bind still flows.
        writer.write(b"still")
        assert await reader.readexactly(5) == b"still"
        assert outbound.open_connections == 1

        # Same bind, other settings: updated in place, socket kept.
        server_before = outbound.listeners["upstream:service:db3"].server
        slower = UpstreamListener("db3", resolver, bind_port=p3, connect_timeout_ms=2000)
        await outbound.apply(ProxyConfig("web", upstreams=(moved, slower)))
        assert outbound.listeners["upstream:service:db3"].server is server_before

        writer.close()
        await writer.wait_closed()
        assert await outbound.drain(5) == 0
        assert await inbound.drain(5) == 0

    asyncio.run(scenario())


def test_apply_waits_for_certificates(ca: ThrowawayCA, app: EchoApp) -> None:
    """Consul mode may deliver config before the leaf: listeners open when certs arrive."""
    db = ca.leaf("db")

    async def scenario() -> None:
        proxy = Proxy()
        proxy.set_control_plane_reachable(False)
        await proxy.apply(ProxyConfig("db", PublicListener("127.0.0.1", 0, "127.0.0.1", app.port)))
        assert not proxy.listeners
        assert "TLS material not loaded" in proxy.not_ready_reasons()
        FileWatcher(MaterialFiles(db.cert, db.key, (ca.root_file(),)), proxy.certs).load_now()
        for _ in range(100):
            if proxy.listeners:
                break
            await asyncio.sleep(0.01)
        assert PUBLIC in proxy.listeners
        assert proxy.not_ready_reasons() == ["condition control_plane not met"]
        proxy.set_control_plane_reachable(True)
        assert proxy.ready
        assert "meshkit_proxy_control_plane_reachable 1" in proxy.metrics.render()
        await proxy.drain(1)

    asyncio.run(scenario())


def test_sighup_reloads_the_config_file(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> None:
    db, web = ca.leaf("db"), ca.leaf("web")
    public, up1, up2 = free_port(), free_port(), free_port()
    inbound = start_proxy(
        tmp_path, "db-proxy", inbound_config("db", db, [ca.root_file()], app.port, public)
    )
    target = {"address": f"127.0.0.1:{public}", "spiffe_id": ca.identity("db").uri}
    config = outbound_config("web", web, [ca.root_file()], [target], up1)
    outbound = start_proxy(tmp_path, "web-proxy", config)
    try:
        assert echo_once(up1, b"one") == b"one"
        assert outbound.admin("/ready")[0] == 200
        assert outbound.config_path is not None
        config = yaml.safe_load(outbound.config_path.read_text())
        config["upstreams"][0]["local_bind_port"] = up2
        outbound.config_path.write_text(yaml.safe_dump(config))
        outbound.signal(signal.SIGHUP)
        wait_until(lambda: _listening(up2), timeout=10)
        assert not _listening(up1)
        assert echo_once(up2, b"two") == b"two"
        # A broken file on SIGHUP is refused and the running config stays.
        outbound.config_path.write_text("upstreams: 5\n")
        outbound.signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in outbound.log(), timeout=10)
        assert echo_once(up2, b"three") == b"three"
    finally:
        codes = outbound.stop(), inbound.stop()
    assert codes == (0, 0)


def test_admin_endpoints(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> None:
    db = ca.leaf("db")
    inbound = start_proxy(
        tmp_path, "db-proxy", inbound_config("db", db, [ca.root_file()], app.port, free_port())
    )
    try:
        assert inbound.admin("/health") == (200, "ok\n")
        assert inbound.admin("/ready") == (200, "ready\n")
        assert inbound.admin("/nope")[0] == 404
        status, text = inbound.admin("/metrics")
        assert status == 200
        assert "# TYPE meshkit_proxy_inbound_conns gauge" in text
        assert 'meshkit_proxy_inbound_conns{service="db",upstream="",dst_type="local"} 0' in text
        assert "meshkit_proxy_ready 1" in text
    finally:
        code = inbound.stop()
    assert code == 0


def test_json_logs_and_ready_during_drain(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> None:
    import json

    db, web = ca.leaf("db"), ca.leaf("web")
    public = free_port()
    inbound = start_proxy(
        tmp_path,
        "db-proxy",
        inbound_config("db", db, [ca.root_file()], app.port, public),
        "-log-json",
    )
    from tests.support.tls_client import tls_client_context

    ctx = tls_client_context(web.cert, web.key, ca.root_file())
    held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", public), timeout=5))
    try:
        held.sendall(b"hi")
        assert held.recv(2) == b"hi"
        inbound.signal(signal.SIGTERM)
        # Draining: not ready any more, but the admin listener still answers.
        wait_until(lambda: inbound.admin("/ready")[0] == 503, timeout=5)
        assert "draining" in inbound.admin("/ready")[1]
        held.sendall(b"yo")
        assert held.recv(2) == b"yo"
    finally:
        held.close()
    inbound.process.wait(10)
    assert inbound.process.returncode == 0
    lines = [line for line in inbound.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert {"@timestamp", "@level", "@module", "@message"} <= set(records[0])
    assert any("closed after" in r["@message"] for r in records)
    key_body = db.key.read_text().splitlines()[1]
    assert all(key_body not in line and "PRIVATE KEY" not in line for line in lines)


def test_drain_cuts_the_flows_still_open_at_its_deadline(ca: ThrowawayCA, app: EchoApp) -> None:
    """Each side's drain resets the connections it still holds, and the reset travels on."""
    db, web = ca.leaf("db"), ca.leaf("web")

    async def ended(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            return True

    async def settled(proxy: Proxy) -> bool:
        for _ in range(100):
            if proxy.open_connections == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    async def scenario() -> None:
        db_certs = CertStore()
        FileWatcher(MaterialFiles(db.cert, db.key, (ca.root_file(),)), db_certs).load_now()
        inbound = Proxy(db_certs)
        await inbound.apply(
            ProxyConfig("db", PublicListener("127.0.0.1", 0, "127.0.0.1", app.port))
        )
        target = Target("127.0.0.1", inbound.port_of(PUBLIC), ca.identity("db"))

        async def client_side() -> tuple[Proxy, asyncio.StreamReader, asyncio.StreamWriter]:
            web_certs = CertStore()
            FileWatcher(MaterialFiles(web.cert, web.key, (ca.root_file(),)), web_certs).load_now()
            outbound, port = Proxy(web_certs), free_port()
            listener = UpstreamListener("db", StaticResolver((target,)), bind_port=port)
            await outbound.apply(ProxyConfig("web", upstreams=(listener,)))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"held")
            assert await reader.readexactly(4) == b"held"
            return outbound, reader, writer

        # The upstream side's deadline passes first: its flow is cut, and so is the inbound one.
        outbound, reader, writer = await client_side()
        assert await outbound.drain(0.2) == 1
        assert await ended(reader)
        assert await settled(inbound)
        writer.close()

        # The public listener's deadline passes first: the client reads the end (a TCP end
        # without close_notify passes on as end of stream), and its close ends the flow.
        outbound, reader, writer = await client_side()
        assert inbound.open_connections == 1
        assert await inbound.drain(0.2) == 1
        assert await ended(reader)
        writer.close()
        assert await settled(outbound)
        assert await outbound.drain(1) == 0

    asyncio.run(scenario())
