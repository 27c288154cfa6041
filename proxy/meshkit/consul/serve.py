# SPDX-License-Identifier: MPL-2.0
"""Consul mode's run: start `ConsulMode`, then serve on `process.serve` until stopped.

Exit codes: 0 after a clean stop (drained, deregistered), 2 for bad flags, a bad file or
unusable settings, 1 when startup against the agent fails (the message names the fix).
"""

from __future__ import annotations

import asyncio
import logging

from meshkit import process
from meshkit.admin import AdminServer
from meshkit.certstore import CertStore
from meshkit.config import DEFAULT_DRAIN_TIMEOUT_MS, ConfigError
from meshkit.consul import configfile
from meshkit.consul.configfile import ConsulFile
from meshkit.consul.errors import StartupError
from meshkit.consul.mode import ConsulMode
from meshkit.consul.settings import SettingsError
from meshkit.flags import CommandLine
from meshkit.runtime import Proxy
from meshkit.workers import WorkersError, check_consul_mode

log = logging.getLogger("meshkit.consul")


def run(cmd: CommandLine) -> int:
    """Synchronous entry (the event loop is already installed)."""
    # One process: every worker would run its own Consul watches and leaf-certificate requests
    # (N times the agent load, N leaves to rotate), so `auto` is 1 here and N > 1 is refused.
    try:
        check_consul_mode(cmd.workers)
    except WorkersError as exc:
        process.complain(str(exc))
        return 2
    return asyncio.run(serve(cmd))


async def serve(cmd: CommandLine) -> int:
    """Run until SIGTERM/SIGINT; then drain, deregister and return the exit code."""
    try:
        certs = CertStore(cmd.tls_engine)
    except ImportError as exc:
        process.complain(f"-tls-engine {cmd.tls_engine}: {exc}")
        return 2
    log.debug("TLS engine: %s", certs.engine)
    proxy = Proxy(certs)
    file: ConsulFile | None = None
    if cmd.consul_file:
        try:
            file = configfile.load(cmd.consul_file)
        except ConfigError as exc:
            for problem in exc.problems:
                process.complain(problem)
            return 2
    try:
        mode = ConsulMode(cmd, proxy, file=file)
    except SettingsError as exc:
        log.error("%s", exc)
        process.complain(str(exc))
        return 2
    try:
        await mode.start()
    except StartupError as exc:
        process.complain(str(exc))
        return 1

    def on_hup() -> None:
        # Static mode reloads its file on SIGHUP; here everything already follows Consul live,
        # so SIGHUP (sent by the same unit files and scripts) must only not kill the proxy.
        log.info("SIGHUP: Consul mode follows the agent live; no reload")

    closed = False

    async def close() -> None:
        nonlocal closed
        closed = True
        await mode.close()

    service = mode.registration.service if mode.registration else "?"
    code = await process.serve(
        proxy,
        AdminServer(proxy),
        admin_bind=cmd.admin_bind or (file.admin if file else None),
        ready=f"serving as {service} (Consul mode{f', from {file.source}' if file else ''})",
        drain_ms=lambda: (
            proxy.config.drain_timeout_ms if proxy.config else DEFAULT_DRAIN_TIMEOUT_MS
        ),
        on_hup=on_hup,
        after_drain=close,
    )
    if not closed:  # the admin listener did not open: still stop the watches and deregister
        await mode.close()
    return code
