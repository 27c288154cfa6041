# SPDX-License-Identifier: MPL-2.0
"""Static mode's worker processes: how many, and how worker 0 (the parent) sees the others.

Workers share the listening ports with `SO_REUSEPORT`, so the kernel spreads new connections
across them; that is the only way one proxy uses more than one CPU. Worker 0 is the process
that was started; it forks the others, runs the admin listener and answers for all of them:
each child answers snapshot requests on its own socketpair (counters stay plain integers in
each process, only a scrape pays), and a child that exits without being asked stops the
whole proxy with a non-zero status, so systemd restarts it as one unit.

Consul mode runs one process: each worker would run its own Consul watches and leaf requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import socket
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meshkit import metrics as m
from meshkit.flags import AUTO, WorkersSetting

if TYPE_CHECKING:
    from meshkit.config import ProxyConfig
    from meshkit.runtime import Proxy

log = logging.getLogger("meshkit.proxy")

# Past four workers, the handshake CPU the proxy saves is spent on the app and the peer next to
# it; a sidecar should not claim a big host's every CPU. An explicit -workers N goes higher.
AUTO_CAP = 4
QUERY_TIMEOUT = 1.0  # one worker's snapshot answer; a scrape never waits longer
REAP_INTERVAL = 0.25  # how often worker 0 looks for a dead worker
STOP_GRACE = 5.0  # after the drain deadline, before SIGKILL
MAX_SNAPSHOT = 16 * 1024 * 1024
PR_SET_PDEATHSIG = 1


class WorkersError(ValueError):
    """A bad `-workers` / `workers:` value, or one the mode cannot use (exit 2)."""


# -- how many ----------------------------------------------------------------------------------
def quota_cpus(cpu_max_texts: Iterable[str]) -> float | None:
    """The tightest cgroup v2 CPU quota among `cpu.max` contents (`QUOTA PERIOD` or `max ...`)."""
    best: float | None = None
    for text in cpu_max_texts:
        parts = text.split()
        if len(parts) < 1 or parts[0] == "max":
            continue
        try:
            quota = int(parts[0])
            period = int(parts[1]) if len(parts) > 1 else 100_000
        except ValueError:
            continue
        if quota <= 0 or period <= 0:
            continue
        cpus = quota / period
        best = cpus if best is None else min(best, cpus)
    return best


def cgroup_cpu_max_texts(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> list[str]:
    """`cpu.max` of this process's cgroup v2 and of every ancestor (each one caps the CPU)."""
    rel = ""
    with contextlib.suppress(OSError):
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                rel = line[3:].strip().strip("/")
    dirs = [cgroup_root]
    current = cgroup_root
    for part in Path(rel).parts if rel else ():
        if part in ("..", "."):
            break
        current = current / part
        dirs.append(current)
    texts: list[str] = []
    for directory in dirs:
        with contextlib.suppress(OSError):
            texts.append((directory / "cpu.max").read_text())
    return texts


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as taskset/cpusets restrict it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve(
    setting: WorkersSetting, *, cpus: int, quota: float | None, cap: int = AUTO_CAP
) -> tuple[int, str]:
    """The worker count and why: `auto` = min(cap, usable CPUs, quota rounded up), at least 1."""
    if setting != AUTO:
        return int(setting), "configured"
    why = f"auto: {cpus} CPU{'s' if cpus != 1 else ''}"
    count = max(cpus, 1)
    if quota is not None:
        rounded = max(math.ceil(quota - 1e-9), 1)
        why += f", cgroup quota {quota:g} CPU{'s' if quota != 1 else ''}"
        if rounded < count:
            count = rounded
    if count > cap:
        count = cap
        why += f", capped at {cap}"
    return max(count, 1), why


def choose(setting: WorkersSetting, config: ProxyConfig) -> tuple[int, str]:
    """Resolve against this host; listeners on port 0 need one process (each would differ)."""
    count, why = resolve(setting, cpus=usable_cpus(), quota=quota_cpus(cgroup_cpu_max_texts()))
    zero = [
        name
        for name, port in ([("public_listener", config.public.bind_port)] if config.public else [])
        + [(f"upstream {up.name}", up.bind_port) for up in config.upstreams]
        if port == 0
    ]
    if count > 1 and zero:
        if setting == AUTO:
            return 1, f"auto: {', '.join(zero)} binds port 0, one port per process"
        raise WorkersError(
            f"-workers/workers: {count}: {', '.join(zero)} binds port 0, and each worker would "
            "get a different port; give a fixed port or use -workers 1"
        )
    return count, why


def check_consul_mode(setting: WorkersSetting | None) -> None:
    """Consul mode runs one process: `auto` means 1 there, an explicit N > 1 is refused."""
    if setting is None or setting == AUTO or setting == 1:
        return
    raise WorkersError(
        f"-workers {setting}: worker processes are static-mode only (-config FILE); in Consul "
        "mode each worker would run its own Consul watches and leaf-certificate requests. "
        "Drop -workers (auto is 1 here) or pass -workers 1"
    )


# -- one worker's state, as a scrape sees it ---------------------------------------------------
Key = tuple[str, m.Labels]


@dataclass
class WorkerState:
    worker: int
    counters: dict[Key, int]
    gauges: dict[Key, float]
    reasons: list[str]


def local_state(proxy: Proxy, worker: int) -> WorkerState:
    """This process's counters, gauges (open connections included) and readiness."""
    reasons = proxy.not_ready_reasons()
    proxy.metrics.set("ready", (), 0 if reasons else 1)
    counters, gauges = proxy.metrics.snapshot()
    return WorkerState(worker, counters, gauges, reasons)


def encode_state(request_id: str, state: WorkerState) -> bytes:
    body = {
        "id": request_id,
        "worker": state.worker,
        "counters": [[n, [list(p) for p in lbl], v] for (n, lbl), v in state.counters.items()],
        "gauges": [[n, [list(p) for p in lbl], v] for (n, lbl), v in state.gauges.items()],
        "reasons": state.reasons,
    }
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode_state(line: bytes) -> tuple[str, WorkerState]:
    body = json.loads(line)

    def key(name: str, lbl: list[list[str]]) -> Key:
        return (str(name), tuple((str(k), str(v)) for k, v in lbl))

    counters = {key(n, lbl): int(v) for n, lbl, v in body["counters"]}
    gauges = {key(n, lbl): float(v) for n, lbl, v in body["gauges"]}
    state = WorkerState(int(body["worker"]), counters, gauges, [str(r) for r in body["reasons"]])
    return str(body["id"]), state


def aggregate(states: Sequence[WorkerState]) -> tuple[dict[Key, int], dict[Key, float]]:
    """Counters and gauges summed by (name, labels); state gauges (`ready`) take the minimum."""
    counters: dict[Key, int] = defaultdict(int)
    gauges: dict[Key, float] = {}
    for state in states:
        for k, count in state.counters.items():
            counters[k] += count
        for k, value in state.gauges.items():
            if k not in gauges:
                gauges[k] = value
            elif k[0] in m.STATE_GAUGES:
                gauges[k] = min(gauges[k], value)
            else:
                gauges[k] += value
    return dict(counters), gauges


# -- child side ----------------------------------------------------------------------------------
async def serve_control(
    sock: socket.socket, worker: int, proxy: Proxy, parent_gone: Callable[[], None]
) -> None:
    """Answer worker 0's snapshot requests (one line each) until it goes away."""
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        while True:
            line = await reader.readline()
            if not line:
                log.warning("worker %d: worker 0 went away; stopping", worker)
                parent_gone()
                return
            request_id = line.strip()[:32].decode("ascii", "replace")
            writer.write(encode_state(request_id, local_state(proxy, worker)))
            await writer.drain()
    except (ConnectionError, OSError) as exc:
        log.warning("worker %d: control channel failed (%s); stopping", worker, exc)
        parent_gone()
    finally:
        writer.close()


def set_parent_death_signal(sig: int) -> bool:
    """Linux: deliver `sig` to this process when its parent dies (no orphaned workers)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


# -- parent side ---------------------------------------------------------------------------------
def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {sig} ({name})"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


def clean_stop(status: int) -> bool:
    """How a worker may end once it was asked to stop: 0, or SIGTERM/SIGINT before its loop ran."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status) == 0
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGTERM, signal.SIGINT)


@dataclass
class Child:
    index: int
    pid: int
    sock: socket.socket
    status: int | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    lock: asyncio.Lock | None = None
    requests: int = 0
    broken: str = ""

    @property
    def alive(self) -> bool:
        return self.status is None


@dataclass
class WorkerPool:
    """Worker 0's handle on workers 1..N-1: fork, snapshot queries, reaping, stopping."""

    count: int
    children: list[Child] = field(default_factory=list)

    def spawn(self, run_child: Callable[[int, socket.socket], int]) -> None:
        """Fork workers 1..count-1; in each child, `run_child(index, sock)` is its exit code."""
        parent_pid = os.getpid()
        for index in range(1, self.count):
            ours, theirs = socket.socketpair()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, checked by process tests
                code = 1
                try:
                    for other in self.children:
                        other.sock.close()
                    ours.close()
                    set_parent_death_signal(signal.SIGTERM)
                    if os.getppid() != parent_pid:  # the parent died before prctl
                        os._exit(1)
                    code = run_child(index, theirs)
                except BaseException:
                    traceback.print_exc()
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            theirs.close()
            self.children.append(Child(index, pid, ours))
            log.debug("worker %d started (pid %d)", index, pid)

    # -- lifetime --
    def reap(self) -> list[Child]:
        """Collect workers that have exited since the last call (never blocks)."""
        gone: list[Child] = []
        for child in self.children:
            if child.status is not None:
                continue
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = child.pid, 0
            if pid == child.pid:
                child.status = status
                gone.append(child)
        return gone

    def send(self, sig: int) -> None:
        for child in self.children:
            if child.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, sig)

    async def wait_all(self, timeout: float) -> list[Child]:
        """Reap until every worker has exited or `timeout` passes; returns those still running."""
        deadline = time.monotonic() + timeout
        while any(c.alive for c in self.children) and time.monotonic() < deadline:
            self.reap()
            await asyncio.sleep(0.05)
        self.reap()
        return [c for c in self.children if c.alive]

    def shutdown(self, timeout: float = STOP_GRACE) -> None:
        """Synchronous last resort: SIGTERM, wait up to `timeout`, SIGKILL, reap every worker."""
        self.send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(c.alive for c in self.children) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for child in self.children:
            if child.alive:
                log.error("worker %d (pid %d) did not stop; killing it", child.index, child.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    _, child.status = os.waitpid(child.pid, 0)
        self.close()

    def close(self) -> None:
        for child in self.children:
            if child.writer is not None:
                child.writer.close()
                child.writer = None
            child.sock.close()

    # -- snapshots --
    async def query(self, child: Child, timeout: float = QUERY_TIMEOUT) -> WorkerState | str:
        """One worker's state, or why there is none (not running, no answer in `timeout`)."""
        if not child.alive:
            return f"not running ({describe_status(child.status or 0)})"
        if child.broken:
            return child.broken
        if child.lock is None:
            child.lock = asyncio.Lock()
        try:
            async with asyncio.timeout(timeout):
                async with child.lock:
                    if child.writer is None:
                        child.reader, child.writer = await asyncio.open_connection(
                            sock=child.sock, limit=MAX_SNAPSHOT
                        )
                    assert child.reader is not None
                    child.requests += 1
                    request_id = str(child.requests)
                    child.writer.write(request_id.encode() + b"\n")
                    await child.writer.drain()
                    while True:  # skip answers to requests that timed out earlier
                        line = await child.reader.readline()
                        if not line:
                            child.broken = "control channel closed"
                            return child.broken
                        answer_id, state = decode_state(line)
                        if answer_id == request_id:
                            return state
        except TimeoutError:
            return f"no answer within {timeout:g} s"  # stuck, or slow: ask again next time
        except (OSError, RuntimeError, ValueError, KeyError, asyncio.LimitOverrunError) as exc:
            # the channel is unusable from here on (closed transport, garbled stream)
            child.broken = f"control channel failed ({exc or type(exc).__name__})"
            if child.writer is not None:
                child.writer.close()
            return child.broken

    async def query_all(
        self, timeout: float = QUERY_TIMEOUT
    ) -> list[tuple[Child, WorkerState | str]]:
        answers = await asyncio.gather(*(self.query(c, timeout) for c in self.children))
        return list(zip(self.children, answers, strict=True))
