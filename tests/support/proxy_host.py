# SPDX-License-Identifier: MPL-2.0
"""A real `meshkit-proxy-host` process over an env directory written the way the mesh_proxy role
writes it (`<ID>.env`: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN_FILE, MESHKIT_ADMIN_BIND,
MESHKIT_PROXY_ARGS), with the helpers the tests look through: pid files, admin /ready, the log."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.devagent import DevAgent
from tests.support.echo import App
from tests.support.ports import free_port
from tests.support.proxy_process import proxy_env
from tests.support.waits import wait_until


def host_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshkit.host.main", *args]


def write_env(
    directory: Path,
    sidecar_id: str,
    consul_addr: str,
    *,
    admin_port: int | None = None,
    token_file: Path | None = None,
    extra: dict[str, str] | None = None,
) -> int:
    """Write `<ID>.env` as proxy.env.j2 renders it; returns the admin port."""
    port = admin_port or free_port()
    lines = [f"# meshkit-proxy@{sidecar_id}", f"CONSUL_HTTP_ADDR={consul_addr}"]
    if token_file is not None:
        lines.append(f"CONSUL_HTTP_TOKEN_FILE={token_file}")
    lines += [f"{k}={v}" for k, v in (extra or {}).items()]
    lines += [f"MESHKIT_ADMIN_BIND=127.0.0.1:{port}", "MESHKIT_PROXY_ARGS=-log-level debug"]
    (directory / f"{sidecar_id}.env").write_text("\n".join(lines) + "\n")
    return port


def admin_status(port: int, path: str = "/ready") -> int:
    """The HTTP status of a GET on an admin listener; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


class HostProcess:
    """`meshkit-proxy-host -dir DIR -run-dir RUN` with its output in `workdir/host.log`."""

    def __init__(
        self, workdir: Path, env_dir: Path, *extra: str, program: list[str] | None = None
    ) -> None:
        """`program`: the command before the flags (default `python -m meshkit.host.main`)."""
        self.workdir, self.env_dir = workdir, env_dir
        self.program = program
        self.run_dir = workdir / "run"
        self.log_path = workdir / "host.log"
        self.args = ["-dir", str(env_dir), "-run-dir", str(self.run_dir), "-grace", "5", *extra]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HostProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*self.program, *self.args] if self.program else host_command(*self.args),
                stdout=log, stderr=subprocess.STDOUT,
                env=proxy_env(), cwd=self.workdir,
            )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pid_of(self, sidecar_id: str) -> int:
        """The pid in `<run-dir>/<ID>.pid`, 0 when there is none."""
        try:
            return int((self.run_dir / f"{sidecar_id}.pid").read_text())
        except (OSError, ValueError):
            return 0

    def pids(self, *ids: str) -> dict[str, int]:
        return {i: self.pid_of(i) for i in ids}

    def wait_ready(self, ports: dict[str, int], timeout: float = 30.0) -> None:
        for sidecar_id, port in ports.items():
            wait_until(
                lambda p=port: admin_status(p) == 200, timeout,
                what=lambda i=sidecar_id: f"{i} ready\n{self.log()[-4000:]}",
            )  # fmt: skip

    def signal(self, sig: int) -> None:
        assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        proc, self.process = self.process, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
            raise


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@dataclass
class SidecarHost:
    """A `HostProcess` over sidecars registered on one dev agent, each with its echo app and
    its env file; `register_three` makes the usual three: web (an upstream to api), api, db."""

    agent: DevAgent
    workdir: Path
    env_dir: Path
    host: HostProcess
    apps: dict[str, App] = field(default_factory=dict)
    admin: dict[str, int] = field(default_factory=dict)
    upstream_port: int = 0

    def register(self, sidecar_id: str, upstreams: list[dict[str, object]] | None = None) -> None:
        self.apps[sidecar_id] = App(sidecar_id)
        proxy: dict[str, object] = {"Upstreams": upstreams} if upstreams else {}
        self.agent.register({
            "Name": sidecar_id, "ID": sidecar_id, "Port": self.apps[sidecar_id].port,
            "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": free_port(), "Proxy": proxy}},
        })  # fmt: skip

    def register_three(self) -> None:
        self.upstream_port = free_port()
        self.register("api")
        self.register("db")
        self.register("web", [{"DestinationName": "api", "LocalBindPort": self.upstream_port}])

    def write(
        self,
        sidecar_id: str,
        *,
        consul: str = "",
        token_file: Path | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """(Re)write `<ID>.env`, keeping the sidecar's admin port; `consul` defaults to the
        agent's address."""
        self.admin[sidecar_id] = write_env(
            self.env_dir, sidecar_id, consul or self.agent.address,
            admin_port=self.admin.get(sidecar_id), token_file=token_file, extra=extra,
        )  # fmt: skip

    def token_file(self, sidecar_id: str) -> Path:
        return self.workdir / f"{sidecar_id}.token"

    def close(self) -> None:
        self.host.stop()
        for app in self.apps.values():
            app.close()
