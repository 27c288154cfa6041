# SPDX-License-Identifier: MPL-2.0
"""A public listener whose TLS material was cleared refuses connections instead of crashing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshkit.authz import StaticAuthorizer
from meshkit.certstore import CertStore, TLSMaterial
from meshkit.config import ProxyConfig, PublicListener
from meshkit.runtime import Proxy
from tests.support.echo import EchoApp
from tests.support.pki_files import ThrowawayCA
from tests.support.tls_client import tls_client_context


def test_cleared_material_refuses_then_serves_again(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp
) -> None:
    db, web = ca.leaf("db"), ca.leaf("web")
    material = TLSMaterial(db.cert.read_text(), db.key.read_text(), (ca.root_file().read_text(),))
    client_ctx = tls_client_context(web.cert, web.key, ca.root_file())

    async def echo_tls(port: int) -> bytes:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=None
        )
        writer.write(b"ping")
        got = await asyncio.wait_for(reader.readexactly(4), 5)
        writer.close()
        return got

    async def main() -> None:
        certs = CertStore("auto")
        certs.update(material)
        proxy = Proxy(certs)
        await proxy.apply(
            ProxyConfig(
                service="db",
                public=PublicListener("127.0.0.1", 0, "127.0.0.1", app.port),
                authorizer=StaticAuthorizer.from_lists(("web",), (), "deny"),
            )
        )
        port = next(iter(proxy.listeners.values())).port
        assert await echo_tls(port) == b"ping"

        certs.clear()
        assert not certs.loaded
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once, no handshake
        writer.close()
        text = proxy.metrics.render()
        assert 'reason="no_tls_material"} 1' in text, text

        certs.update(material)
        assert await echo_tls(port) == b"ping"
        await proxy.drain(1.0)

    asyncio.run(main())
