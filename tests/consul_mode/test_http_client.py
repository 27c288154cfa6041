# SPDX-License-Identifier: MPL-2.0
"""The Consul HTTP client (meshkit.consul.http) on the wire, against small real servers that
answer what the dev agent never sends: chunked and close-delimited bodies, connections closed
while idle or mid-body, oversized answers, silence, TLS with a client certificate and SNI, a
unix socket, an IPv6 literal. Connections are counted at the server."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from meshkit.consul.client import ConsulClient, ConsulError, ConsulUnavailable
from meshkit.consul.http import MAX_BODY_BYTES
from meshkit.consul.settings import Settings, resolve
from meshkit.flags import HTTPFlags
from tests.support.devagent import DevAgent
from tests.support.echo import App
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.tls_front import make_tls_files

Script = Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
JSON_OK = b'{"ok": true}'


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 30))


def answer(body: bytes = JSON_OK, *extra: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Server:
    """A loopback server: every connection runs `script`; it counts connections and keeps each
    raw request it read."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.closed_by_client = 0
        self.requests: list[bytes] = []
        self.server_names: list[str | None] = []
        self.peer_certs: list[object] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.port = 0

    async def start(
        self,
        *,
        host: str = "127.0.0.1",
        unix_path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Server:
        if unix_path:
            self._server = await asyncio.start_unix_server(self._handle, unix_path)
        else:
            self._server = await asyncio.start_server(
                self._handle, host, 0, ssl=ssl_context, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is not None:
            self.peer_certs.append(sslobj.getpeercert())
        try:
            await self.script(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One whole request (head and Content-Length body), or None at the client's EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_by_client += 1
            return None
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


def settings_for(address: str, env: dict[str, str] | None = None, **flags: Any) -> Settings:
    return resolve(HTTPFlags(http_addr=address, **flags), env or {})


async def keep_answering(
    server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    while await server.read_request(reader) is not None:
        w.write(answer(JSON_OK, "X-Consul-Index: 5"))
        await w.drain()


def test_keep_alive_reuses_one_connection_and_parallel_requests_each_get_one() -> None:
    release = asyncio.Event()

    async def slow_then_answer(
        server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        while await server.read_request(r) is not None:
            if b"/slow" in server.requests[-1]:
                await release.wait()
            w.write(answer())
            await w.drain()

    async def main() -> None:
        server = await Server(slow_then_answer).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            for _ in range(5):
                assert (await client.get("/v1/agent/self")).body == {"ok": True}
            assert server.connections == 1
            # three blocking queries at once: no limit, each holds its own connection
            slow = [asyncio.create_task(client.get("/slow")) for _ in range(3)]
            while len(server.requests) < 8:
                await asyncio.sleep(0.01)
            assert server.connections == 3  # the idle one was taken, two more opened
            release.set()
            await asyncio.gather(*slow)
            for _ in range(5):
                await client.get("/v1/agent/self")
            assert server.connections == 3  # all three went back to the pool
        await server.stop()

    run(main)


def test_chunked_body_then_the_connection_is_reused() -> None:
    async def chunked(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.read_request(r) is not None:
            payload = json.dumps({"Items": list(range(300))}).encode()
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Consul-Index: 42\r\n"
                    b"x-consul-knownleader: true\r\n\r\n")  # fmt: skip
            for start in range(0, len(payload), 100):
                part = payload[start : start + 100]
                w.write(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n")
                await w.drain()
            w.write(b"0\r\nX-Trailer: yes\r\n\r\n")
            await w.drain()

    async def main() -> None:
        server = await Server(chunked).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            for _ in range(2):
                resp = await client.get("/v1/health/service/db")
                assert resp.body == {"Items": list(range(300))}
                assert resp.index == 42 and resp.known_leader is True  # names case-insensitive
        await server.stop()
        assert server.connections == 1

    run(main)


def test_close_delimited_body_and_connection_close_are_never_reused() -> None:
    async def close_delimited(
        server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        if await server.read_request(r) is None:
            return
        if server.connections % 2:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + JSON_OK)
        else:
            w.write(answer(JSON_OK, "Connection: close"))
        await w.drain()
        w.close()

    async def main() -> None:
        server = await Server(close_delimited).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            for _ in range(4):
                assert (await client.get("/v1/agent/self")).body == {"ok": True}
        await server.stop()
        assert server.connections == 4

    run(main)


def test_idle_connection_closed_by_the_server_is_retried_once_on_a_fresh_one() -> None:
    async def drop_second(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # The first connection answers once, then takes the next request and hangs up without
        # a byte: the race of a keep-alive timeout with the client's next request.
        if server.connections == 1:
            await server.read_request(r)
            w.write(answer())
            await w.drain()
            await server.read_request(r)
            return
        await keep_answering(server, r, w)

    async def main() -> None:
        server = await Server(drop_second).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            await client.get("/v1/agent/self")
            resp = await client.put("/v1/agent/check/pass/x")  # the same request, sent again
            assert resp.index == 5
        await server.stop()
        assert server.connections == 2
        assert [q.split(b" ", 2)[:2] for q in server.requests] == [
            [b"GET", b"/v1/agent/self"],
            [b"PUT", b"/v1/agent/check/pass/x"],
            [b"PUT", b"/v1/agent/check/pass/x"],
        ]

    run(main)


def test_a_fresh_connection_closed_before_an_answer_is_not_retried() -> None:
    async def hang_up(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.read_request(r)

    async def main() -> None:
        server = await Server(hang_up).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            with pytest.raises(ConsulUnavailable, match=r"unreachable .*before an answer"):
                await client.get("/v1/agent/self")
        await server.stop()
        assert server.connections == 1

    run(main)


def test_an_idle_connection_the_server_closed_is_not_taken() -> None:
    async def answer_once(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.read_request(r)
        w.write(answer())
        await w.drain()

    async def main() -> None:
        server = await Server(answer_once).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            await client.get("/v1/agent/self")
            await asyncio.sleep(0.2)  # the server's FIN arrives while the connection is idle
            await client.get("/v1/agent/self")
        await server.stop()
        assert server.connections == 2 and len(server.requests) == 2

    run(main)


def test_server_closing_mid_body_is_unavailable_and_the_connection_is_dropped() -> None:
    async def cut(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if server.connections == 1:
            await server.read_request(r)
            w.write(answer())  # a complete answer: the connection goes back to the pool
            await server.read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            await w.drain()
            return
        await keep_answering(server, r, w)

    async def main() -> None:
        server = await Server(cut).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            await client.get("/v1/agent/self")
            with pytest.raises(ConsulUnavailable, match="after 10 of 100 body bytes"):
                await client.get("/v1/agent/self")  # something was received: no retry
            await client.get("/v1/agent/self")
        await server.stop()
        assert server.connections == 2 and len(server.requests) == 3

    run(main)


@pytest.mark.parametrize(
    ("head", "limit"),
    [
        (f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(), "64 MiB"),
        (b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % (MAX_BODY_BYTES + 1), "64 MiB"),
        (b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", "64 KiB"),
    ],
    ids=["content-length", "chunk", "headers"],
)
def test_oversized_answers_are_a_bounded_error_naming_the_endpoint(head: bytes, limit: str) -> None:
    async def big(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\n" + head)
        await w.drain()
        await r.read()  # until the client gives up

    async def main() -> None:
        server = await Server(big).start()
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            with pytest.raises(ConsulError) as err:
                await client.get("/v1/health/service/huge")
        await server.stop()
        assert not isinstance(err.value, ConsulUnavailable)  # not transient: no startup retry
        message = str(err.value)
        assert message.startswith("GET /v1/health/service/huge:") and limit in message
        assert f"127.0.0.1:{server.port}" in message

    run(main)


def test_a_silent_server_times_out_and_close_ends_a_request_in_flight() -> None:
    async def silent(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await server.read_request(r)
        await asyncio.sleep(60)

    async def main() -> None:
        server = await Server(silent).start()
        client = ConsulClient(settings_for(f"127.0.0.1:{server.port}"))
        started = time.monotonic()
        with pytest.raises(
            ConsulUnavailable, match=r"TimeoutError: no complete answer within 0\.5 s"
        ):
            await client.get("/v1/agent/self", timeout=0.5)
        assert time.monotonic() - started < 3
        # a blocking query in flight when the client closes fails at once, without a retry
        blocking = asyncio.create_task(client.get("/v1/agent/self", timeout=60))
        while len(server.requests) < 2:
            await asyncio.sleep(0.01)
        await client.close()
        with pytest.raises(ConsulUnavailable):
            await blocking
        assert server.connections == 2
        await server.stop()

    run(main)


def test_unix_socket_with_keep_alive(tmp_path: Path) -> None:
    async def main() -> None:
        sock = str(tmp_path / "consul.sock")
        server = await Server(keep_answering).start(unix_path=sock)
        async with ConsulClient(resolve(HTTPFlags(), {"CONSUL_HTTP_ADDR": f"unix://{sock}"})) as c:
            for _ in range(3):
                assert (await c.get("/v1/agent/self")).index == 5
        await server.stop()
        assert server.connections == 1
        assert b"\r\nHost: consul\r\n" in server.requests[0]

    run(main)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")
def test_ipv6_literal_address() -> None:
    async def main() -> None:
        try:
            server = await Server(keep_answering).start(host="::1")
        except OSError as exc:
            pytest.skip(f"no ::1 here: {exc}")
        async with ConsulClient(settings_for(f"[::1]:{server.port}")) as client:
            assert (await client.get("/v1/agent/self")).index == 5
        await server.stop()
        assert f"\r\nHost: [::1]:{server.port}\r\n".encode() in server.requests[0]

    run(main)


def test_the_request_on_the_wire() -> None:
    async def main() -> None:
        server = await Server(keep_answering).start()
        env = {"CONSUL_HTTP_AUTH": "user:pa ss"}
        settings = settings_for(f"127.0.0.1:{server.port}/prefix", env, token="tok-9", stale=True)
        async with ConsulClient(settings) as client:
            await client.get(
                "/v1/health/service/a b", params={"filter": 'Service == "x"'}, use_stale=True
            )
            await client.put("/v1/agent/service/register", {"Name": "ü"})
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}")) as client:
            await client.get("/v1/agent/self")
        await server.stop()
        get, put, anonymous = (r.decode("utf-8") for r in server.requests)
        assert get.startswith(
            "GET /prefix/v1/health/service/a%20b"
            "?filter=Service%20%3D%3D%20%22x%22&stale= HTTP/1.1\r\n"
        )
        assert f"\r\nHost: 127.0.0.1:{server.port}\r\n" in get
        assert "\r\nUser-Agent: meshkit-proxy\r\n" in get and "\r\nX-Consul-Token: tok-9\r\n" in get
        assert "\r\nAuthorization: Basic dXNlcjpwYSBzcw==\r\n" in get  # user:pa ss
        assert "Content-Length" not in get
        assert "\r\nContent-Type: application/json\r\n" in put
        assert put.endswith('\r\n\r\n{"Name": "\\u00fc"}')
        assert "X-Consul-Token" not in anonymous and "Authorization" not in anonymous

    run(main)


def test_https_with_a_client_certificate_and_sni(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files.ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_cert_chain(files.server_cert, files.server_key)

    async def main() -> None:
        server = Server(keep_answering)

        def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            server.server_names.append(name)

        server_ctx.sni_callback = sni
        await server.start(ssl_context=server_ctx)
        env = {
            "CONSUL_HTTP_SSL": "true",
            "CONSUL_CACERT": str(files.ca),
            "CONSUL_CLIENT_CERT": str(files.client_cert),
            "CONSUL_CLIENT_KEY": str(files.client_key),
        }
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}", env)) as client:
            for _ in range(2):
                assert (await client.get("/v1/agent/self")).index == 5
        env["CONSUL_TLS_SERVER_NAME"] = "localhost"
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}", env)) as client:
            assert (await client.get("/v1/agent/self")).index == 5
        env["CONSUL_TLS_SERVER_NAME"] = "server.dc1.consul"  # not in the certificate's names
        async with ConsulClient(settings_for(f"127.0.0.1:{server.port}", env)) as client:
            with pytest.raises(ConsulUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get("/v1/agent/self")
        await server.stop()
        # an IP address is never sent as SNI; the configured server name is
        assert server.server_names[:2] == [None, "localhost"]
        # keep-alive over TLS too: three requests on two connections (the third client's
        # handshake failed, so it never reached the server's handler)
        assert server.connections == 2 and len(server.requests) == 3
        subjects = [dict(x[0] for x in c["subject"]) for c in server.peer_certs]  # type: ignore[index]
        assert subjects[0]["commonName"] == "ansible"  # the client certificate was presented

    run(main)


CLEAN_EXIT = """
import asyncio, sys
from meshkit.consul.client import ConsulClient
from meshkit.consul.settings import Settings, resolve
from meshkit.flags import HTTPFlags

async def main():
    async with ConsulClient(resolve(HTTPFlags(http_addr=sys.argv[1]), {})) as client:
        await asyncio.gather(*(client.get("/v1/agent/self") for _ in range(3)))
        await client.get("/v1/agent/self")

asyncio.run(main())
print("done")
"""


def test_close_leaves_no_unclosed_transport_at_exit(agent: DevAgent) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", CLEAN_EXIT,
         agent.address],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert "unclosed" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


NO_AIOHTTP = """
import sys
import meshkit.proxy_main, meshkit.consul.mode, meshkit.consul.client, meshkit.native
assert "aiohttp" not in sys.modules, sorted(m for m in sys.modules if "aiohttp" in m)
print("clean")
"""


def test_a_consul_mode_proxy_never_imports_aiohttp(agent: DevAgent, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_AIOHTTP], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout.strip() == "clean", proc.stderr
    # and the real thing: a running sidecar's memory maps carry none of aiohttp's files
    app = App("api")
    agent.register(
        {"Name": "api", "ID": "api", "Port": app.port, "Address": "127.0.0.1",
         "Connect": {"SidecarService": {"Port": free_port()}}}
    )  # fmt: skip
    proxy = ProxyProcess(
        tmp_path, "api", ["-sidecar-for", "api"], {"CONSUL_HTTP_ADDR": agent.address}
    )
    try:
        proxy.start().wait_ready()
        pids = [proxy.process.pid]
        children = Path(f"/proc/{pids[0]}/task/{pids[0]}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        for pid in pids:
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "/aiohttp/" not in maps and "/multidict/" not in maps and "/yarl/" not in maps
    finally:
        proxy.stop(timeout=5)
        app.close()
