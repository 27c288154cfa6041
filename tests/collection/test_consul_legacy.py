# SPDX-License-Identifier: MPL-2.0
"""The older proxy forms of Consul's documentation (1.2-1.7), each converted by the one
converter (module_utils/consul_legacy.py) with a deprecation warning naming the field and the
modern spelling; what meshkit cannot honour is refused with the fix."""

from __future__ import annotations

import pytest

from ansible_collections.meshkit.connect.plugins.module_utils.consul_legacy import (
    LegacyError,
    convert,
)
from tests.support import legacy_examples as ex


def test_proxy_destination_file_and_api() -> None:
    out, warnings, cmd = convert(ex.PROXY_DESTINATION_FILE, "redis.json: service")
    assert out == {"name": "redis-proxy", "kind": "connect-proxy", "port": 8181,
                   "proxy": {"destination_service_name": "redis"}}  # fmt: skip
    assert cmd is None
    assert warnings == [
        "redis.json: service.proxy_destination is deprecated (Consul 1.2-1.3); write "
        "proxy.destination_service_name: 'redis' instead"
    ]
    out, warnings, _ = convert(ex.PROXY_DESTINATION_API, "body")
    assert out["Proxy"] == {"DestinationServiceName": "redis"} and "ProxyDestination" not in out
    assert "write Proxy.DestinationServiceName: 'redis'" in warnings[0]


def test_proxy_destination_contradicting_proxy_block_is_refused() -> None:
    bad = {**ex.PROXY_DESTINATION_FILE, "proxy": {"destination_service_name": "db"}}
    with pytest.raises(LegacyError, match=r"f\.json\.proxy_destination 'redis' contradicts"):
        convert(bad, "f.json")


def test_managed_minimal_becomes_a_sidecar_run_by_meshkit_proxy() -> None:
    out, warnings, cmd = convert(ex.MANAGED_MINIMAL, "redis.json: service")
    assert out == {"name": "redis", "port": 6379, "connect": {"sidecar_service": {}}}
    assert cmd == ["meshkit-proxy", "-sidecar-for", "redis"]
    assert "redis.json: service.connect.proxy (a managed proxy) is deprecated" in warnings[0]
    assert "write connect.sidecar_service instead" in warnings[0]


def test_managed_upstreams_one_level_up() -> None:
    out, warnings, _ = convert(ex.MANAGED_UPSTREAMS, "web.json: service")
    assert out["connect"] == {"sidecar_service": {"proxy": {"upstreams": [
        {"destination_name": "redis", "local_bind_port": 1234}]}}}  # fmt: skip
    assert len(warnings) == 1


def test_managed_config_upstreams_move_out_of_the_opaque_config() -> None:
    out, warnings, cmd = convert(ex.MANAGED_CONFIG_UPSTREAMS, "web.json: service")
    proxy = out["connect"]["sidecar_service"]["proxy"]
    assert proxy["upstreams"] == [{
        "destination_type": "service", "destination_name": "redis", "datacenter": "dc1",
        "local_bind_address": "127.0.0.1", "local_bind_port": 1234,
        "config": {"connect_timeout_ms": 10000}}]  # fmt: skip
    assert proxy["config"] == {
        "bind_address": "0.0.0.0", "bind_port": 20000, "local_service_address": "127.0.0.1:8080",
        "local_connect_timeout_ms": 1000, "handshake_timeout_ms": 10000}  # fmt: skip
    assert cmd == ["meshkit-proxy", "-sidecar-for", "web"]
    assert any("connect.proxy.config.upstreams is deprecated" in w and
               "destination_datacenter -> datacenter" in w for w in warnings)  # fmt: skip


def test_managed_config_upstreams_camel_case_api_body() -> None:
    out, _, cmd = convert(ex.MANAGED_CONFIG_UPSTREAMS_API, "body")
    assert out["Connect"] == {"SidecarService": {"Proxy": {"Upstreams": [
        {"DestinationName": "redis", "LocalBindPort": 1234}]}}}  # fmt: skip
    assert cmd == ["meshkit-proxy", "-sidecar-for", "web2"]


def test_custom_command_and_script_mode_are_refused_with_the_fix() -> None:
    with pytest.raises(LegacyError) as err:
        convert(ex.MANAGED_CUSTOM, "web.json: service")
    text = str(err.value)
    assert text.startswith("web.json: service.connect.proxy.command ['/usr/bin/my-proxy'")
    assert "Remove command (and exec_mode) to use meshkit-proxy" in text
    script = {"name": "w", "connect": {"proxy": {"exec_mode": "script"}}}
    with pytest.raises(LegacyError, match=r"exec_mode 'script' cannot be converted"):
        convert(script, "w.json")
    default = {"name": "w", "connect": {"proxy": {"command": ["/usr/local/bin/consul", "connect",
                                                              "proxy"]}}}  # fmt: skip
    assert convert(default, "w.json")[2] == ["meshkit-proxy", "-sidecar-for", "w"]


def test_standalone_connect_proxy_is_current_and_passes_unchanged() -> None:
    for body in (ex.STANDALONE_SNAKE, ex.STANDALONE_CAMEL):
        out, warnings, cmd = convert(body, "x")
        assert out == body and warnings == [] and cmd is None
