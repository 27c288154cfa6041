# SPDX-License-Identifier: MPL-2.0
"""Static mode's run: load the file, fork the workers, and serve each one on `process.serve`.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, drained), 2 for a bad config or unusable
certificates, 1 when a listener cannot be opened or a worker died.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket

from meshkit import process, workers
from meshkit.admin import AdminServer
from meshkit.certstore import CertStore, MaterialError, choose_engine
from meshkit.config import ConfigError
from meshkit.flags import CommandLine
from meshkit.runtime import ApplyError, Proxy
from meshkit.static.certs import FileWatcher
from meshkit.static.file import StaticSetup, load

log = logging.getLogger("meshkit.proxy")


def run(cmd: CommandLine) -> int:
    """Synchronous entry (the event loop is already installed): load, pick workers, serve."""
    try:
        setup = load(cmd)
    except ConfigError as exc:
        for problem in exc.problems:
            process.complain(problem)
        return 2
    try:
        log.debug("TLS engine: %s", choose_engine(cmd.tls_engine))
    except ImportError as exc:
        process.complain(f"-tls-engine {cmd.tls_engine}: {exc}")
        return 2
    try:
        count, why = workers.choose(setup.workers, setup.config)
    except workers.WorkersError as exc:
        process.complain(str(exc))
        return 2
    log.info("%d worker%s (%s)", count, "s" if count != 1 else "", why)
    if count > 1:
        return _run_workers(cmd, setup, count)
    return asyncio.run(run_worker(cmd, setup))


def _run_workers(cmd: CommandLine, setup: StaticSetup, count: int) -> int:
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
        return asyncio.run(run_worker(cmd, setup, worker=index, control=sock, loaded=watcher))

    try:
        pool.spawn(child)
        return asyncio.run(run_worker(cmd, setup, worker=0, pool=pool, loaded=watcher))
    finally:
        pool.shutdown()


def _load_material(setup: StaticSetup, watcher: FileWatcher) -> bool:
    """Read the TLS files now; False (the problem on stderr) when they do not load."""
    try:
        watcher.load_now()
    except (MaterialError, OSError) as exc:
        files = ", ".join(str(p) for p in setup.files.paths())
        process.complain(f"{setup.config.source}: tls: {exc} (files: {files})")
        return False
    return True


async def run_worker(
    cmd: CommandLine,
    setup: StaticSetup,
    *,
    worker: int = 0,
    pool: workers.WorkerPool | None = None,
    control: socket.socket | None = None,
    loaded: FileWatcher | None = None,
) -> int:
    """One worker's life: load, listen, serve, drain. Worker 0 also watches the pool.

    `loaded` is material already read before forking (each worker then polls it on its own)."""
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
        process.complain(str(exc))
        return 1
    life = process.Lifetime()
    current = setup
    left: list[workers.Child] = []

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

    def on_hup() -> None:
        life.spawn(reload())
        if pool is not None:
            pool.send(signal.SIGHUP)

    async def watch_workers(pool: workers.WorkerPool) -> None:
        while not life.stop.is_set():
            for child in pool.reap():
                log.error(
                    "worker %d (pid %d) exited unexpectedly: %s; stopping every worker",
                    child.index,
                    child.pid,
                    workers.describe_status(child.status or 0),
                )
                life.failed = True
                life.stop.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(workers.REAP_INTERVAL):
                    await life.stop.wait()

    async def stop_workers(drain_s: float) -> None:
        nonlocal left
        if pool is not None:
            pool.send(signal.SIGTERM)
            left = await pool.wait_all(drain_s + workers.STOP_GRACE)

    async def after_drain() -> None:
        watcher.stop()
        if pool is None:
            return
        for child in left:
            log.error("worker %d (pid %d) did not stop in time; killing it", child.index, child.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)  # reaped by pool.shutdown()
        for child in pool.children:
            if (
                child.status is not None
                and not life.failed
                and not workers.clean_stop(child.status)
            ):
                log.error(
                    "worker %d (pid %d) ended badly while stopping: %s",
                    child.index,
                    child.pid,
                    workers.describe_status(child.status),
                )
                life.failed = True
        life.failed = life.failed or bool(left)

    watcher.start()
    if pool is not None:
        life.spawn(watch_workers(pool))
    if control is not None:
        life.spawn(workers.serve_control(control, worker, proxy, life.request_stop))
    return await process.serve(
        proxy,
        AdminServer(proxy, pool),
        admin_bind=setup.config.admin if worker == 0 else None,
        ready=f"meshkit-proxy static mode ready (service {setup.config.service}, worker {worker})",
        drain_ms=lambda: current.config.drain_timeout_ms,
        on_hup=on_hup,
        life=life,
        beside_drain=stop_workers if pool is not None else None,
        after_drain=after_drain,
    )
