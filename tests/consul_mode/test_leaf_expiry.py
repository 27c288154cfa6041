# SPDX-License-Identifier: MPL-2.0
"""Never serve with an expired leaf: when Consul does not renew it (here: a Consul double that
keeps answering with the old one), the listeners close at expiry and /ready says why; a fresh
leaf reopens them. Real proxy (`Proxy`), real sockets; Consul is the recorded-shape double."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket

from meshkit import flags
from meshkit.consul.mode import ConsulMode
from meshkit.consul.settings import resolve
from meshkit.runtime import Proxy
from meshkit_tools import pki
from tests.support.consul_double import ConsulDouble
from tests.support.consul_leaf import FAST, TD, leaf_body
from tests.support.echo import App
from tests.support.ports import free_port
from tests.support.waits import wait_until_async


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_listeners_close_at_leaf_expiry_and_reopen_on_renewal() -> None:
    async def main() -> None:
        root = pki.make_root(TD)
        app = App("api")
        public, upstream = free_port(), free_port()
        double = ConsulDouble()
        double.set(
            "/v1/agent/connect/ca/roots",
            {"TrustDomain": TD, "ActiveRootID": "r1", "Roots": [{"RootCert": root.cert_pem}]},
        )
        double.set("/v1/agent/connect/ca/leaf/api", leaf_body(root, dt.timedelta(seconds=3)))
        double.set("/v1/connect/intentions/match", {"api": []})
        double.set("/v1/agent/connect/authorize", {"Authorized": True, "Reason": "default"})
        double.set("/v1/health/connect/db", [])
        double.set(
            "/v1/agent/service/api-sidecar-proxy",
            {
                "Kind": "connect-proxy",
                "ID": "api-sidecar-proxy",
                "Port": public,
                "Address": "127.0.0.1",
                "Proxy": {
                    "DestinationServiceName": "api",
                    "LocalServicePort": app.port,
                    "Upstreams": [{"DestinationName": "db", "LocalBindPort": upstream}],
                },
            },
            content_hash="h1",
        )
        await double.start()
        cmd = flags.parse(["-proxy-id", "api-sidecar-proxy"], env={})
        proxy = Proxy()
        mode = ConsulMode(
            cmd,
            proxy,
            settings=resolve(None, {"CONSUL_HTTP_ADDR": f"127.0.0.1:{double.port}"}),
            policy=FAST,
        )
        try:
            await mode.start()
            assert not refused(public) and not refused(upstream)
            assert proxy.ready
            # Consul keeps handing out the same (soon expired) leaf: stop serving at expiry
            assert await wait_until_async(lambda: refused(public) and refused(upstream), 6)
            assert any("leaf_valid" in r for r in proxy.not_ready_reasons())
            # a renewed leaf arrives through the blocking leaf watch: serving again
            double.set("/v1/agent/connect/ca/leaf/api", leaf_body(root, dt.timedelta(hours=1)))
            assert await wait_until_async(lambda: not refused(public) and not refused(upstream), 5)
            assert proxy.ready
        finally:
            await proxy.drain(1)
            await mode.close()
            await double.stop()
            app.close()

    asyncio.run(asyncio.wait_for(main(), 60))
