# SPDX-License-Identifier: MPL-2.0
"""Round trip of every older proxy form through the dev agent's `-config-dir`: the documented
example (tests/devagent/legacy_examples.py) in a file, the registration the agent then holds,
and the deprecation warning in its log naming the file, the field and the modern spelling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import legacy_examples as ex
from tests.support.devagent import DevAgent, DevAgentError


def load(tmp_path: Path, definition: dict[str, Any]) -> tuple[DevAgent, Path]:
    conf = tmp_path / "consul.d"
    conf.mkdir(exist_ok=True)
    path = conf / "svc.json"
    path.write_text(json.dumps({"service": definition}))
    return DevAgent(tmp_path / "a", config_dir=conf), path


def test_proxy_destination(tmp_path: Path) -> None:
    agent, path = load(tmp_path, ex.PROXY_DESTINATION_FILE)
    with agent:
        svc = agent.ok("GET", "/v1/agent/service/redis-proxy")
        assert svc["Kind"] == "connect-proxy" and svc["Port"] == 8181
        assert svc["Proxy"]["DestinationServiceName"] == "redis"
        log = agent.log_text()
    assert f"{path}: service.proxy_destination is deprecated" in log
    assert "proxy.destination_service_name: 'redis'" in log


@pytest.mark.parametrize(
    ("example", "parent", "upstreams"),
    [
        (ex.MANAGED_MINIMAL, "redis", []),
        (ex.MANAGED_UPSTREAMS, "web", [("redis", "", 1234, {})]),
        (ex.MANAGED_CONFIG_UPSTREAMS, "web",
         [("redis", "dc1", 1234, {"connect_timeout_ms": 10000})]),
    ],
)  # fmt: skip
def test_managed_proxy_becomes_a_sidecar(
    tmp_path: Path, example: dict[str, Any], parent: str, upstreams: list[Any]
) -> None:
    agent, path = load(tmp_path, example)
    with agent:
        services = agent.ok("GET", "/v1/agent/services")
        assert sorted(services) == [parent, f"{parent}-sidecar-proxy"]
        sidecar = agent.ok("GET", f"/v1/agent/service/{parent}-sidecar-proxy")
        proxy = sidecar["Proxy"]
        assert proxy["DestinationServiceName"] == parent
        got = [
            (
                u["DestinationName"],
                u.get("Datacenter", ""),
                u["LocalBindPort"],
                u.get("Config") or {},
            )
            for u in proxy.get("Upstreams") or []
        ]
        assert got == upstreams
        if example is ex.MANAGED_CONFIG_UPSTREAMS:
            assert proxy["Config"]["handshake_timeout_ms"] == 10000
            assert "upstreams" not in proxy["Config"]
        log = agent.log_text()
    assert f"{path}: service.connect.proxy (a managed proxy) is deprecated" in log
    assert f"meshkit-proxy -sidecar-for {parent}" in log


def test_custom_managed_command_is_refused_naming_the_file(tmp_path: Path) -> None:
    agent, path = load(tmp_path, ex.MANAGED_CUSTOM)
    with pytest.raises(DevAgentError) as err:
        agent.start(timeout=10)
    text = str(err.value) + agent.log_text()
    assert f"{path}: service.connect.proxy.command" in text, text
    assert "Remove command (and exec_mode)" in text and "Traceback" not in text
    agent.stop(timeout=1)


@pytest.mark.parametrize("how", ["config-dir snake_case", "API CamelCase"])
def test_standalone_connect_proxy_complete_example(tmp_path: Path, how: str) -> None:
    # Consul reads snake_case in files and refuses CamelCase there; CamelCase is
    # the API's.
    if how.startswith("API"):
        agent = DevAgent(tmp_path / "a")
    else:
        agent, _ = load(tmp_path, ex.STANDALONE_SNAKE)
    with agent:
        if how.startswith("API"):
            agent.register(ex.STANDALONE_CAMEL)
        svc = agent.ok("GET", "/v1/agent/service/redis-proxy")
        proxy = svc["Proxy"]
        assert (proxy["DestinationServiceName"], proxy["DestinationServiceID"]) == (
            "redis",
            "redis1",
        )
        assert (proxy["LocalServiceAddress"], proxy["LocalServicePort"]) == ("127.0.0.1", 9090)
        up = proxy["Upstreams"][0]
        assert (up["DestinationType"], up["DestinationName"], up["LocalBindPort"]) == (
            "prepared_query", "q-empty", 1235)  # fmt: skip
        assert "deprecated" not in agent.log_text()
