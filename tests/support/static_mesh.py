# SPDX-License-Identifier: MPL-2.0
"""Static-mode configs (one inbound, one outbound) and the meshed pair built from them:
web's outbound proxy -> db's inbound proxy -> an echo app, all real processes on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.echo import EchoApp
from tests.support.pki_files import LeafFiles, ThrowawayCA
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess, start_proxy


def tls_section(leaf: LeafFiles, *roots: Path) -> dict[str, Any]:
    return {
        "cert_file": str(leaf.cert),
        "key_file": str(leaf.key),
        "ca_files": [str(r) for r in roots],
    }


def inbound_config(
    service: str, leaf: LeafFiles, roots: list[Path], app_port: int, port: int, **public: Any
) -> dict[str, Any]:
    return {
        "service": service,
        "tls": tls_section(leaf, *roots),
        "public_listener": {
            "bind_address": "127.0.0.1",
            "bind_port": port,
            "local_service_address": f"127.0.0.1:{app_port}",
            **public,
        },
        "authorization": {"allow": ["web"]},
        "drain_timeout_ms": 3000,
    }


def outbound_config(
    service: str,
    leaf: LeafFiles,
    roots: list[Path],
    targets: list[dict[str, Any]],
    port: int,
    **upstream: Any,
) -> dict[str, Any]:
    return {
        "service": service,
        "tls": tls_section(leaf, *roots),
        "upstreams": [
            {"destination_name": "db", "local_bind_port": port, "targets": targets, **upstream}
        ],
        "drain_timeout_ms": 3000,
    }


@dataclass
class Pair:
    inbound: ProxyProcess
    outbound: ProxyProcess
    public_port: int
    upstream_port: int


def start_pair(
    tmp_path: Path, ca: ThrowawayCA, app: EchoApp, *, timeout_ms: int | None = None
) -> Pair:
    """web's outbound proxy → db's inbound proxy → the echo app."""
    db, web = ca.leaf("db"), ca.leaf("web")
    public, upstream = free_port(), free_port()
    in_extra: dict[str, Any] = {}
    out_extra: dict[str, Any] = {}
    if timeout_ms is not None:  # generous deadlines for load tests on a busy machine
        in_extra = {"handshake_timeout_ms": timeout_ms, "local_connect_timeout_ms": timeout_ms}
        out_extra = {"connect_timeout_ms": timeout_ms}
    inbound = start_proxy(
        tmp_path,
        "db-proxy",
        inbound_config("db", db, [ca.root_file()], app.port, public, **in_extra),
    )
    target = {"address": f"127.0.0.1:{public}", "spiffe_id": ca.identity("db").uri}
    outbound = start_proxy(
        tmp_path,
        "web-proxy",
        outbound_config("web", web, [ca.root_file()], [target], upstream, **out_extra),
    )
    return Pair(inbound, outbound, public, upstream)


def stop_pair(pair: Pair) -> None:
    codes = (pair.outbound.stop(), pair.inbound.stop())
    assert codes == (0, 0), f"proxies exited {codes}\n{pair.outbound.log()}\n{pair.inbound.log()}"
