# SPDX-License-Identifier: MPL-2.0
"""The host parent's loop: keep one child per definition running, bounded in every wait.

The parent has no event loop and no threads (a fork of a threaded process keeps only the
forking thread, and the other threads' locks stay held in the child): it blocks SIGCHLD,
SIGHUP, SIGTERM and SIGINT and takes them one at a time from `signal.sigtimedwait`, whose
timeout is the next restart or stop deadline (at most `TICK` seconds).

- A child that exits is logged (ID, pid, exit status or signal) and started again after a
  back-off: 1 s, doubled per quick failure up to 30 s, back to 1 s once a child ran 60 s.
- SIGHUP re-reads the directory: new IDs start, removed ones stop, a changed one (its file's
  bytes, or its token file's inode/size/mtime) is replaced by the roll below; the others are
  not touched. A directory that cannot be read or holds a bad file changes nothing: the
  problem is logged and what runs keeps running.
- The roll replaces sidecars one at a time, in ID order: SIGTERM to the old child's group (its
  drain; SIGKILL after `grace`), its exit, the new child's fork, then `/ready` polled between
  signal waits until it answers 200, at most `ready_timeout` seconds; then the next. A sidecar
  not ready in time is logged with what `/ready` answered and stops the roll: the ones not yet
  replaced keep running as they are (fail static), and supervision goes on; the next SIGHUP or
  SIGUSR2 takes the roll up again. A SIGHUP during a roll folds the new directory into it: the
  sidecar being replaced finishes, and what is left is every sidecar still on an old release
  or an old definition, in ID order.
- SIGUSR2 upgrades in place (upgrade.py): the directory read with this code (a bad one refuses
  the upgrade), then, once no sidecar is half-replaced, `execve` of this program's own command
  line with the running children handed over; the new program adopts them and rolls them all.
  An exec that fails is logged and this parent goes on.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshkit.host import child, envdir, ready, upgrade
from meshkit.host.envdir import Definition
from meshkit.workers import describe_status

log = logging.getLogger("meshkit.host")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STEADY_AFTER = 60.0  # a child up this long starts the back-off over
STOP_GRACE = 25.0
TICK = 5.0  # the longest wait for a signal; nothing depends on it but liveness of the loop
# In the run directory while this parent takes SIGUSR2 as an upgrade: a tool can tell it from a
# release before this one, which SIGUSR2 would kill (its default action).
UPGRADE_MARK = ".upgrade-in-place"
READY_TIMEOUT = 60.0
READY_POLL = 0.25  # how often a rolling sidecar's /ready is asked
WAITED = (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


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
    stale: bool = False  # runs the release before an upgrade: the roll replaces it

    def renew(self, definition: Definition, now: float) -> None:
        """Start `definition` next, at once: no back-off, no replacement pending, current."""
        self.definition, self.replacement = definition, None
        self.backoff, self.start_at, self.stale = 0.0, now, False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class Step:
    """The one sidecar the roll is replacing now."""

    sidecar_id: str
    old_pid: int
    ready_by: float = 0.0  # set when the new child is forked
    answer: str = "no child started yet"


class Supervisor:
    def __init__(
        self,
        directory: Path,
        run_dir: Path,
        grace: float = STOP_GRACE,
        ready_timeout: float = READY_TIMEOUT,
        command: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.run_dir = run_dir
        self.grace = grace
        self.ready_timeout = ready_timeout
        self.command = list(command)  # what SIGUSR2 execs; empty: upgrades are refused
        self.sidecars: dict[str, Sidecar] = {}
        self.step: Step | None = None
        self.roll_stopped = False  # a sidecar was not ready in time: no step until a signal
        self.upgrade_asked = False  # SIGUSR2 waiting for the current step to finish

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
        step = self.step
        if step is not None and step.sidecar_id == definition.sidecar_id and not step.ready_by:
            step.ready_by = now + self.ready_timeout
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
            sidecar.renew(sidecar.replacement, now)
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
            elif sidecar.removed or sidecar.stale or not sidecar.definition.same_as(new):
                if not sidecar.definition.same_as(new):
                    log.info("sidecar %s: definition changed; replacing it", sidecar_id)
                sidecar.removed, sidecar.replacement = False, new
            else:
                sidecar.replacement = None  # a change undone before the old child exited
                continue
            if sidecar.pid and new is None:
                self._stop(sidecar, now)
            elif not sidecar.pid and new is not None:  # waiting out a back-off: start it now
                sidecar.renew(new, now)
            # A running sidecar with a replacement waits for its turn in the roll (`_roll`).
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
        self.roll_stopped = False
        self.apply(definitions, now)

    # -- the roll -------------------------------------------------------------------------------
    def _next_to_replace(self) -> str | None:
        waiting = sorted(
            sidecar_id
            for sidecar_id, s in self.sidecars.items()
            if s.replacement is not None and s.pid and not s.kill_at and not s.removed
        )
        return waiting[0] if waiting else None

    def _roll(self, now: float) -> float:
        """Advance the roll by what is due; the seconds until it needs looking at again."""
        step = self.step
        if step is not None:
            sidecar = self.sidecars.get(step.sidecar_id)
            if sidecar is None or sidecar.removed:
                self.step = step = None  # removed while it was being replaced
            elif sidecar.pid and sidecar.pid != step.old_pid:
                step.answer = ready.probe(sidecar.definition.admin_bind) or ""
                if not step.answer:
                    log.info("roll: sidecar %s ready (pid %d, was %d)",
                             step.sidecar_id, sidecar.pid, step.old_pid)  # fmt: skip
                    self.step = step = None
            if step is not None and step.ready_by and now >= step.ready_by:
                log.error(
                    "roll: sidecar %s not ready %gs after its start (%s /ready: %s); roll "
                    "stopped, the sidecars not yet replaced keep running as they are",
                    step.sidecar_id, self.ready_timeout,
                    sidecar.definition.admin_bind if sidecar else "?", step.answer,
                )  # fmt: skip
                self.step, self.roll_stopped = None, True
                return TICK
            if step is not None:
                return READY_POLL
        if self.upgrade_asked:
            self.upgrade_asked = False
            self.exec_upgrade()  # returns only when the exec failed
        if self.roll_stopped:
            return TICK
        sidecar_id = self._next_to_replace()
        if sidecar_id is None:
            return TICK
        sidecar = self.sidecars[sidecar_id]
        left = sum(1 for s in self.sidecars.values() if s.replacement is not None) - 1
        log.info("roll: replacing sidecar %s (pid %d%s); %d more after it",
                 sidecar_id, sidecar.pid, ", an older release" if sidecar.stale else "",
                 left)  # fmt: skip
        self.step = Step(sidecar_id, sidecar.pid)
        self._stop(sidecar, now)  # `_exited` starts the replacement, `_start` arms `ready_by`
        return READY_POLL

    # -- upgrade in place -----------------------------------------------------------------------
    def ask_upgrade(self) -> None:
        try:
            envdir.read_dir(self.directory)
        except envdir.EnvFileError as exc:
            log.error("SIGUSR2: %s; upgrade refused, the running sidecars keep running", exc)
            return
        if not self.command:
            log.error("SIGUSR2: no command line to exec; upgrade refused")
            return
        if self.step is not None:
            log.info("SIGUSR2: upgrading once sidecar %s is replaced", self.step.sidecar_id)
        self.upgrade_asked = True

    def exec_upgrade(self) -> None:
        """exec the (new) program with the running children handed over; on failure, log and
        return: this parent and its children go on as they were."""
        running = {sidecar_id: s.pid for sidecar_id, s in self.sidecars.items() if s.pid}
        log.info("SIGUSR2: upgrading in place: exec %s, handing over %d sidecars",
                 self.command[0], len(running))  # fmt: skip
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        env = {**os.environ, upgrade.HANDOVER_VARIABLE: upgrade.encode(running)}
        try:
            os.execve(self.command[0], self.command, env)
        except OSError as exc:
            log.error("SIGUSR2: cannot exec %s: %s; upgrade failed, this parent and its "
                      "sidecars keep running", self.command[0], exc.strerror or exc)  # fmt: skip

    def adopt(self, definitions: dict[str, Definition], handed: dict[str, int]) -> None:
        """After an upgrade: the children of the old program become sidecars of this one, on the
        old release, so the roll replaces each; the rest start, removed ones stop."""
        now = time.monotonic()
        found = upgrade.adopt(handed)
        for sidecar_id, why in sorted(found.gone.items()):
            log.warning("upgrade: sidecar %s not adopted: %s", sidecar_id, why)
            self._remove_pid(sidecar_id)
        for sidecar_id, pid in sorted(found.running.items()):
            # An ID whose file is gone gets an empty definition: `apply` stops it at once.
            definition = definitions.get(sidecar_id) or Definition(
                sidecar_id, self.directory / f"{sidecar_id}{envdir.SUFFIX}", {}, (), b"", None
            )
            self.sidecars[sidecar_id] = Sidecar(definition, pid=pid, started=now, stale=True)
        log.info("upgrade: adopted %d running sidecars (%s); replacing them one at a time",
                 len(found.running), ", ".join(f"{i} pid {p}" for i, p in
                                              sorted(found.running.items())) or "none")  # fmt: skip
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

    def run(
        self, definitions: dict[str, Definition], handed_over: dict[str, int] | None = None
    ) -> int:
        """Block the waited-for signals (before the first fork, so no SIGCHLD is missed), start
        every sidecar (or adopt the ones an upgrade handed over), serve until SIGTERM/SIGINT,
        stop them all; returns the exit code, 0."""
        # After an exec they are still blocked; an ignored SIGCHLD would also survive it and
        # make the kernel reap the children itself, so every disposition is set here.
        for sig in WAITED:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
        if self.command:
            with contextlib.suppress(OSError):
                (self.run_dir / UPGRADE_MARK).write_text("SIGUSR2\n")
        if handed_over is None:
            self.apply(definitions, time.monotonic())
        else:
            self.adopt(definitions, handed_over)
        while True:
            now = time.monotonic()
            timeout = min(self._due(now), self._roll(now))
            info = signal.sigtimedwait(WAITED, max(timeout, 0.01))
            now = time.monotonic()
            self._reap(now)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_signo == signal.SIGHUP:
                self.reload(now)
                continue
            if info.si_signo == signal.SIGUSR2:
                self.ask_upgrade()
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
        with contextlib.suppress(OSError):
            (self.run_dir / UPGRADE_MARK).unlink()
