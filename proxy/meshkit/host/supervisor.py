# SPDX-License-Identifier: MPL-2.0
"""The host parent's loop: keep one child per definition running, bounded in every wait.

The parent has no event loop and no threads (a fork of a threaded process keeps only the
forking thread, and the other threads' locks stay held in the child): it blocks SIGCHLD,
SIGHUP, SIGTERM and SIGINT and takes them one at a time from `signal.sigtimedwait`, whose
timeout is the next restart or stop deadline (at most `TICK` seconds).

- A child that exits is logged (ID, pid, exit status or signal) and started again after a
  back-off: 1 s, doubled per quick failure up to 30 s, back to 1 s once a child ran 60 s.
- SIGHUP re-reads the directory: new IDs start, removed ones stop, a changed one (its file's
  bytes, or its token file's inode/size/mtime) stops and then starts with the new definition;
  the others are not touched. A directory that cannot be read or holds a bad file changes
  nothing: the problem is logged and what runs keeps running.
- SIGTERM/SIGINT: SIGTERM to every child's process group, up to `grace` seconds for them to
  exit, SIGKILL for the rest, then return.
- `<run_dir>/<ID>.pid` holds the pid of the child running now (written after each fork,
  removed when it exits), so a tool can tell a restarted sidecar from the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from meshkit.host import child, envdir
from meshkit.host.envdir import Definition
from meshkit.workers import describe_status

log = logging.getLogger("meshkit.host")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STEADY_AFTER = 60.0  # a child up this long starts the back-off over
STOP_GRACE = 25.0
TICK = 5.0  # the longest wait for a signal; nothing depends on it but liveness of the loop
WAITED = (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


@dataclass
class Sidecar:
    definition: Definition
    pid: int = 0
    started: float = 0.0
    backoff: float = 0.0
    start_at: float = 0.0  # when to (re)start; 0 = now
    kill_at: float = 0.0  # when a stop asked for becomes SIGKILL; 0 = not stopping
    replacement: Definition | None = None  # start this one once the old child is gone
    removed: bool = False  # stopping for good


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    def __init__(self, directory: Path, run_dir: Path, grace: float = STOP_GRACE) -> None:
        self.directory = directory
        self.run_dir = run_dir
        self.grace = grace
        self.sidecars: dict[str, Sidecar] = {}

    # -- pid files ------------------------------------------------------------------------
    def _pid_path(self, sidecar_id: str) -> Path:
        return self.run_dir / f"{sidecar_id}.pid"

    def _write_pid(self, sidecar_id: str, pid: int) -> None:
        path = self._pid_path(sidecar_id)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(f"{pid}\n")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc.strerror or exc)

    def _remove_pid(self, sidecar_id: str) -> None:
        with contextlib.suppress(OSError):
            self._pid_path(sidecar_id).unlink()

    # -- one child -----------------------------------------------------------------------------
    def _start(self, sidecar: Sidecar, now: float) -> None:
        definition = sidecar.definition
        sidecar.pid = child.start(definition)
        sidecar.started, sidecar.start_at, sidecar.kill_at = now, 0.0, 0.0
        self._write_pid(definition.sidecar_id, sidecar.pid)
        log.info(
            "sidecar %s started: pid %d, admin %s",
            definition.sidecar_id,
            sidecar.pid,
            definition.admin_bind,
        )

    def _stop(self, sidecar: Sidecar, now: float) -> None:
        if sidecar.pid and not sidecar.kill_at:
            _signal_group(sidecar.pid, signal.SIGTERM)
            sidecar.kill_at = now + self.grace

    def _kill(self, sidecar: Sidecar) -> None:
        log.warning(
            "sidecar %s: pid %d still there after %gs; SIGKILL",
            sidecar.definition.sidecar_id,
            sidecar.pid,
            self.grace,
        )
        _signal_group(sidecar.pid, signal.SIGKILL)

    def _exited(self, sidecar_id: str, sidecar: Sidecar, status: int, now: float) -> None:
        pid, up = sidecar.pid, now - sidecar.started
        _signal_group(pid, signal.SIGKILL)  # any worker it left behind in its group
        sidecar.pid, sidecar.kill_at = 0, 0.0
        self._remove_pid(sidecar_id)
        what = describe_status(status)
        if sidecar.removed:
            log.info("sidecar %s stopped: pid %d, %s; removed", sidecar_id, pid, what)
            del self.sidecars[sidecar_id]
        elif sidecar.replacement is not None:
            log.info("sidecar %s stopped: pid %d, %s; starting its new definition",
                     sidecar_id, pid, what)  # fmt: skip
            sidecar.definition, sidecar.replacement = sidecar.replacement, None
            sidecar.backoff, sidecar.start_at = 0.0, now
        else:
            if up >= STEADY_AFTER or not sidecar.backoff:
                sidecar.backoff = FIRST_BACKOFF
            else:
                sidecar.backoff = min(sidecar.backoff * 2, MAX_BACKOFF)
            sidecar.start_at = now + sidecar.backoff
            log.warning("sidecar %s exited: pid %d, %s after %.1fs; restarting in %gs",
                        sidecar_id, pid, what, up, sidecar.backoff)  # fmt: skip

    def _reap(self, now: float) -> None:
        by_pid = {s.pid: i for i, s in self.sidecars.items() if s.pid}
        for _ in range(len(by_pid) + 64):  # bounded: each pass reaps one child or stops
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sidecar_id = by_pid.pop(pid, None)
            if sidecar_id is not None:
                self._exited(sidecar_id, self.sidecars[sidecar_id], status, now)

    # -- the directory ----------------------------------------------------------------------------
    def apply(self, definitions: dict[str, Definition], now: float) -> None:
        """Start new IDs, stop removed ones, replace changed ones; leave the rest alone."""
        for sidecar_id, sidecar in self.sidecars.items():
            new = definitions.get(sidecar_id)
            if new is None:
                if not sidecar.removed:
                    log.info("sidecar %s: its file is gone; stopping it", sidecar_id)
                sidecar.removed, sidecar.replacement = True, None
            elif sidecar.removed or not sidecar.definition.same_as(new):
                log.info("sidecar %s: definition changed; restarting it", sidecar_id)
                sidecar.removed, sidecar.replacement = False, new
            else:
                sidecar.replacement = None  # a change undone before the old child exited
                continue
            if sidecar.pid:
                self._stop(sidecar, now)  # `_exited` starts the replacement, if any
            elif new is not None:  # waiting out a back-off: the new definition starts now
                sidecar.definition, sidecar.replacement = new, None
                sidecar.backoff, sidecar.start_at = 0.0, now
        # Removed while waiting out a back-off: nothing runs, nothing to stop.
        for sidecar_id in [i for i, s in self.sidecars.items() if s.removed and not s.pid]:
            del self.sidecars[sidecar_id]
        for sidecar_id, definition in definitions.items():
            if sidecar_id not in self.sidecars:
                self.sidecars[sidecar_id] = Sidecar(definition, start_at=now)

    def reload(self, now: float) -> None:
        try:
            definitions = envdir.read_dir(self.directory)
        except envdir.EnvFileError as exc:
            log.error("SIGHUP: %s; nothing changed, the running sidecars keep running", exc)
            return
        log.info("SIGHUP: %d sidecar definitions in %s", len(definitions), self.directory)
        self.apply(definitions, now)

    # -- the loop -------------------------------------------------------------------------------
    def _due(self, now: float) -> float:
        """Start and kill what is due; the seconds until the next deadline (at most TICK)."""
        wait = TICK
        for sidecar in list(self.sidecars.values()):
            if sidecar.pid and sidecar.kill_at:
                if now >= sidecar.kill_at:
                    self._kill(sidecar)
                    sidecar.kill_at = now + self.grace
                wait = min(wait, max(sidecar.kill_at - now, 0.0))
            elif not sidecar.pid and not sidecar.removed:
                if now >= sidecar.start_at:
                    self._start(sidecar, now)
                else:
                    wait = min(wait, sidecar.start_at - now)
        return max(wait, 0.01)

    def run(self, definitions: dict[str, Definition]) -> int:
        """Block the waited-for signals (before the first fork, so no SIGCHLD is missed), start
        every sidecar, serve until SIGTERM/SIGINT, stop them all; returns the exit code, 0."""
        signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
        self.apply(definitions, time.monotonic())
        while True:
            timeout = self._due(time.monotonic())
            info = signal.sigtimedwait(WAITED, timeout)
            now = time.monotonic()
            self._reap(now)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_signo == signal.SIGHUP:
                self.reload(now)
                continue
            log.info("%s: stopping %d sidecars", signal.Signals(info.si_signo).name,
                     sum(1 for s in self.sidecars.values() if s.pid))  # fmt: skip
            self.shutdown()
            return 0

    def shutdown(self) -> None:
        now = time.monotonic()
        for sidecar in self.sidecars.values():
            sidecar.removed, sidecar.replacement = True, None
            self._stop(sidecar, now)
        deadline = now + self.grace
        killed = False
        # Bounded: the grace, then one more for what SIGKILL leaves to reap.
        while any(s.pid for s in self.sidecars.values()):
            now = time.monotonic()
            if now >= deadline:
                if killed:
                    break
                for sidecar in self.sidecars.values():
                    if sidecar.pid:
                        self._kill(sidecar)
                killed, deadline = True, now + self.grace
            signal.sigtimedwait((signal.SIGCHLD,), min(TICK, max(deadline - now, 0.01)))
            self._reap(time.monotonic())
        for sidecar_id in list(self.sidecars):
            self._remove_pid(sidecar_id)
        self.sidecars.clear()
