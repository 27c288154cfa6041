"""`meshkit-proxy`: parse flags, then run static mode (`-config`) or Consul mode.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, drained), 2 for bad flags, bad config or
unusable certificates, 1 when a listener cannot be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from meshkit import flags, logs
from meshkit.admin import AdminServer
from meshkit.certstore import CertStore, FileWatcher, MaterialError
from meshkit.config import ConfigError
from meshkit.runtime import ApplyError, Proxy

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
    if cmd.workers > 1:
        return _run_workers(cmd, setup)
    return asyncio.run(run_static(cmd, setup))


def _run_workers(cmd: flags.CommandLine, setup: object) -> int:
    """Fork N processes that share the listening ports (SO_REUSEPORT); the first has admin."""
    children: list[int] = []
    for index in range(1, cmd.workers):
        pid = os.fork()
        if pid == 0:
            code = asyncio.run(run_static(cmd, setup, worker=index))
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in (signal.SIGHUP,):
        signal.signal(sig, forward)
    code = asyncio.run(run_static(cmd, setup, worker=0, children=children))
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return code


async def run_static(
    cmd: flags.CommandLine,
    setup: object,
    *,
    worker: int = 0,
    children: Sequence[int] = (),
) -> int:
    from meshkit.staticfile import StaticSetup, load

    assert isinstance(setup, StaticSetup)
    certs = CertStore(cmd.tls_engine)
    watcher = FileWatcher(setup.files, certs)
    try:
        watcher.load_now()
    except (MaterialError, OSError) as exc:
        files = ", ".join(str(p) for p in setup.files.paths())
        print(f"meshkit-proxy: {setup.config.source}: tls: {exc} (files: {files})", file=sys.stderr)
        return 2
    proxy = Proxy(certs, reuse_port=cmd.workers > 1)
    try:
        await proxy.apply(setup.config)
    except (ApplyError, ConfigError) as exc:
        print(f"meshkit-proxy: {exc}", file=sys.stderr)
        return 1
    admin = AdminServer(proxy)
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

    def on_term() -> None:
        log.info("stopping: draining connections")
        stop.set()

    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    async def reload() -> None:
        nonlocal current
        try:
            new = load(cmd)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            return
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

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    log.info(
        "meshkit-proxy %s ready (service %s, worker %d)",
        "static mode",
        setup.config.service,
        worker,
    )
    await stop.wait()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    admin_keep = admin
    watcher.stop()
    cut = await proxy.drain(current.config.drain_timeout_ms / 1000.0)
    if cut:
        log.warning("drain deadline passed; %d connection(s) cut", cut)
    admin_keep.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
