# SPDX-License-Identifier: MPL-2.0
"""Consul mode started from a `-config` file with `mode: consul` (what the Nomad native pattern
writes with a `template` block): parsing, flag conflicts, and traffic on the real dev agent."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest
import yaml

from meshkit import flags
from meshkit.config import ConfigError
from meshkit.consul import configfile
from tests.support.devagent import DevAgent
from tests.support.echo import App, echo
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.waits import wait_until


def _write(tmp_path: Path, data: object, name: str = "proxy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


FULL = {
    "mode": "consul",
    "service": "web",
    "public_listener": {
        "bind_address": "127.0.0.1",
        "bind_port": 21000,
        "local_service_address": "127.0.0.1:8080",
        "local_connect_timeout_ms": 500,
        "handshake_timeout_ms": "3000",
    },
    "upstreams": [
        {"destination_name": "db", "datacenter": "dc2", "local_bind_port": 9191},
        {
            "destination_name": "db-near",
            "destination_type": "prepared_query",
            "local_bind_address": "127.0.0.2",
            "local_bind_port": 9192,
            "connect_timeout_ms": 2500,
        },
    ],
    "admin": {"bind": "127.0.0.1:19000"},
    "drain_timeout_ms": 2000,
}


def test_file_parses_into_the_registration_flag_mode_builds(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    cmd = flags.parse(["-config", str(path)], env={})
    assert (cmd.static, cmd.consul_file) == (False, str(path))
    got = configfile.load(str(path))
    reg = got.registration
    assert reg.public is not None
    assert (reg.service, reg.public.bind_host, reg.public.bind_port) == ("web", "127.0.0.1", 21000)
    assert (reg.public.local_host, reg.public.local_port) == ("127.0.0.1", 8080)
    assert (reg.public.local_connect_timeout_ms, reg.public.handshake_timeout_ms) == (500, 3000)
    db, near = reg.upstreams
    assert (db.dst_type, db.name, db.datacenter, db.bind_host, db.bind_port) == (
        "service",
        "db",
        "dc2",
        "127.0.0.1",
        9191,
    )
    assert db.connect_timeout_ms == 10000
    assert (near.dst_type, near.bind_host, near.connect_timeout_ms) == (
        "prepared_query",
        "127.0.0.2",
        2500,
    )
    assert (got.admin, got.drain_timeout_ms) == (("127.0.0.1", 19000), 2000)
    # without the switch the same -config stays static mode
    static = _write(tmp_path, {"service": "web"}, "static.yaml")
    assert flags.parse(["-config", str(static)], env={}).static


def test_unknown_keys_and_bad_values_name_key_and_file(tmp_path: Path) -> None:
    bad = dict(FULL, tls={"cert_file": "x"})
    bad["upstreams"] = [
        {"destination_name": "db", "local_bind_port": 0, "targets": []},
        {"destination_name": "q", "destination_type": "query", "local_bind_port": 9},
    ]
    bad["public_listener"] = {"bind_port": 1, "local_service_adress": "127.0.0.1:1"}
    path = _write(tmp_path, bad)
    with pytest.raises(ConfigError) as err:
        configfile.load(str(path))
    text = "\n".join(err.value.problems)
    for expected in (
        f"{path}: tls: unknown key",
        f"{path}: upstreams[0].targets: unknown key",
        f"{path}: upstreams[0].local_bind_port: must not be 0",
        f"{path}: upstreams[1].destination_type: must be service or prepared_query",
        f"{path}: public_listener.local_service_adress: unknown key (did you mean "
        "'local_service_address'?)",
        f"{path}: public_listener.local_service_address: missing",
    ):
        assert expected in text, text


def test_identity_flags_conflict_with_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    with pytest.raises(flags.FlagError, match=r"mode: consul.*drop -service, -upstream"):
        flags.parse(["-config", str(path), "-service", "x", "-upstream", "db:1"], env={})
    # Consul connection flags and -admin-bind are fine
    cmd = flags.parse(["-config", str(path), "-token", "t", "-admin-bind", "127.0.0.1:1"], env={})
    assert cmd.http.token == "t" and cmd.consul_file == str(path)


def test_proxy_from_file_carries_traffic_through_a_service_upstream(
    agent: DevAgent, tmp_path: Path
) -> None:
    api_app, web_app = App("api"), App("web")
    env = {"CONSUL_HTTP_ADDR": agent.address}
    proxies: list[ProxyProcess] = []
    try:
        agent.register(
            {
                "Name": "api",
                "ID": "api",
                "Port": api_app.port,
                "Address": "127.0.0.1",
                "Connect": {"SidecarService": {"Port": free_port()}},
            }
        )
        api = ProxyProcess(tmp_path, "api", ["-sidecar-for", "api"], env).start()
        proxies.append(api)
        api.wait_ready()
        upstream, public = free_port(), free_port()
        path = _write(
            tmp_path,
            {
                "mode": "consul",
                "service": "web",
                "public_listener": {
                    "bind_address": "127.0.0.1",
                    "bind_port": public,
                    "local_service_address": f"127.0.0.1:{web_app.port}",
                },
                "upstreams": [
                    {
                        "destination_name": "api",
                        "destination_type": "service",
                        "datacenter": "dc1",
                        "local_bind_port": upstream,
                        "connect_timeout_ms": 3000,
                    }
                ],
                "drain_timeout_ms": 1000,
            },
        )
        # -tls-engine reaches Consul mode: web on Python's ssl, api on the default (openssl)
        args = ["-config", str(path), "-tls-engine", "stdlib"]
        web = ProxyProcess(tmp_path, "web", args, env).start()
        proxies.append(web)
        web.wait_ready()
        wait_until(
            lambda: len(agent.ok("GET", "/v1/health/connect/api?passing=1")) == 1,
            15,
            what="api sidecar passing",
        )
        wait_until(lambda: _echoes(upstream), 15, what="traffic through the file's upstream")
        assert echo(upstream, b"from file") == b"api:from file"
        sent = web.metric(
            "meshkit_proxy_upstream_tx_bytes_total", upstream="api", dst_type="service"
        )
        assert sent is not None and sent > 0
        assert str(path) in web.log()  # the file is named as the config's source
        assert "TLS engine: stdlib" in web.log() and "TLS engine: openssl" in api.log()
        # SIGTERM with a connection held open: cut at the file's 1 s drain, not the 15 s default
        held = socket.create_connection(("127.0.0.1", upstream), timeout=5)
        held.sendall(b"E")
        assert held.recv(4) == b"api:"
        t0 = time.monotonic()
        assert web.stop() == 0
        took = time.monotonic() - t0
        held.close()
        assert took < 10, f"stop took {took:.1f}s; the file says drain_timeout_ms: 1000"
        assert "1 connection(s) cut at the drain deadline" in web.log()
    finally:
        for proxy in proxies:
            proxy.stop(timeout=5)
        api_app.close()
        web_app.close()


def _echoes(port: int) -> bool:
    with contextlib.suppress(OSError, AssertionError):
        return echo(port, b"x") == b"api:x"
    return False
