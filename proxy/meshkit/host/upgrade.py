# SPDX-License-Identifier: MPL-2.0
"""An upgrade in place (SIGUSR2): the parent execs its own command line again, keeping its pid
(systemd's MainPID) and its children, and tells the new program which child runs which sidecar.

- `exec_command`: what to exec. A console script's `sys.argv[0]` is the script's path as the
  unit names it (`.../current/bin/meshkit-proxy-host`, not resolved), so the kernel reads that
  path's `#!` line again and the new release's interpreter runs the new release's code. Started
  as `python -m meshkit.host.main` (tests, development) `argv[0]` is a `.py` file: the same
  interpreter runs the same module again.
- The hand-over is `HANDOVER_VARIABLE=ID=PID,ID=PID,...`, set only in the environment given to
  `execve`. `take_handover` removes it from the new parent at once, from `os.environ` and from
  the kernel's copy of the exec-time environment (`/proc/PID/environ`, which every forked child
  would otherwise show), so no child ever sees it. No fd is passed: each child owns its
  listeners.
- `adopt`: a handed-over pid counts only while it is still this process's child
  (`waitpid(pid, WNOHANG)`), so a stale or forged value cannot make the parent signal a
  stranger.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from meshkit.host import envdir
from meshkit.workers import describe_status

HANDOVER_VARIABLE = "MESHKIT_HOST_HANDOVER"
MAX_HANDOVER_BYTES = 64 * 1024


class HandoverError(ValueError):
    """The hand-over variable is not `ID=PID,...`: one line naming what is wrong."""


@dataclass(frozen=True)
class Adopted:
    """What `adopt` found: the children still running, and the ones that are not."""

    running: dict[str, int]
    gone: dict[str, str]  # ID -> why it was not adopted (its exit status, or not our child)


def exec_command(argv: Sequence[str], orig_argv: Sequence[str], executable: str) -> list[str]:
    """The command line that runs this program again, from the path it was started by."""
    script = argv[0] if argv else ""
    if script and not script.endswith(".py") and os.path.isfile(script):
        return [script, *argv[1:]]
    return [executable, *orig_argv[1:]]


def encode(pids: dict[str, int]) -> str:
    return ",".join(f"{sidecar_id}={pid}" for sidecar_id, pid in sorted(pids.items()))


def decode(value: str) -> dict[str, int]:
    """`ID=PID,...` into {ID: PID}; every ID a valid sidecar ID, every PID above 1."""
    if len(value) > MAX_HANDOVER_BYTES:
        raise HandoverError(f"{HANDOVER_VARIABLE}: {len(value)} bytes, more than expected")
    pids: dict[str, int] = {}
    for item in filter(None, value.split(",")):
        sidecar_id, _, pid = item.partition("=")
        if not envdir.valid_id(sidecar_id) or not pid.isdigit() or int(pid) <= 1:
            raise HandoverError(f"{HANDOVER_VARIABLE}: {item[:80]!r} is not ID=PID")
        pids[sidecar_id] = int(pid)
    return pids


def _scrub_exec_environment(name: str) -> None:
    """Zero `name=value` where the kernel put it at exec (what /proc/PID/environ reads, and what a
    fork copies); call before `os.environ` drops it, while libc's `getenv` still finds it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        getenv = libc.getenv
        getenv.restype = ctypes.c_void_p
        getenv.argtypes = [ctypes.c_char_p]
        value_at = getenv(name.encode())
        if value_at:
            length = len(ctypes.string_at(value_at))
            name_at = value_at - len(name) - 1
            if ctypes.string_at(name_at, len(name) + 1) == f"{name}=".encode():
                ctypes.memset(name_at, 0, len(name) + 1 + length)


def take_handover() -> str | None:
    """The hand-over value if this process was exec'd by an upgrade, else None; gone from this
    process (and so from every child it forks) when this returns."""
    value = os.environ.get(HANDOVER_VARIABLE)
    if value is None:
        return None
    _scrub_exec_environment(HANDOVER_VARIABLE)
    os.environ.pop(HANDOVER_VARIABLE, None)
    return value


def adopt(pids: dict[str, int]) -> Adopted:
    """Keep the handed-over pids that are still this process's running children."""
    running: dict[str, int] = {}
    gone: dict[str, str] = {}
    for sidecar_id, pid in pids.items():
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            gone[sidecar_id] = f"pid {pid} is not a child of this process"
            continue
        if reaped == 0:
            running[sidecar_id] = pid
        else:
            gone[sidecar_id] = f"pid {pid} exited during the upgrade: {describe_status(status)}"
    return Adopted(running, gone)
