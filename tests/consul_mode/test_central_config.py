# SPDX-License-Identifier: MPL-2.0
"""The proxy honours the merged `Proxy.Config` (issue 15 item 3), against the real dev agent
and real `meshkit-proxy` processes: every supported key is applied on change without a
restart (same pid, held connection untouched) and reported on /metrics; a key the proxy does
not support is logged once as a warning naming the key and its source, never fatal."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit.consul.registration import parse_registration
from tests.support.consul_double import fixture
from tests.support.consul_mesh import Mesh, build_mesh
from tests.support.devagent import DevAgent
from tests.support.echo import OpenEcho
from tests.support.waits import wait_until

SETTING = "meshkit_proxy_listener_setting"
INFO = "meshkit_proxy_listener_info"


@pytest.fixture
def mesh(agent: DevAgent, tmp_path: Path) -> Iterator[Mesh]:
    m = build_mesh(agent, tmp_path)
    try:
        yield m
    finally:
        m.close()


def with_config(
    mesh: Mesh, config: dict[str, Any], upstream_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = copy.deepcopy(mesh.web_definition())
    proxy = body["Connect"]["SidecarService"]["Proxy"]
    proxy["Config"] = config
    if upstream_config is not None:
        proxy["Upstreams"][0]["Config"] = upstream_config
    return body


def test_config_keys_apply_live_and_unknown_keys_warn_once(mesh: Mesh) -> None:
    agent, web = mesh.agent, mesh.proxies["web"]
    pid = web.process.pid
    public = {"listener": "public", "service": "web"}
    assert web.metric(SETTING, setting="handshake_timeout_ms", **public) == 10000  # default
    assert web.metric(INFO, protocol="tcp", **public) == 1
    held = OpenEcho(mesh.upstream_ports["api"])
    assert held.roundtrip()

    # proxy-defaults holds envoy_extra with the same value as the merged registration: the
    # warning must attribute it to proxy-defaults; `limits` on the upstream is the
    # registration's own.
    agent.ok("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global",
                                   "Config": {"envoy_extra": "x"}})  # fmt: skip
    config = {"handshake_timeout_ms": 7000, "local_connect_timeout_ms": 1500,
              "protocol": "http", "envoy_extra": "x"}  # fmt: skip
    agent.register(with_config(mesh, config, {"connect_timeout_ms": 750, "protocol": "grpc",
                                              "limits": {"max_connections": 5}}))  # fmt: skip

    def applied() -> bool:
        return web.metric(SETTING, setting="handshake_timeout_ms", **public) == 7000

    wait_until(applied, 5, what="handshake_timeout_ms applied")
    assert web.metric(SETTING, setting="local_connect_timeout_ms", **public) == 1500
    assert web.metric(INFO, protocol="http", **public) == 1
    assert web.metric(INFO, protocol="tcp", **public) is None
    up = {"listener": "upstream:service:api", "service": "web"}
    assert web.metric(SETTING, setting="connect_timeout_ms", **up) == 750
    assert web.metric(INFO, protocol="grpc", **up) == 1
    assert web.process.pid == pid and web.process.poll() is None
    assert held.roundtrip(), "an open connection was cut by a config change"

    # the same again, then one key changed: still no restart, still one warning per key
    agent.register(with_config(mesh, {**config, "handshake_timeout_ms": 3000},
                               {"connect_timeout_ms": 750, "limits": {}}))  # fmt: skip
    wait_until(lambda: web.metric(SETTING, setting="handshake_timeout_ms", **public) == 3000, 5,
               what="second change applied")  # fmt: skip
    assert web.metric(INFO, protocol="tcp", **up) == 1  # upstream protocol key removed
    assert held.roundtrip()
    held.close()
    log = web.log()
    extra = [ln for ln in log.splitlines() if "'envoy_extra'" in ln]
    limits = [ln for ln in log.splitlines() if "'limits'" in ln]
    assert len(extra) == 1 and "WARN" in extra[0].upper(), extra
    assert "Proxy.Config key 'envoy_extra' from proxy-defaults" in extra[0]
    assert len(limits) == 1 and "Proxy.Upstreams[0].Config (api)" in limits[0], limits
    assert "from registration" in limits[0]
    assert "max_connections" not in log and "'x'" not in log  # values are never logged
    assert web.process.poll() is None


def test_proxy_defaults_change_reaches_the_running_proxy(tmp_path: Path) -> None:
    """With central config on, only the entries change: the agent re-merges them into the
    sidecar registration and the proxy applies the new values without a restart; a key the
    proxy does not support, set in proxy-defaults, is attributed to proxy-defaults."""
    agent = DevAgent(tmp_path / "agent", extra_args=["-enable-central-service-config"]).start()
    mesh = build_mesh(agent, tmp_path)
    try:
        web = mesh.proxies["web"]
        pid = web.process.pid
        public = {"listener": "public", "service": "web"}
        held = OpenEcho(mesh.upstream_ports["api"])
        assert held.roundtrip()
        agent.ok("PUT", "/v1/config", {"Kind": "proxy-defaults", "Name": "global", "Config": {
            "local_connect_timeout_ms": 1500, "handshake_timeout_ms": 7000,
            "envoy_prometheus_bind_addr": "0.0.0.0:9102"}})  # fmt: skip
        agent.ok("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "web",
                                       "Protocol": "http"})  # fmt: skip
        wait_until(
            lambda: web.metric(SETTING, setting="handshake_timeout_ms", **public) == 7000,
            10, what="proxy-defaults applied",
        )  # fmt: skip
        assert web.metric(SETTING, setting="local_connect_timeout_ms", **public) == 1500
        wait_until(lambda: web.metric(INFO, protocol="http", **public) == 1, 10,
                   what="service-defaults protocol applied")  # fmt: skip
        assert web.process.pid == pid and web.process.poll() is None
        assert held.roundtrip()
        held.close()
        warn = [ln for ln in web.log().splitlines() if "'envoy_prometheus_bind_addr'" in ln]
        assert len(warn) == 1 and "from proxy-defaults" in warn[0], warn
        assert "9102" not in web.log()
    finally:
        mesh.close()
        agent.stop(timeout=1.0)


def test_local_service_address_and_bad_protocol_in_config() -> None:
    body = copy.deepcopy(fixture("05-agent-service-web-sidecar-proxy.json"))
    body["Proxy"]["Config"] = {"local_service_address": "127.0.0.2:9999", "protocol": "pigeon"}
    reg = parse_registration(body, "x")
    assert reg.public is not None
    assert (reg.public.local_host, reg.public.local_port) == ("127.0.0.2", 9999)
    assert reg.public.protocol == "tcp"  # unknown protocol: reported, not fatal
    assert [(w, k) for w, k, _ in reg.unsupported] == [("Proxy.Config", "protocol")]
    body["Proxy"]["Config"] = {"local_service_address": "127.0.0.3"}
    reg = parse_registration(body, "x")
    assert reg.public is not None
    assert (reg.public.local_host, reg.public.local_port) == ("127.0.0.3", 8080)
