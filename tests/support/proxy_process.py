# SPDX-License-Identifier: MPL-2.0
"""Real `meshkit-proxy` child processes: `ProxyProc` (static mode, from a YAML config written
for it by `start_proxy`) and `ProxyProcess` (Consul mode, started with flags)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ProxyProc:
    name: str
    config_path: Path
    admin_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def metrics(self) -> dict[str, float]:
        """`name{labels}` -> value, for exact-series assertions."""
        status, text = self.get("/metrics")
        assert status == 200
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def metric_sum(self, prefix: str, **labels: str) -> float:
        total = 0.0
        for key, value in self.metrics().items():
            if key.split("{", 1)[0] != "meshkit_proxy_" + prefix:
                continue
            if all(f'{k}="{v}"' in key for k, v in labels.items()):
                total += value
        return total

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.logs()}")
            try:
                status, body = self.get("/ready", timeout=0.5)
                if status == 200:
                    return
                last = body
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready: {last}\n{self.logs()}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def proxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshkit.proxy_main", *args]


def proxy_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "proxy") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_proxy_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run to completion (config-error tests)."""
    return subprocess.run(
        proxy_command(*args), env=proxy_env(), capture_output=True, text=True, timeout=timeout
    )


def start_proxy(
    tmp: Path, name: str, config: dict[str, Any], *extra: str, ready: bool = True
) -> ProxyProc:
    admin_port = free_port()
    config = dict(config)
    config.setdefault("admin", {"bind": f"127.0.0.1:{admin_port}"})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            proxy_command("-config", str(path), "-log-level", "debug", *extra),
            env=proxy_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    p = ProxyProc(name, path, admin_port, proc, log_path)
    if ready:
        p.wait_ready()
    return p


class ProxyProcess:
    """One `meshkit-proxy` child; its log goes to a file under the test's tmp dir."""

    def __init__(
        self, workdir: Path, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.workdir, self.name = workdir, name
        self.admin_port = free_port()
        self.args = [*args, "-admin-bind", f"127.0.0.1:{self.admin_port}", "-log-level", "debug"]
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "proxy"), str(ROOT)])
        for key in list(self.env):
            if key.startswith(("CONSUL_", "CONNECT_")):
                del self.env[key]
        self.env.update(env or {})
        self.log_path = workdir / f"proxy-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxyProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "meshkit.proxy_main", *self.args],
                stdout=log,
                stderr=log,
                env=self.env,
                cwd=self.workdir,
            )
        return self

    def wait_ready(self, timeout: float = 20.0) -> ProxyProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"proxy {self.name} exited with {code}:\n{self.log()[-4000:]}")
            if self.admin("/ready")[0] == 200:
                return self
            time.sleep(0.05)
        raise AssertionError(f"proxy {self.name} not ready after {timeout}s:\n{self.log()[-4000:]}")

    def admin(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from /metrics (full name, e.g. meshkit_proxy_control_plane_reachable)."""
        _, text = self.admin("/metrics")
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
        return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def run_to_exit(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode
