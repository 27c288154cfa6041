# SPDX-License-Identifier: MPL-2.0
"""The Consul client and blocking watches, on the wire, against a double of Consul that answers
with recorded Consul 1.7.14 responses (real HTTP, real TLS, real unix socket)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from meshkit.consul.client import ConsulClient, ConsulHTTPError, ConsulUnavailable, Response
from meshkit.consul.settings import resolve
from meshkit.consul.watch import Mode, Policy, Watch, backoff_delay, next_index
from meshkit.flags import HTTPFlags
from meshkit_tools import pki
from tests.support.consul_double import ConsulDouble, fixture

ROOTS = "/v1/agent/connect/ca/roots"
FAST = Policy(wait_s=2.0, backoff_base_s=0.05, backoff_cap_s=0.2)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 30))


def body(resp: Response) -> Any:
    return resp.body


def test_backoff_is_consuls_and_index_discipline() -> None:
    p = Policy()
    assert 5.0 <= backoff_delay(1, p) <= 5.0 * 1.125
    assert 20.0 <= backoff_delay(2, p) <= 20.0 * 1.125
    assert 180.0 <= backoff_delay(10, p) <= 180.0 * 1.125
    assert backoff_delay(0, p) == 0
    assert next_index(10, 12) == 12
    assert next_index(10, 3) == 0  # went backwards: start over
    assert next_index(0, 0) == 1  # never below 1
    assert next_index(0, -5) == 1


def test_token_goes_in_header_only_with_dc_and_stale() -> None:
    async def main() -> None:
        double = ConsulDouble()
        double.set("/v1/health/connect/redis", fixture("26-health-connect-redis-passing.json"))
        await double.start()
        settings = resolve(
            HTTPFlags(
                http_addr=f"127.0.0.1:{double.port}", token="tok-123", datacenter="dc9", stale=True
            ),
            {},
        )
        async with ConsulClient(settings) as client:
            resp = await client.get(
                "/v1/health/connect/redis", params=[("passing", "1")], use_dc=True, use_stale=True
            )
        await double.stop()
        assert resp.body[0]["Service"]["Port"] == 21001
        seen = double.seen[-1]
        assert seen.headers["X-Consul-Token"] == "tok-123"
        assert "tok-123" not in seen.url
        assert ("dc", "dc9") in seen.query and ("passing", "1") in seen.query
        assert any(k == "stale" for k, _ in seen.query)

    run(main)


def test_errors_are_typed() -> None:
    async def main() -> None:
        double = ConsulDouble()
        double.set("/v1/agent/service/x", "ACL not found", status=403)
        await double.start()
        settings = resolve(HTTPFlags(http_addr=f"127.0.0.1:{double.port}"), {})
        async with ConsulClient(settings) as client:
            with pytest.raises(ConsulHTTPError) as err:
                await client.get("/v1/agent/service/x")
            assert err.value.status == 403 and "ACL not found" in str(err.value)
            missing = await client.get("/v1/nothing", allow_404=True)
            assert missing.status == 404 and missing.body is None
        await double.stop()
        async with ConsulClient(resolve(HTTPFlags(http_addr=f"127.0.0.1:{double.port}"), {})) as c:
            with pytest.raises(ConsulUnavailable, match="unreachable"):
                await c.get("/v1/agent/self")

    run(main)


def test_unix_socket(tmp_path: Path) -> None:
    async def main() -> None:
        double = ConsulDouble()
        double.set("/v1/agent/self", fixture("01-agent-self.json"))
        sock = str(tmp_path / "consul.sock")
        await double.start(unix_path=sock)
        async with ConsulClient(resolve(HTTPFlags(), {"CONSUL_HTTP_ADDR": f"unix://{sock}"})) as c:
            resp = await c.get("/v1/agent/self")
        await double.stop()
        assert resp.body["Config"]["Datacenter"] == "dc1"

    run(main)


def _server_cert(ca: pki.Issued, name: str) -> pki.Issued:
    key = pki.generate_key()
    now = pki.utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(pki.new_serial())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return pki.Issued(cert=cert, key=key)


def test_https_with_ca_client_cert_and_server_name(tmp_path: Path) -> None:
    ca = pki.make_root("11111111-2222-3333-4444-555555555555.consul")
    server = _server_cert(ca, "server.dc1.consul")
    client = _server_cert(ca, "client.dc1.consul")
    for name, text in [
        ("ca.pem", ca.cert_pem),
        ("srv.pem", server.cert_pem),
        ("cli.pem", client.cert_pem),
    ]:
        pki.write_public(tmp_path / name, text)
    for name, text in [("srv.key", server.key_pem), ("cli.key", client.key_pem)]:
        pki.write_private(tmp_path / name, text)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # like verify_incoming
    server_ctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")

    async def main() -> None:
        double = ConsulDouble()
        double.set(ROOTS, fixture("02-connect-ca-roots.json"))
        await double.start(ssl_context=server_ctx)
        env = {
            "CONSUL_HTTP_ADDR": f"127.0.0.1:{double.port}",
            "CONSUL_HTTP_SSL": "true",
            "CONSUL_CACERT": str(tmp_path / "ca.pem"),
            "CONSUL_CLIENT_CERT": str(tmp_path / "cli.pem"),
            "CONSUL_CLIENT_KEY": str(tmp_path / "cli.key"),
            "CONSUL_TLS_SERVER_NAME": "server.dc1.consul",
        }
        async with ConsulClient(resolve(HTTPFlags(), env)) as c:
            resp = await c.get(ROOTS)
            assert resp.index == 1 and resp.body["TrustDomain"].endswith(".consul")
        # a wrong expected server name fails verification: nothing is trusted by accident
        env["CONSUL_TLS_SERVER_NAME"] = "other.name"
        async with ConsulClient(resolve(HTTPFlags(), env)) as c:
            with pytest.raises(ConsulUnavailable):
                await c.get(ROOTS)
        await double.stop()

    run(main)


def test_index_watch_blocks_resets_and_stays_static_while_consul_is_away() -> None:
    async def main() -> None:
        double = ConsulDouble()
        roots = fixture("02-connect-ca-roots.json")
        double.set(ROOTS, roots, index=9)
        await double.start()
        updates: list[str] = []

        async def on_update(value: Any) -> None:
            updates.append(value["ActiveRootID"])

        async with ConsulClient(resolve(HTTPFlags(http_addr=f"127.0.0.1:{double.port}"), {})) as c:
            watch: Watch[Any] = Watch(
                c, "roots", ROOTS, mode=Mode.INDEX, decode=body, on_update=on_update, policy=FAST
            )
            task = asyncio.create_task(watch.run())
            for _ in range(100):
                if updates:
                    break
                await asyncio.sleep(0.02)
            assert updates == [roots["ActiveRootID"]]
            await asyncio.sleep(0.2)
            # blocked on index 9, with a wait, not spinning
            blocking = [s for s in double.seen if ("index", "9") in s.query]
            assert blocking and all(dict(s.query).get("wait") == "2000ms" for s in blocking)
            assert len(double.seen) <= 3

            # same content at a new index: no update (compare content, not index)
            double.set(ROOTS, roots, index=10)
            await asyncio.sleep(0.2)
            assert len(updates) == 1

            # the index goes backwards (agent restarted): next call is non-blocking
            changed = dict(roots, ActiveRootID="new-root")
            double.set(ROOTS, changed, index=4)
            await watch.wait_changed(5)
            assert updates[-1] == "new-root"
            await asyncio.sleep(0.2)
            after_reset = double.seen[-2:]
            assert any("index" not in dict(s.query) for s in after_reset)
            assert watch.index == 4

            # Consul goes away: the value stays, the status says so; then it comes back
            await double.stop()
            for _ in range(200):
                if not watch.status.healthy:
                    break
                await asyncio.sleep(0.02)
            assert not watch.status.healthy and watch.value is not None
            assert watch.value["ActiveRootID"] == "new-root"
            assert watch.status.failures >= 1 and "unreachable" in watch.status.last_error
            await double.start()
            double.set(ROOTS, roots, index=20)
            deadline = time.monotonic() + 10
            while not watch.status.healthy and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert watch.status.healthy
            assert updates[-1] == roots["ActiveRootID"]
            task.cancel()
        await double.stop()

    run(main)


def test_hash_watch_uses_content_hash() -> None:
    async def main() -> None:
        double = ConsulDouble()
        path = "/v1/agent/service/web-sidecar-proxy"
        svc = fixture("05-agent-service-web-sidecar-proxy.json")
        double.set(path, svc, content_hash=svc["ContentHash"])
        await double.start()
        async with ConsulClient(resolve(HTTPFlags(http_addr=f"127.0.0.1:{double.port}"), {})) as c:
            watch: Watch[Any] = Watch(c, "svc", path, mode=Mode.HASH, decode=body, policy=FAST)
            task = asyncio.create_task(watch.run())
            await asyncio.sleep(0.3)
            assert ("hash", svc["ContentHash"]) in double.seen[-1].query
            moved = dict(svc, Port=21999, ContentHash="abc")
            double.set(path, moved, content_hash="abc")
            assert await watch.wait_changed(5)
            assert watch.value is not None and watch.value["Port"] == 21999 and watch.hash == "abc"
            task.cancel()
        await double.stop()

    run(main)
