# SPDX-License-Identifier: MPL-2.0
"""meshkit.native against a meshkit-proxy pair: the same request loop, two paths, one run.

    .venv/bin/python bench/native_bench.py [--seconds 3] [--conns 8] [--size 64] [--json out.json]

Phase `native`: a native client (`Service.connect`) to a native server (`Service.start_server`,
a separate process) over mTLS, nothing in between. Phase `proxy`: a plain TCP client to the
client's meshkit-proxy upstream listener -> mTLS -> the server's meshkit-proxy -> a plain echo
app (each proxy `-sidecar-for`, a separate process). Both phases are configured by one dev
agent, run the same asyncio request/response loop (`--conns` connections, `--size`-byte
messages, `--seconds` after a short warm-up) and report requests/s and the p50/p99 latency of
one round trip; the last table gives native/proxy ratios. Everything listens on 127.0.0.1, is
bounded in time and is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench` and `meshkit` importable
    sys.path[:0] = [str(ROOT), str(ROOT / "proxy")]

from bench.measure import percentile  # noqa: E402

HOST = "127.0.0.1"
WARMUP_S = 0.5
START_TIMEOUT_S = 30.0

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- the child processes -------------------------------------------------------------------
async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve_echo(port: int) -> None:
    server = await asyncio.start_server(_echo, HOST, port)
    async with server:
        await server.serve_forever()


async def serve_native(agent: str, name: str, port: int) -> None:
    from meshkit.consul.settings import HTTPFlags
    from meshkit.native import Service

    async with Service(name, consul=HTTPFlags(http_addr=agent), env={}) as svc:
        server = await svc.start_server(_echo, HOST, port)
        async with server:
            await server.serve_forever()


def child_env(agent: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "CONNECT_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "proxy"), str(ROOT)])
    env["CONSUL_HTTP_ADDR"] = agent
    return env


class Children:
    """Every process the run starts; all are stopped on exit, whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=self.workdir)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_for(what: str, check: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout}s")


def http(agent: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{agent}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def connectable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- the load --------------------------------------------------------------------------------
async def request_loop(
    open_conn: Callable[[], Awaitable[Streams]], conns: int, size: int, seconds: float
) -> dict[str, float]:
    streams = [await open_conn() for _ in range(conns)]
    payload = b"x" * size
    latencies: list[float] = []
    errors = 0
    start = time.monotonic()
    measure_from = start + WARMUP_S
    stop_at = measure_from + seconds

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        while True:
            t0 = time.monotonic()
            if t0 >= stop_at:
                return
            try:
                writer.write(payload)
                await asyncio.wait_for(reader.readexactly(size), 5.0)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                errors += 1
                return
            t1 = time.monotonic()
            if t0 >= measure_from:
                latencies.append(t1 - t0)

    await asyncio.gather(*(one(r, w) for r, w in streams))
    for _, writer in streams:
        writer.close()
    return {
        "requests": len(latencies),
        "req_per_s": len(latencies) / seconds,
        "p50_us": percentile(latencies, 0.50) * 1e6,
        "p99_us": percentile(latencies, 0.99) * 1e6,
        "errors": errors,
    }


# -- the run ---------------------------------------------------------------------------------
@contextlib.contextmanager
def dev_agent(children: Children) -> Iterator[str]:
    ready = children.workdir / "agent.ready"
    port = free_port()
    env = child_env("")
    env.pop("CONSUL_HTTP_ADDR")
    children.start(
        "devagent",
        [sys.executable, "-m", "meshkit_tools.cli", "dev-agent", "-http-addr", f"{HOST}:{port}",
         "-ready-file", str(ready), "-max-check-interval", "1s", "-log-level", "warn"],
        env,
    )  # fmt: skip
    wait_for("dev agent", lambda: ready.exists() and bool(ready.read_text().strip()))
    yield ready.read_text().strip()


def setup_native(children: Children, agent: str) -> int:
    port = free_port()
    native = {"Name": "bench-native", "Port": port, "Address": HOST, "Connect": {"Native": True}}
    http(agent, "PUT", "/v1/agent/service/register", native)
    me = [sys.executable, str(Path(__file__).resolve())]
    children.start(
        "native-server", [*me, "_native", agent, "bench-native", str(port)], child_env(agent)
    )
    wait_for("native server", lambda: connectable(port))
    return port


def setup_proxy_pair(children: Children, agent: str) -> int:
    echo_port, upstream = free_port(), free_port()
    me = [sys.executable, str(Path(__file__).resolve())]
    children.start("echo", [*me, "_echo", str(echo_port)], child_env(agent))
    http(agent, "PUT", "/v1/agent/service/register", {
        "Name": "bench-srv", "Port": echo_port, "Address": HOST,
        "Connect": {"SidecarService": {"Port": free_port()}}})  # fmt: skip
    http(agent, "PUT", "/v1/agent/service/register", {
        "Name": "bench-cli", "Port": free_port(), "Address": HOST,
        "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [
            {"DestinationName": "bench-srv", "LocalBindPort": upstream}]}}}})  # fmt: skip
    for sid in ("bench-srv", "bench-cli"):
        children.start(
            f"proxy-{sid}",
            [sys.executable, "-m", "meshkit.proxy_main", "-sidecar-for", sid, "-log-level", "warn"],
            child_env(agent),
        )

    def passing() -> bool:
        body = http(agent, "GET", "/v1/health/connect/bench-srv?passing=1")
        return bool(body) and connectable(upstream) and connectable(echo_port)

    wait_for("proxy pair", passing)
    return upstream


async def run_phases(
    agent: str, native_port: int, upstream: int, args: argparse.Namespace
) -> dict[str, Any]:
    from meshkit.consul.settings import HTTPFlags
    from meshkit.native import Service

    out: dict[str, Any] = {}
    async with Service("bench-client", consul=HTTPFlags(http_addr=agent), env={}) as svc:
        out["native"] = await request_loop(
            lambda: svc.connect("bench-native"), args.conns, args.size, args.seconds
        )
    out["proxy"] = await request_loop(
        lambda: asyncio.open_connection(HOST, upstream), args.conns, args.size, args.seconds
    )
    return out


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    native, proxy = results["native"], results["proxy"]
    lines = [
        f"request/response, {args.conns} connections, {args.size} B, {args.seconds:g} s per phase",
        f"{'metric':<14}{'native':>12}{'proxy pair':>14}{'native/proxy':>15}",
    ]
    for key, label in (("req_per_s", "req/s"), ("p50_us", "p50 (µs)"), ("p99_us", "p99 (µs)")):
        ratio = native[key] / proxy[key] if proxy[key] else float("nan")
        lines.append(f"{label:<14}{native[key]:>12.0f}{proxy[key]:>14.0f}{ratio:>14.2f}x")
    lines.append(f"{'errors':<14}{native['errors']:>12}{proxy['errors']:>14}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_echo"]:
        asyncio.run(serve_echo(int(argv[1])))
        return 0
    if argv[:1] == ["_native"]:
        asyncio.run(serve_native(argv[1], argv[2], int(argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 120 and 0 < args.conns <= 256 and 0 < args.size <= 65536):
        parser.error("--seconds 0-120, --conns 1-256, --size 1-65536")
    with tempfile.TemporaryDirectory(prefix="meshkit-native-bench-") as tmp:
        children = Children(Path(tmp))
        try:
            with dev_agent(children) as agent:
                native_port = setup_native(children, agent)
                upstream = setup_proxy_pair(children, agent)
                results = asyncio.run(run_phases(agent, native_port, upstream, args))
        finally:
            children.stop()
    results["load_average"] = os.getloadavg()
    print(render(results, args))
    print(f"load average at the end: {results['load_average'][0]:.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
