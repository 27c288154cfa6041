# SPDX-License-Identifier: MPL-2.0
"""Issue 12: an unreadable intentions answer at startup does not stop the proxy.

There is no last good state to keep yet, so the proxy starts failing closed (every peer
denied), `/ready` says which watch and endpoint, and the first readable answer (Consul's
`{"api": null}`: no intentions, the default policy decides) makes it ready. Real `Proxy` and
`ConsulMode`; Consul is the recorded-shape HTTP double.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from meshkit import flags
from meshkit.consul.mode import ConsulMode
from meshkit.consul.settings import resolve
from meshkit.runtime import Proxy
from meshkit.spiffe import service_id
from meshkit_tools import pki
from tests.support.consul_double import ConsulDouble
from tests.support.consul_leaf import FAST, TD, leaf_body
from tests.support.echo import App
from tests.support.ports import free_port
from tests.support.waits import wait_until_async

MATCH = "/v1/connect/intentions/match"


def test_a_malformed_match_at_startup_fails_closed_then_recovers_on_null() -> None:
    async def main() -> None:
        root = pki.make_root(TD)
        app = App("api")
        double = ConsulDouble()
        double.set(
            "/v1/agent/connect/ca/roots",
            {"TrustDomain": TD, "ActiveRootID": "r1", "Roots": [{"RootCert": root.cert_pem}]},
        )
        double.set("/v1/agent/connect/ca/leaf/api", leaf_body(root, dt.timedelta(hours=1)))
        double.set(MATCH, {"api": "not a list"})
        double.set("/v1/agent/connect/authorize", {"Authorized": True, "Reason": "default allow"})
        double.set(
            "/v1/agent/service/api-sidecar-proxy",
            {
                "Kind": "connect-proxy",
                "ID": "api-sidecar-proxy",
                "Port": free_port(),
                "Address": "127.0.0.1",
                "Proxy": {"DestinationServiceName": "api", "LocalServicePort": app.port},
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
        web = service_id(TD, "dc1", "web")
        try:
            await mode.start()  # does not raise
            assert mode.intentions is not None
            assert not mode.intentions.decide_now(web, "").allowed
            assert await wait_until_async(lambda: not proxy.ready, 2)
            reasons = "; ".join(proxy.not_ready_reasons())
            assert f"watch intentions:api (GET {MATCH})" in reasons, reasons
            assert "expected a list (or null) of intentions for 'api', got str" in reasons
            double.set(MATCH, {"api": None})
            assert await wait_until_async(lambda: proxy.ready, 5), proxy.not_ready_reasons()
            decision = mode.intentions.decide_now(web, "")
            assert decision.allowed and decision.reason == "default allow"
        finally:
            await proxy.drain(1)
            await mode.close()
            await double.stop()
            app.close()

    asyncio.run(main())
