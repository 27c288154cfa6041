# SPDX-License-Identifier: MPL-2.0
"""The proxy pairs under test: each is an outbound side the client dials in plain TCP, an mTLS
hop, and an inbound side that dials the app. All of them load the same certificate files.

haproxy and stunnel run as Debian ships them, with only what the scenario needs: client
certificates both ways, verification against the roots, and session resumption off, so every
new connection is a full mutual handshake for every pair.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.certs import BenchCerts, LeafFiles

HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
PROXY_SRC = Path(__file__).resolve().parent.parent / "proxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class RunningPair:
    name: str
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def dead(self) -> str:
        """Empty while every process runs; otherwise which one exited and its log's tail."""
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                argv = shlex.join(str(a) for a in proc.args)  # type: ignore[union-attr]
                return f"{self.name}: {argv} exited {proc.returncode}\n{tail}"
        return ""

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@dataclass(frozen=True)
class PairContext:
    certs: BenchCerts
    app_port: int
    workdir: Path


Launcher = Callable[[PairContext], RunningPair]


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn`: SIGTERM this child when the benchmark process dies, even by SIGKILL, so
    no proxy or app outlives an aborted run (its `finally` blocks never ran)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str | Path], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A process in its own session, so stopping it takes its workers with it."""
    with log.open("wb") as fh:
        return subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=die_with_parent,
        )


def wait_ready(pair: RunningPair, timeout: float = READY_TIMEOUT) -> None:
    """Until one echo crosses the whole pair (bounded), or raise with the failing log."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if died := pair.dead():
            raise RuntimeError(died)
        try:
            with socket.create_connection((HOST, pair.port), timeout=2) as s:
                s.sendall(b"Eping")
                got = b""
                while len(got) < 4:
                    more = s.recv(4 - len(got))
                    if not more:
                        break
                    got += more
                if got == b"ping":
                    return
                last = f"echo returned {got!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{pair.name}: no echo through the pair within {timeout:.0f}s: {last}")


def baseline(ctx: PairContext) -> RunningPair:
    return RunningPair("baseline", ctx.app_port)


def haproxy(ctx: PairContext) -> RunningPair:
    out_port, in_port = free_port(), free_port()
    c = ctx.certs
    common = (
        "global\n  maxconn 8000\n  log stderr format raw local0 err\n"
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n"
    )
    outbound = common + (
        f"frontend out\n  bind {HOST}:{out_port}\n  default_backend mesh\n"
        f"backend mesh\n  server api {HOST}:{in_port} ssl crt {c.client.combined}"
        f" ca-file {c.roots} verify required no-ssl-reuse\n"
    )
    inbound = common + (
        f"frontend in\n  bind {HOST}:{in_port} ssl crt {c.server.combined} ca-file {c.roots}"
        f" verify required no-tls-tickets\n  default_backend app\n"
        f"backend app\n  server app {HOST}:{ctx.app_port}\n"
    )
    pair = RunningPair("haproxy", out_port)
    for side, text in (("out", outbound), ("in", inbound)):
        cfg = ctx.workdir / f"haproxy-{side}.cfg"
        cfg.write_text(text)
        log = ctx.workdir / f"haproxy-{side}.log"
        pair.procs.append(spawn(["/usr/sbin/haproxy", "-db", "-f", cfg], log))
        pair.logs.append(log)
    return pair


def stunnel(ctx: PairContext) -> RunningPair:
    out_port, in_port = free_port(), free_port()
    c = ctx.certs
    common = "foreground = yes\npid =\nsyslog = no\ndebug = 3\n"
    outbound = common + (
        f"[out]\nclient = yes\naccept = {HOST}:{out_port}\nconnect = {HOST}:{in_port}\n"
        f"cert = {c.client.chain}\nkey = {c.client.key}\nCAfile = {c.roots}\n"
        "verifyChain = yes\nsessionResume = no\n"
    )
    inbound = common + (
        f"[in]\naccept = {HOST}:{in_port}\nconnect = {HOST}:{ctx.app_port}\n"
        f"cert = {c.server.chain}\nkey = {c.server.key}\nCAfile = {c.roots}\n"
        "verifyChain = yes\nrequireCert = yes\noptions = NO_TICKET\nsessionCacheSize = 1\n"
    )
    pair = RunningPair("stunnel", out_port)
    for side, text in (("out", outbound), ("in", inbound)):
        cfg = ctx.workdir / f"stunnel-{side}.conf"
        cfg.write_text(text)
        log = ctx.workdir / f"stunnel-{side}.log"
        pair.procs.append(spawn(["/usr/bin/stunnel4", cfg], log))
        pair.logs.append(log)
    return pair


def meshkit(
    extra_args: Sequence[str] = (), name: str = "meshkit", source: Path | None = None
) -> Launcher:
    """The meshkit pair in static mode, from YAML files in the format of docs/proxy.md.

    `source` is another checkout's `proxy/` directory (before/after runs in one invocation);
    by default the proxy next to this script runs."""
    src = source or PROXY_SRC

    def launch(ctx: PairContext) -> RunningPair:
        out_port, in_port = free_port(), free_port()
        c = ctx.certs

        def tls(leaf: LeafFiles) -> dict[str, Any]:
            return {
                "cert_file": str(leaf.chain),
                "key_file": str(leaf.key),
                "ca_files": [str(c.roots)],
            }

        inbound = {
            "service": c.server.identity.service,
            "tls": tls(c.server),
            "public_listener": {
                "bind_address": HOST,
                "bind_port": in_port,
                "local_service_address": f"{HOST}:{ctx.app_port}",
            },
            "authorization": {"allow": [c.client.identity.service]},
        }
        outbound = {
            "service": c.client.identity.service,
            "tls": tls(c.client),
            "upstreams": [
                {
                    "destination_name": c.server.identity.service,
                    "local_bind_address": HOST,
                    "local_bind_port": out_port,
                    "targets": [
                        {"address": f"{HOST}:{in_port}", "spiffe_id": c.server.identity.uri}
                    ],
                }
            ],
        }
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        pair = RunningPair(name, out_port)
        stem = name.replace(":", "-")
        for side, config in (("in", inbound), ("out", outbound)):
            path = ctx.workdir / f"{stem}-{side}.yaml"
            path.write_text(yaml.safe_dump(config))
            log = ctx.workdir / f"{stem}-{side}.log"
            argv = [sys.executable, "-m", "meshkit.proxy_main", "-config", str(path)]
            pair.procs.append(spawn([*argv, "-log-level", "warn", *extra_args], log, env))
            pair.logs.append(log)
        return pair

    return launch


LAUNCHERS: dict[str, Callable[[Sequence[str]], Launcher]] = {
    "baseline": lambda _: baseline,
    "haproxy": lambda _: haproxy,
    "stunnel": lambda _: stunnel,
    "meshkit": meshkit,
}
