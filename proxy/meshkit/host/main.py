# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy-host -dir /etc/meshkit/proxy`: every sidecar of a host forked from one parent.

Start-up, in this order:
1. flags, then the env directory read whole (a bad flag, an unreadable directory or a bad file:
   one line on stderr, exit 2; nothing started);
2. the data path imported once: `meshkit.proxy_main`, Consul mode, the OpenSSL engine and
   uvloop when installed. Then `gc.collect(); gc.freeze()`: the objects all children share move
   out of the collector's reach, so no child's collection writes to (and copies) their pages;
3. a check that the parent has no event loop and no thread but its own: a fork copies only the
   forking thread, so a lock another thread held would stay locked in every child;
4. the supervisor forks one child per file and serves until SIGTERM/SIGINT (exit 0).

After an upgrade in place (SIGUSR2, upgrade.py) the same program starts again in the same pid,
the old one's children handed over in an environment variable that step 1 takes out at once;
step 4 adopts them and replaces them one at a time instead of forking them all. Signals the old
program blocked are still blocked (so a SIGTERM sent during the exec waits for the loop).

Exit codes: 0 after SIGTERM/SIGINT with every child gone; 2 for bad flags or a bad directory at
start; 1 when the parent finds a thread or an event loop before forking (a bug).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshkit import logs
from meshkit.host import envdir, upgrade
from meshkit.host.supervisor import READY_TIMEOUT, STOP_GRACE, Supervisor

log = logging.getLogger("meshkit.host")

PROGRAM = "meshkit-proxy-host"
DEFAULT_DIR = "/etc/meshkit/proxy"
DEFAULT_RUN_DIR = "/run/meshkit-proxy-host"
USAGE = f"""usage: {PROGRAM} [-dir DIR] [-run-dir DIR] [-grace SECONDS]
                          [-ready-timeout SECONDS] [-log-level LEVEL] [-log-json]

Runs one meshkit-proxy sidecar per DIR/<ID>.env file (default {DEFAULT_DIR}), each as
`meshkit-proxy@<ID>.service` would run it, forked from this one process.

  -dir DIR          the sidecars' env files (default {DEFAULT_DIR})
  -run-dir DIR      where <ID>.pid files go (default $RUNTIME_DIRECTORY or {DEFAULT_RUN_DIR})
  -grace SECONDS    how long a stopping sidecar may drain before SIGKILL (default {STOP_GRACE:g})
  -ready-timeout SECONDS
                    how long a replaced sidecar may take to answer 200 on /ready before the
                    roll stops (default {READY_TIMEOUT:g})
  -log-level LEVEL  this parent's log level: trace, debug, info, warn, error (default info)
  -log-json         this parent's lines as JSON

Signals: SIGHUP re-reads DIR (starts new, stops removed, replaces changed sidecars one at a
time, each ready before the next); SIGUSR2 re-execs this command line (a new release) keeping
the pid, and replaces every sidecar one at a time; SIGTERM/SIGINT stop every sidecar, exit 0."""
# Imported before the first fork so every child shares them; optional ones may be missing.
# encodings.idna: the Consul client's first request imports it (host names in URLs).
DATA_PATH = (
    "meshkit.proxy_main",
    "meshkit.consul.serve",
    "meshkit.workers",
    "tempfile",
    "encodings.idna",
)
OPTIONAL = ("meshkit.openssl_engine", "uvloop")


class FlagError(ValueError):
    pass


@dataclass(frozen=True)
class HostFlags:
    directory: Path
    run_dir: Path
    grace: float = STOP_GRACE
    ready_timeout: float = READY_TIMEOUT
    log_level: str = "info"
    log_json: bool = False
    help: bool = False


def parse(args: Sequence[str], env: dict[str, str] | os._Environ[str]) -> HostFlags:
    values: dict[str, str] = {}
    flags = {"-dir", "-run-dir", "-grace", "-ready-timeout", "-log-level"}
    log_json = False
    index = 0
    while index < len(args):
        arg = args[index]
        name, eq, inline = arg.lstrip("-").partition("=")
        name = "-" + name
        if arg in ("-h", "-help", "--help"):
            return HostFlags(Path(DEFAULT_DIR), Path(DEFAULT_RUN_DIR), help=True)
        if name == "-log-json" and not eq:
            log_json = True
        elif name in flags:
            if not eq:
                index += 1
                if index >= len(args):
                    raise FlagError(f"flag needs an argument: {name}")
                inline = args[index]
            values[name] = inline
        else:
            raise FlagError(f"flag provided but not defined: {arg}")
        index += 1
    try:
        grace = float(values.get("-grace", STOP_GRACE))
    except ValueError:
        raise FlagError(f"-grace {values['-grace']!r}: not a number of seconds") from None
    if not 0 < grace <= 3600:
        raise FlagError(f"-grace {grace:g}: give seconds between 0 and 3600")
    try:
        ready_timeout = float(values.get("-ready-timeout", READY_TIMEOUT))
    except ValueError:
        raise FlagError(
            f"-ready-timeout {values['-ready-timeout']!r}: not a number of seconds"
        ) from None
    if not 0 < ready_timeout <= 3600:
        raise FlagError(f"-ready-timeout {ready_timeout:g}: give seconds between 0 and 3600")
    level = values.get("-log-level", "info")
    try:
        logs.parse_level(level)
    except ValueError as exc:
        raise FlagError(f"-log-level: {exc}") from None
    run_dir = values.get("-run-dir") or env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return HostFlags(
        directory=Path(values.get("-dir") or DEFAULT_DIR),
        run_dir=Path(run_dir or DEFAULT_RUN_DIR),
        grace=grace,
        ready_timeout=ready_timeout,
        log_level=level,
        log_json=log_json,
    )


def import_data_path() -> list[str]:
    """Import what every child runs; the names of the optional modules that are installed."""
    for name in DATA_PATH:
        importlib.import_module(name)
    found = []
    for name in OPTIONAL:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        found.append(name)
    return found


def fork_safe_problem() -> str:
    """Why forking now would be unsafe ("" when it is safe)."""
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        return f"threads running before the fork: {', '.join(others)}"
    if asyncio._get_running_loop() is not None:
        return "an event loop is running before the fork"
    return ""


def complain(text: str) -> None:
    print(f"{PROGRAM}: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    handover = upgrade.take_handover()  # first: gone before anything could fork or log it
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        host = parse(args, os.environ)
    except FlagError as exc:
        complain(f"{exc} (see {PROGRAM} -help)")
        return 2
    if host.help:
        print(USAGE)
        return 0
    logs.setup(host.log_level, host.log_json)
    handed_over: dict[str, int] | None = None
    if handover is not None:
        try:
            handed_over = upgrade.decode(handover)
        except upgrade.HandoverError as exc:
            complain(f"{exc}; adopting no sidecar")
            handed_over = {}
    try:
        definitions = envdir.read_dir(host.directory)
    except envdir.EnvFileError as exc:
        # After an upgrade the children die with this process (their parent-death signal);
        # systemd's Restart= starts the unit again.
        complain(str(exc))
        return 2
    try:
        host.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        complain(f"-run-dir {host.run_dir}: cannot create: {exc.strerror or exc}")
        return 2
    optional = import_data_path()
    gc.collect()
    gc.freeze()
    problem = fork_safe_problem()
    if problem:
        complain(f"{problem}; refusing to fork (a bug: please report it)")
        return 1
    log.info(
        "%d sidecars in %s; data path imported (%s), %d objects frozen",
        len(definitions),
        host.directory,
        ", ".join(optional) or "no optional modules",
        gc.get_freeze_count(),
    )
    command = upgrade.exec_command(sys.argv, sys.orig_argv, sys.executable)
    supervisor = Supervisor(host.directory, host.run_dir, host.grace, host.ready_timeout, command)
    return supervisor.run(definitions, handed_over)


if __name__ == "__main__":
    sys.exit(main())
