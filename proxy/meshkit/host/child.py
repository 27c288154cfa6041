# SPDX-License-Identifier: MPL-2.0
"""Fork one sidecar from the host parent and run it as `meshkit-proxy` would run.

The child:
- leads its own process group, so the parent stops one sidecar together with any worker it
  forked (`killpg`), and every sidecar by doing that for each group;
- gets SIGTERM when the parent dies (no orphaned sidecar holding its ports), default signal
  handlers and an empty signal mask (the parent blocks the signals it waits for);
- sees only its own file's variables plus the basics below (PATH, locale, journald's stream):
  never another sidecar's token path or address, never the parent's CONSUL_* variables;
- is named `mk:<ID>` (15 bytes, the kernel's limit) for `ps -o comm` and top;
- runs `meshkit.proxy_main.main(argv)` and leaves with `os._exit`, so nothing of the parent
  (atexit handlers, buffered output) runs twice.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import traceback

from meshkit import logs, proxy_main, workers
from meshkit.host.envdir import Definition

PR_SET_NAME = 15
COMM_BYTES = 15
# What a process needs from the host's environment whatever it runs: the search path, the
# locale, the time zone, who it is, and journald's stream marker (so `journalctl` keeps levels).
PASSED_THROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
)
# The signals a child gets back to their defaults: the parent waits for these with them blocked.
RESET_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)


def environment(definition: Definition, inherited: dict[str, str]) -> dict[str, str]:
    """The child's whole environment: the basics of `inherited`, then its file, then its tag."""
    env = {
        key: value
        for key, value in inherited.items()
        if key in PASSED_THROUGH or key.startswith("LC_")
    }
    env.update(definition.environment)
    env[logs.TAG_VARIABLE] = definition.sidecar_id
    return env


def process_name(sidecar_id: str) -> bytes:
    return f"mk:{sidecar_id}".encode()[:COMM_BYTES]


def set_process_name(sidecar_id: str) -> bool:
    """Linux `prctl(PR_SET_NAME)`: what `ps -o comm`, top and /proc/PID/comm show."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_NAME, ctypes.c_char_p(process_name(sidecar_id)), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _become_sidecar(definition: Definition, inherited: dict[str, str]) -> int:
    os.setpgid(0, 0)
    for sig in RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    parent = os.getppid()
    workers.set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl: nothing would stop us later
        return 1
    env = environment(definition, inherited)
    os.environ.clear()
    os.environ.update(env)
    set_process_name(definition.sidecar_id)
    return proxy_main.main(list(definition.argv))


def start(definition: Definition) -> int:
    """Fork; the parent gets the child's pid, the child never returns."""
    inherited = dict(os.environ)
    pid = os.fork()
    if pid:
        # Also from this side, so the group exists before the parent signals it; fails only
        # when the child got there first or already exited.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        return pid
    code = 1
    try:
        code = _become_sidecar(definition, inherited)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream must not keep it alive
                stream.flush()
        os._exit(code)
