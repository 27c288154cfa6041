# SPDX-License-Identifier: MPL-2.0
"""A host of many sidecars: N proxies in Consul mode on one machine, what they cost together.

A fleet pays for sidecars per host, not per pair: ten services on a host run ten proxies, and
pages the proxies share (the interpreter, the libraries) are paid once. So this benchmark
starts N sidecars (N = 1, 5, 10, 20 by default), each for its own service registered on one
`meshkit dev-agent`, the way the mesh_proxy role starts them (`meshkit-proxy -sidecar-for ID`
with the role's default flags), and reports for each N:

- start-up: seconds from spawning all N until every one answers /ready;
- the host's total PSS of all N proxy process trees at rest (PSS, so shared pages count once);
- the same with `--conns` (default 100) idle mTLS connections held open to every proxy, each
  proven open (handshake done, the app reached), and the growth per connection.

`meshkit` runs one interpreter per sidecar (mesh_proxy_process_model: unit, one unit per
proxy); `meshkit-shared` runs the same N sidecars forked from one `meshkit-proxy-host` parent
(mesh_proxy_process_model: shared), measured as the PSS of that whole process tree. The role's
default (`auto`) runs N >= mesh_proxy_shared_min_proxies as `shared`, fewer as `unit`: the
report names, per N, which of the two a host gets by default (the threshold is read from the
role's defaults/main.yml, the one place it is set).

The reference, started the same way in the same round, is N HAProxy inbound listeners with the
same leaf certificates from the same dev agent (TLS, client certificates verified): what a
lean C sidecar costs on the same machine. When a `consul` binary is on PATH, N Consul built-in
proxies (`consul connect proxy -sidecar-for ID`, against the same dev agent) run too; without
one that column is skipped with a message. Figures are medians over `--rounds` interleaved
rounds, and ratios to the reference of the same run.

    .venv/bin/python bench/host_bench.py [--sizes 1,5,10,20] [--rounds 3] [--conns 100]
        [--proxy-args "-workers 1"] [--checkout before=/tmp/before] [--json out.json]

Everything listens on 127.0.0.1; every child gets a parent-death signal and is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `meshkit` importable
    _root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(_root), str(_root / "proxy")]

import yaml

from bench import procstat
from bench.pairs import HOST, PROXY_SRC, free_port, spawn

READY_TIMEOUT = 60.0


# -- the control plane and the apps ---------------------------------------------------------


@dataclass
class Agent:
    """A `meshkit dev-agent` child on a free loopback port, in memory."""

    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""

    def start(self) -> Agent:
        ready = self.workdir / "agent.ready"
        env = dict(os.environ, PYTHONPATH=str(PROXY_SRC))
        self.proc = spawn(
            [sys.executable, "-m", "meshkit_tools.cli", "dev-agent", "-http-addr", f"{HOST}:0",
             "-ready-file", ready, "-node", "bench", "-log-level", "warn",
             "-max-check-interval", "2s"],
            self.workdir / "agent.log", env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dev-agent exited {self.proc.returncode}")
            if ready.exists() and ready.read_text().strip():
                self.address = ready.read_text().strip()
                return self
            time.sleep(0.05)
        raise RuntimeError("dev-agent not ready within 30 s")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.address}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
        return json.loads(text) if text.strip() else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Apps:
    """One thread with an event loop that accepts on many ports and holds connections idle."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.base_events.Server] = []
        self.writers: list[asyncio.StreamWriter] = []

    def listen(self, count: int) -> list[int]:
        async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.writers.append(w)

        async def open_all() -> list[int]:
            ports = []
            for _ in range(count):
                server = await asyncio.start_server(handle, HOST, 0, backlog=512)
                self.servers.append(server)
                ports.append(server.sockets[0].getsockname()[1])
            return ports

        return asyncio.run_coroutine_threadsafe(open_all(), self.loop).result(30)

    def drop_connections(self) -> None:
        async def close() -> None:
            for w in self.writers:
                w.close()
            self.writers.clear()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(30)

    def close(self) -> None:
        async def shut() -> None:
            for s in self.servers:
                s.close()
            for w in self.writers:
                w.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# -- the sidecar kinds ----------------------------------------------------------------------


@dataclass
class Host:
    """What every kind of sidecar in a round shares: the agent, the services and their files."""

    agent: Agent
    workdir: Path
    services: list[str]
    public_ports: dict[str, int]
    app_ports: dict[str, int]
    roots: Path
    client: ssl.SSLContext


@dataclass
class Fleet:
    name: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # the public listener of each
    ready_urls: list[str] = field(default_factory=list)  # an admin /ready, when there is one

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def dead(self) -> str:
        for p in self.procs:
            if p.poll() is not None:
                return f"{self.name}: pid {p.pid} exited {p.returncode}"
        return ""

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 15)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, 9)
                p.wait(5)


def meshkit_fleet(
    extra: list[str], src: Path = PROXY_SRC, name: str = "meshkit"
) -> Callable[[Host], Fleet]:
    """N meshkit sidecars; `src` is the `proxy/` directory of the checkout to run."""

    def launch(host: Host) -> Fleet:
        fleet = Fleet(name)
        env = dict(os.environ, PYTHONPATH=str(src), CONSUL_HTTP_ADDR=host.agent.address)
        for svc in host.services:
            admin = free_port()
            argv = [sys.executable, "-m", "meshkit.proxy_main", "-sidecar-for", svc,
                    "-admin-bind", f"{HOST}:{admin}", "-log-level", "warn", *extra]  # fmt: skip
            fleet.procs.append(spawn(argv, host.workdir / f"meshkit-{svc}.log", env))
            fleet.ports.append(host.public_ports[svc])
            fleet.ready_urls.append(f"http://{HOST}:{admin}/ready")
        return fleet

    return launch


def meshkit_shared_fleet(extra: list[str], name: str = "meshkit-shared") -> Callable[[Host], Fleet]:
    """The same N sidecars as one `meshkit-proxy-host` tree (mesh_proxy_process_model: shared):
    one `<ID>.env` per service as the role writes it, one parent that imports the proxy once and
    forks them all. Its PSS is the whole tree's (procstat follows the children)."""

    def launch(host: Host) -> Fleet:
        fleet = Fleet(name)
        env_dir = host.workdir / "shared-env"
        shutil.rmtree(env_dir, ignore_errors=True)
        env_dir.mkdir()
        args = " ".join(["-log-level", "warn", *extra])
        for svc in host.services:
            admin = free_port()
            (env_dir / f"{svc}.env").write_text(
                f"CONSUL_HTTP_ADDR={host.agent.address}\nMESHKIT_ADMIN_BIND={HOST}:{admin}\n"
                f"MESHKIT_PROXY_ARGS={args}\n"
            )
            fleet.ports.append(host.public_ports[svc])
            fleet.ready_urls.append(f"http://{HOST}:{admin}/ready")
        env = dict(os.environ, PYTHONPATH=str(PROXY_SRC))
        argv: list[str | Path] = [sys.executable, "-m", "meshkit.host.main", "-dir", env_dir,
                "-run-dir", host.workdir / "shared-run", "-log-level", "warn"]  # fmt: skip
        fleet.procs.append(spawn(argv, host.workdir / "meshkit-shared.log", env))
        return fleet

    return launch


def haproxy_fleet(host: Host) -> Fleet:
    fleet = Fleet("haproxy")
    for svc in host.services:
        leaf = host.agent.call("GET", f"/v1/agent/connect/ca/leaf/{svc}")
        pem = host.workdir / f"{svc}.pem"
        pem.write_text(leaf["CertPEM"] + leaf["PrivateKeyPEM"])
        pem.chmod(0o600)
        cfg = host.workdir / f"haproxy-{svc}.cfg"
        cfg.write_text(
            "global\n  maxconn 4000\n  log stderr format raw local0 err\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 600s\n"
            "  timeout server 600s\n"
            f"frontend in\n  bind {HOST}:{host.public_ports[svc]} ssl crt {pem}"
            f" ca-file {host.roots} verify required\n  default_backend app\n"
            f"backend app\n  server app {HOST}:{host.app_ports[svc]}\n"
        )
        fleet.procs.append(
            spawn(["/usr/sbin/haproxy", "-db", "-f", cfg], host.workdir / f"haproxy-{svc}.log")
        )
        fleet.ports.append(host.public_ports[svc])
    return fleet


def consul_fleet(host: Host) -> Fleet:
    fleet = Fleet("consul")
    env = dict(os.environ, CONSUL_HTTP_ADDR=host.agent.address)
    for svc in host.services:
        argv = ["consul", "connect", "proxy", "-sidecar-for", svc, "-log-level", "warn"]
        fleet.procs.append(spawn(argv, host.workdir / f"consul-{svc}.log", env))
        fleet.ports.append(host.public_ports[svc])
    return fleet


# -- measuring ------------------------------------------------------------------------------


def wait_all_ready(fleet: Fleet, client: ssl.SSLContext) -> None:
    """Every /ready answers 200 (meshkit), or every public port completes a handshake."""
    deadline = time.monotonic() + READY_TIMEOUT
    pending = list(range(len(fleet.ports)))
    while pending and time.monotonic() < deadline:
        if died := fleet.dead():
            raise RuntimeError(died)
        still = []
        for i in pending:
            if fleet.ready_urls:
                try:
                    with urllib.request.urlopen(fleet.ready_urls[i], timeout=2) as r:
                        ok = r.status == 200
                except OSError:
                    ok = False
            else:
                ok = handshake_ok(fleet.ports[i], client)
            if not ok:
                still.append(i)
        pending = still
        if pending:
            time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{fleet.name}: {len(pending)} not ready in {READY_TIMEOUT:.0f} s")


def handshake_ok(port: int, client: ssl.SSLContext) -> bool:
    try:
        with (
            socket.create_connection((HOST, port), timeout=2) as raw,
            client.wrap_socket(raw, server_hostname=None),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


async def _hold(ports: list[int], per: int, client: ssl.SSLContext) -> list[asyncio.StreamWriter]:
    sem = asyncio.Semaphore(64)
    held: list[asyncio.StreamWriter] = []

    async def one(port: int) -> None:
        async with sem:
            _, w = await asyncio.wait_for(
                asyncio.open_connection(HOST, port, ssl=client, server_hostname=None), 20
            )
            held.append(w)

    await asyncio.gather(*(one(p) for p in ports for _ in range(per)))
    return held


@contextlib.contextmanager
def idle_connections(ports: list[int], per: int, client: ssl.SSLContext) -> Iterator[int]:
    """Open `per` mTLS connections to every port, hold them, close them on exit."""
    loop = asyncio.new_event_loop()
    try:
        held = loop.run_until_complete(asyncio.wait_for(_hold(ports, per, client), 120))
        try:
            yield len(held)
        finally:
            for w in held:
                w.close()
            loop.run_until_complete(asyncio.sleep(0.2))
    finally:
        loop.close()


def measure(
    host: Host, apps: Apps, launch: Callable[[Host], Fleet], conns: int
) -> dict[str, float]:
    t0 = time.monotonic()
    fleet = launch(host)
    try:
        wait_all_ready(fleet, host.client)
        startup = time.monotonic() - t0
        time.sleep(1.0)  # let start-up garbage settle before reading memory
        rest = procstat.pss_kib(fleet.pids)
        with idle_connections(fleet.ports, conns, host.client) as opened:
            time.sleep(1.0)
            loaded = procstat.pss_kib(fleet.pids)
        apps.drop_connections()
        return {
            "startup_s": startup,
            "rest_mib": rest / 1024,
            "loaded_mib": loaded / 1024,
            "kib_per_conn": (loaded - rest) / max(opened, 1),
        }
    finally:
        fleet.stop()


def build_host(workdir: Path, agent: Agent, apps: Apps, n: int) -> Host:
    app_ports = apps.listen(n)
    services = [f"svc{i:02d}" for i in range(n)]
    public = {svc: free_port() for svc in services}
    for svc, app_port in zip(services, app_ports, strict=True):
        agent.call(
            "PUT",
            "/v1/agent/service/register",
            {"Name": svc, "ID": svc, "Port": app_port, "Address": HOST,
             "Connect": {"SidecarService": {"Port": public[svc],
                                            "Proxy": {"Config": {"bind_address": HOST}}}}},
        )  # fmt: skip
    roots = workdir / "roots.pem"
    roots.write_text(
        "".join(r["RootCert"] for r in agent.call("GET", "/v1/agent/connect/ca/roots")["Roots"])
    )
    leaf = agent.call("GET", "/v1/agent/connect/ca/leaf/bench-client")
    (workdir / "client.pem").write_text(leaf["CertPEM"])
    (workdir / "client.key").write_text(leaf["PrivateKeyPEM"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False  # SPIFFE identities, not host names
    client.load_verify_locations(roots)
    client.load_cert_chain(workdir / "client.pem", workdir / "client.key")
    return Host(agent, workdir, services, public, dict(zip(services, app_ports, strict=True)),
                roots, client)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,5,10,20")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=100, help="idle connections per proxy")
    ap.add_argument("--proxy-args", default="", help="extra meshkit-proxy flags")
    ap.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also run the proxy of another checkout of this repository in the same rounds "
        "(before/after figures in one run), e.g. --checkout before=/tmp/before",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    kinds: dict[str, Callable[[Host], Fleet]] = {
        "haproxy": haproxy_fleet,
        "meshkit": meshkit_fleet(args.proxy_args.split()),
        "meshkit-shared": meshkit_shared_fleet(args.proxy_args.split()),
    }
    for text in args.checkout:
        label, _, path = text.partition("=")
        src = Path(path) / "proxy" / "meshkit"
        if not label.isidentifier() or not src.is_dir():
            ap.error(f"--checkout {text!r}: expected LABEL=PATH of a checkout with proxy/meshkit")
        kinds[label] = meshkit_fleet(args.proxy_args.split(), src.parent, label)
    if shutil.which("consul"):
        kinds["consul"] = consul_fleet
    else:
        print("host_bench: no `consul` binary on PATH: the Consul built-in proxy is skipped")
    results: dict[int, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="meshkit-host-bench-") as tmp:
        for n in sizes:
            results[n] = {k: [] for k in kinds}
            for r in range(args.rounds):
                work = Path(tmp) / f"n{n}-r{r}"
                work.mkdir()
                agent, apps = Agent(work).start(), Apps()
                try:
                    host = build_host(work, agent, apps, n)
                    for kind, launch in kinds.items():
                        got = measure(host, apps, launch, args.conns)
                        results[n][kind].append(got)
                        print(f"N={n:<3} round {r + 1} {kind:<14} " + "  ".join(
                            f"{k}={v:.2f}" for k, v in got.items()), flush=True)  # fmt: skip
                finally:
                    apps.close()
                    agent.stop()
    report(results, kinds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


ROLE_DEFAULTS = (
    Path(__file__).resolve().parent.parent
    / "collections/ansible_collections/meshkit/connect/roles/mesh_proxy/defaults/main.yml"
)


def role_default_kind(n: int) -> str:
    """The kind the mesh_proxy role runs for `n` sidecars on a host with its default settings."""
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    model = defaults["mesh_proxy_process_model"]
    if model == "auto":
        model = "shared" if n >= int(defaults["mesh_proxy_shared_min_proxies"]) else "unit"
    return "meshkit-shared" if model == "shared" else "meshkit"


def report(results: dict[int, dict[str, list[dict[str, float]]]], kinds: dict[str, Any]) -> None:
    metrics = ("startup_s", "rest_mib", "loaded_mib", "kib_per_conn")
    print("\nmedians; ratio = kind / haproxy in the same run (lower is better for all);")
    print("* = what the mesh_proxy role runs for N sidecars with its default settings")
    print(f"{'N':>3} {'kind':<15} " + " ".join(f"{m:>14}" for m in metrics))
    for n, by_kind in results.items():
        ref = {m: statistics.median(x[m] for x in by_kind["haproxy"]) for m in metrics}
        default = role_default_kind(n)
        for kind in kinds:
            med = {m: statistics.median(x[m] for x in by_kind[kind]) for m in metrics}
            cells = []
            for m in metrics:
                ratio = med[m] / ref[m] if ref[m] else float("nan")
                cells.append(f"{med[m]:>7.2f} ({ratio:4.2f}x)")
            label = kind + ("*" if kind == default else "")
            print(f"{n:>3} {label:<15} " + " ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
