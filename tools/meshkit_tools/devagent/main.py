# SPDX-License-Identifier: MPL-2.0
"""`meshkit dev-agent`: flags, startup, signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sqlite3
import sys
import uuid
from pathlib import Path

from aiohttp import web

from meshkit import bounded
from meshkit_tools.devagent import configdir
from meshkit_tools.devagent.acl import ACL
from meshkit_tools.devagent.ca import CA
from meshkit_tools.devagent.catalog import Node
from meshkit_tools.devagent.checks import CheckRunner
from meshkit_tools.devagent.decode import DecodeError, parse_duration
from meshkit_tools.devagent.intentions import Intentions
from meshkit_tools.devagent.queries import Queries
from meshkit_tools.devagent.server import Agent
from meshkit_tools.devagent.state import State
from meshkit_tools.devagent.store import Store

log = logging.getLogger("meshkit_tools.devagent")

# Seconds a request may still run after SIGTERM before its handler is cancelled.
SHUTDOWN_GRACE = 1.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshkit dev-agent",
        description="A Consul-API-compatible development control plane with a real CA.",
    )

    def opt(name: str, **kw: object) -> None:
        p.add_argument(f"-{name}", f"--{name}", **kw)  # type: ignore[arg-type]

    opt("data-dir", type=Path, help="persist state in DIR/state.db (in memory when unset)")
    opt("http-addr", default="127.0.0.1:8500", help="HOST:PORT to serve on (port 0 picks one)")
    opt("allow-non-loopback", action="store_true", help="permit a non-loopback -http-addr")
    opt("datacenter", default="dc1")
    opt("node", default=socket.gethostname(), help="node name (default: host name)")
    opt(
        "config-dir",
        type=Path,
        action="append",
        default=[],
        help="load service definitions (*.json)",
    )
    opt(
        "default-intention-policy",
        choices=("allow", "deny"),
        default=None,
        help="decision when no intention matches (default: allow, as Consul without ACLs)",
    )
    opt(
        "enable-central-service-config",
        action="store_true",
        help="merge proxy-defaults and service-defaults into proxy registrations "
        "(Consul's enable_central_service_config; off by default, as in Consul 1.7)",
    )
    opt("acl-master-token", default=None, help="enable ACLs with this management token")
    opt("acl-master-token-file", type=Path, default=None, help="read the master token from a file")
    opt(
        "acl-default-policy",
        choices=("allow", "deny"),
        default="deny",
        help="with ACLs on: what a token (or anonymous) may do where no rule matches (Consul's "
        "acl.default_policy; default deny)",
    )
    opt("sidecar-min-port", type=int, default=21000)
    opt("sidecar-max-port", type=int, default=21255)
    opt("max-check-interval", default=None, help="cap check intervals (a Go duration; for tests)")
    opt(
        "dns-port",
        type=int,
        default=-1,
        help="serve Consul's DNS interface (UDP and TCP) on this port of the -http-addr host; "
        "0 picks a free one, -1 (default) turns it off",
    )
    opt(
        "http-unix-socket",
        type=Path,
        default=None,
        help="also serve the HTTP API on this unix socket (mode 0600), as Consul's "
        "addresses.http = unix:///PATH; clients use CONSUL_HTTP_ADDR=unix:///PATH",
    )
    opt("ready-file", type=Path, default=None, help="write the bound HOST:PORT here once serving")
    opt("log-level", default="info", choices=("debug", "info", "warn", "error"))
    return p


class UsageError(ValueError):
    pass


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"-http-addr {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:8500")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"-http-addr {addr!r}: HOST must be an IP address") from None
    return str(ip), int(port)


def build(args: argparse.Namespace) -> tuple[Agent, str, int]:
    host, port = _split_addr(args.http_addr)
    if not ipaddress.ip_address(host).is_loopback and not args.allow_non_loopback:
        raise UsageError(
            f"-http-addr {args.http_addr}: not a loopback address; the dev agent has no TLS and "
            "serves private keys, so binding elsewhere needs -allow-non-loopback"
        )
    master = args.acl_master_token
    if args.acl_master_token_file is not None:
        try:
            master = bounded.read_text(args.acl_master_token_file).strip()
        except bounded.FileError as exc:
            raise UsageError(f"-acl-master-token-file {exc}") from None
        if not master:
            raise UsageError(f"-acl-master-token-file {args.acl_master_token_file}: file is empty")
    max_interval = None
    if args.max_check_interval:
        try:
            max_interval = parse_duration(args.max_check_interval)
        except DecodeError as exc:
            raise UsageError(f"-max-check-interval: {exc}") from None
    if not -1 <= args.dns_port <= 65535:
        raise UsageError(f"-dns-port {args.dns_port}: use a port 0-65535, or -1 to turn DNS off")
    if args.dns_port >= 0:
        try:
            import meshkit_tools.devagent.dns  # noqa: F401
        except ImportError:
            raise UsageError(
                "-dns-port: the DNS interface needs dnspython; pip install 'meshkit[native]'"
            ) from None
    if not 0 <= args.sidecar_min_port <= args.sidecar_max_port <= 65535:
        raise UsageError("-sidecar-min-port/-sidecar-max-port: need 0 <= min <= max <= 65535")
    try:
        store = Store(args.data_dir)
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(
            f"-data-dir {args.data_dir}: cannot open the state database: {exc}"
        ) from None
    node_id = store.get("meta", "node_id") or str(uuid.uuid4())
    cluster_id = store.get("meta", "cluster_id") or str(uuid.uuid4())
    store.put("meta", "node_id", node_id)
    store.put("meta", "cluster_id", cluster_id)
    store.commit()
    node_addr = host if not ipaddress.ip_address(host).is_unspecified else "127.0.0.1"
    node = Node(id=node_id, name=args.node, address=node_addr, datacenter=args.datacenter)
    state = State(store, node, (args.sidecar_min_port, args.sidecar_max_port))
    ca = CA(store, cluster_id, args.datacenter)
    explicit = args.default_intention_policy is not None
    # With ACLs on, no matching intention falls to the ACL default policy (as in Consul).
    acl_default = args.acl_default_policy if master else "allow"
    default_allow = (args.default_intention_policy or acl_default) == "allow"
    intentions = Intentions(store, default_allow, explicit, bool(master))
    queries = Queries(store, state)
    acl = ACL(store, master, default_allow=args.acl_default_policy == "allow")
    runner = CheckRunner(state, max_interval)
    dirs: list[Path] = list(args.config_dir)

    def reload() -> None:
        configdir.apply(state, configdir.load(dirs))

    if dirs:
        try:
            reload()
        except configdir.ConfigError as exc:
            store.close()
            raise UsageError(str(exc)) from None
    agent = Agent(
        store,
        state,
        ca,
        intentions,
        queries,
        acl,
        runner,
        reload_hook=reload if dirs else None,
        http_addr=f"{host}:{port}",
        central_config=args.enable_central_service_config,
    )
    return agent, host, port


async def serve(
    agent: Agent,
    host: str,
    port: int,
    ready_file: Path | None,
    dns_port: int = -1,
    unix_socket: Path | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent.runner.start()
    # Waiting queries are woken at shutdown (`Notifier.close`); the timeout only bounds a
    # handler that still hangs after that, so SIGTERM never waits on aiohttp's 60 s default.
    runner = web.AppRunner(
        agent.app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    shown = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
    agent.http_addr = shown
    if unix_socket is not None:
        await _serve_unix(runner, unix_socket)
    log.info(
        "meshkit dev-agent serving http://%s (datacenter %s, node %s, trust domain %s)",
        shown,
        agent.node.datacenter,
        agent.node.name,
        agent.ca.trust_domain,
    )

    def on_hup() -> None:
        if agent.reload_hook is None:
            log.info("SIGHUP: no -config-dir to reload")
            return
        try:
            agent.reload_hook()
            log.info("SIGHUP: configuration reloaded")
        except (configdir.ConfigError, ValueError) as exc:
            log.error("SIGHUP: reload refused, keeping the running configuration: %s", exc)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    dns_server = None
    if dns_port >= 0:
        from meshkit_tools.devagent.dns import DNSServer

        dns_server = DNSServer(agent, host, dns_port)
        bound_dns = await dns_server.start()
        log.info("meshkit dev-agent DNS on %s:%d (udp, tcp)", host, bound_dns)
    # Announce readiness only once every signal handler is in place.
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(shown + "\n")
        tmp.replace(ready_file)

    async def prune() -> None:
        while True:
            await asyncio.sleep(1.0)
            agent.ca.prune()

    pruner = loop.create_task(prune())
    try:
        await stop.wait()
    finally:
        log.debug("shutting down")
        agent.store.notifier.close()
        pruner.cancel()
        if dns_server is not None:
            dns_server.close()
        with contextlib.suppress(asyncio.CancelledError):
            await pruner
        await runner.cleanup()
        if unix_socket is not None:
            with contextlib.suppress(OSError):
                unix_socket.unlink()
        log.debug("http server closed")
        await agent.runner.stop()
        agent.store.close()
        log.info("meshkit dev-agent stopped")


async def _serve_unix(runner: web.AppRunner, path: Path) -> None:
    """The same API on a unix socket, owner-only; a stale socket of a previous run is replaced."""
    if path.is_socket():
        path.unlink()
    old_umask = os.umask(0o177)  # created 0600: no window where others may connect
    try:
        await web.UnixSite(runner, str(path)).start()
    finally:
        os.umask(old_umask)
    log.info("meshkit dev-agent serving unix://%s", path)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper().replace("WARN", "WARNING")),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        agent, host, port = build(args)
    except UsageError as exc:
        print(f"meshkit dev-agent: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(agent, host, port, args.ready_file, args.dns_port, args.http_unix_socket))
    except OSError as exc:
        where = args.http_addr
        if args.http_unix_socket is not None:
            where += f" and unix://{args.http_unix_socket}"
        print(f"meshkit dev-agent: cannot serve on {where}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
