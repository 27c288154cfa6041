# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy`: parse flags, then run static mode (`-config`) or Consul mode.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, drained), 2 for bad flags, bad config or
unusable certificates, 1 when a listener cannot be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from meshkit import flags, logs, workers
from meshkit.admin import AdminServer
from meshkit.certstore import CertStore, FileWatcher, MaterialError
from meshkit.config import ConfigError
from meshkit.runtime import ApplyError, Proxy

if TYPE_CHECKING:
    from meshkit.staticfile import StaticSetup

log = logging.getLogger("meshkit.proxy")


def install_loop(choice: str) -> str:
    """uvloop when asked for or importable (auto); returns the loop actually used."""
    choice = os.environ.get("MESHKIT_EVENT_LOOP", choice) if choice == "auto" else choice
    if choice in ("auto", "uvloop"):
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return "uvloop"
        except ImportError:
            if choice == "uvloop":
                raise
    return "asyncio"


# glibc serves allocations above its mmap threshold (128 KiB at start) with fresh mappings and
# trims freed heap tops: every 256 KiB record buffer then costs page faults on first touch. With
# the buffers kept in the heap, bulk CPU per GiB measured 10-25% lower (docs/benchmark.md).
MMAP_THRESHOLD = 8 * 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Keep record-sized buffers in the heap; a no-op where libc is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok_mmap: bool = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok_trim: bool = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return ok_mmap and ok_trim


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    tune_malloc()
    try:
        cmd = flags.parse(args)
    except flags.FlagError as exc:
        print(f"meshkit-proxy: {exc}\n\n{flags.USAGE}", file=sys.stderr)
        return 2
    if cmd.help:
        print(flags.USAGE)
        return 0
    if cmd.version:
        from meshkit import __version__

        print(f"meshkit-proxy v{__version__}")
        return 0
    logs.setup(cmd.log_level, cmd.log_json)
    if not cmd.static:
        try:
            mode = importlib.import_module("meshkit.consul.mode")
        except ModuleNotFoundError as exc:
            if exc.name not in ("meshkit.consul", "meshkit.consul.mode"):
                raise  # a real bug or a missing dependency: show it, do not hide it
            print(
                "meshkit-proxy: Consul mode not available in this build; use -config FILE",
                file=sys.stderr,
            )
            return 2
        result: int = mode.run(cmd)
        return result
    from meshkit import staticfile

    try:
        setup = staticfile.load(cmd)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"meshkit-proxy: {problem}", file=sys.stderr)
        return 2
    loop_name = install_loop(cmd.event_loop)
    log.debug("event loop: %s", loop_name)
    try:
        from meshkit.certstore import choose_engine

        log.debug("TLS engine: %s", choose_engine(cmd.tls_engine))
    except ImportError as exc:
        print(f"meshkit-proxy: -tls-engine {cmd.tls_engine}: {exc}", file=sys.stderr)
        return 2
    try:
        count, why = workers.choose(setup.workers, setup.config)
    except workers.WorkersError as exc:
        print(f"meshkit-proxy: {exc}", file=sys.stderr)
        return 2
    log.info("%d worker%s (%s)", count, "s" if count != 1 else "", why)
    if count > 1:
        return _run_workers(cmd, setup, count)
    return asyncio.run(run_static(cmd, setup))


def _run_workers(cmd: flags.CommandLine, setup: StaticSetup, count: int) -> int:
    """Fork workers 1..N-1 (SO_REUSEPORT on every listener); this process is worker 0.

    Forking happens before any event loop exists; each child runs its own loop. Whatever way
    worker 0's loop ends, the `finally` stops and reaps every child (no zombies, no orphans).
    """
    # TLS material is read and checked once, before forking: a bad file is one error line and
    # exit 2 from worker 0 alone, and the parsed material is shared with the children.
    certs = CertStore(cmd.tls_engine)
    watcher = FileWatcher(setup.files, certs)
    if not _load_material(setup, watcher):
        return 2
    pool = workers.WorkerPool(count)
    # Everything imported and built so far is shared with the children after fork. A garbage
    # collection in a child writes to the header of every object it scans, copying the page;
    # frozen objects are never scanned, so those pages stay shared (gc.freeze's documented use).
    gc.collect()
    gc.freeze()

    def child(index: int, sock: socket.socket) -> int:
        return asyncio.run(run_static(cmd, setup, worker=index, control=sock, loaded=watcher))

    try:
        pool.spawn(child)
        return asyncio.run(run_static(cmd, setup, worker=0, pool=pool, loaded=watcher))
    finally:
        pool.shutdown()


def _load_material(setup: StaticSetup, watcher: FileWatcher) -> bool:
    """Read the TLS files now; False (the problem on stderr) when they do not load."""
    try:
        watcher.load_now()
    except (MaterialError, OSError) as exc:
        files = ", ".join(str(p) for p in setup.files.paths())
        print(f"meshkit-proxy: {setup.config.source}: tls: {exc} (files: {files})", file=sys.stderr)
        return False
    return True


async def run_static(
    cmd: flags.CommandLine,
    setup: StaticSetup,
    *,
    worker: int = 0,
    pool: workers.WorkerPool | None = None,
    control: socket.socket | None = None,
    loaded: FileWatcher | None = None,
) -> int:
    """One worker's life: load, listen, serve, drain. Worker 0 also watches the pool.

    `loaded` is material already read before forking (each worker then polls it on its own)."""
    from meshkit.staticfile import load

    if loaded is not None:
        watcher, certs = loaded, loaded.store
    else:
        certs = CertStore(cmd.tls_engine)
        watcher = FileWatcher(setup.files, certs)
        if not _load_material(setup, watcher):
            return 2
    proxy = Proxy(certs, reuse_port=pool is not None or control is not None)
    try:
        await proxy.apply(setup.config)
    except (ApplyError, ConfigError) as exc:
        print(f"meshkit-proxy: {exc}", file=sys.stderr)
        return 1
    admin = AdminServer(proxy, pool)
    if setup.config.admin is not None and worker == 0:
        try:
            await admin.start(*setup.config.admin)
        except OSError as exc:
            print(f"meshkit-proxy: admin listener {setup.config.admin}: {exc}", file=sys.stderr)
            return 1
    watcher.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    current = setup
    failed = False
    background: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    def on_term() -> None:
        if not stop.is_set():
            log.info("stopping: draining connections")
        stop.set()

    def on_hup() -> None:
        spawn(reload())
        if pool is not None:
            pool.send(signal.SIGHUP)

    async def reload() -> None:
        nonlocal current
        try:
            new = load(cmd)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            return
        if new.workers != current.workers and worker == 0:
            log.warning("workers: %s -> %s takes effect at restart", current.workers, new.workers)
        if new.files != current.files:
            watcher.files = new.files
            try:
                watcher.load_now()
            except (MaterialError, OSError) as exc:
                watcher.files = current.files
                log.error("reload refused: tls: %s", exc)
                return
        try:
            await proxy.apply(new.config)
        except (ApplyError, ConfigError) as exc:
            log.error("reload partly failed: %s", exc)
        current = new
        log.info("configuration reloaded from %s", cmd.config)

    async def watch_workers(pool: workers.WorkerPool) -> None:
        nonlocal failed
        while not stop.is_set():
            for child in pool.reap():
                log.error(
                    "worker %d (pid %d) exited unexpectedly: %s; stopping every worker",
                    child.index,
                    child.pid,
                    workers.describe_status(child.status or 0),
                )
                failed = True
                stop.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(workers.REAP_INTERVAL):
                    await stop.wait()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    if pool is not None:
        spawn(watch_workers(pool))
    if control is not None:
        spawn(workers.serve_control(control, worker, proxy, on_term))
    log.info(
        "meshkit-proxy %s ready (service %s, worker %d)",
        "static mode",
        setup.config.service,
        worker,
    )
    await stop.wait()
    drain_s = current.config.drain_timeout_ms / 1000.0
    left: list[workers.Child] = []
    if pool is not None:
        pool.send(signal.SIGTERM)
        cut, left = await asyncio.gather(
            proxy.drain(drain_s), pool.wait_all(drain_s + workers.STOP_GRACE)
        )
    else:
        cut = await proxy.drain(drain_s)
    watcher.stop()
    if cut:
        log.warning("drain deadline passed; %d connection(s) cut", cut)
    admin.close()
    if pool is not None:
        for child in left:
            log.error("worker %d (pid %d) did not stop in time; killing it", child.index, child.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)  # reaped by pool.shutdown()
        for child in pool.children:
            if child.status is not None and not failed and not workers.clean_stop(child.status):
                log.error(
                    "worker %d (pid %d) ended badly while stopping: %s",
                    child.index,
                    child.pid,
                    workers.describe_status(child.status),
                )
                failed = True
        failed = failed or bool(left)
    for task in list(background):
        task.cancel()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
