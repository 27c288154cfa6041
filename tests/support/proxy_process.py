# SPDX-License-Identifier: MPL-2.0
"""Real `meshkit-proxy` child processes, in either mode: `ProxyProcess` started with flags as an
operator starts it (Consul mode: `-sidecar-for`, `-proxy-id`), or through `start_proxy` from a
static YAML config written for it; and `run_proxy_cli` for runs that end on their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from signal import SIGTERM
from typing import Any

import yaml

from tests.support.paths import ROOT
from tests.support.ports import free_port


def proxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshkit.proxy_main", *args]


def proxy_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the caller's Consul settings, the checkout's proxy importable,
    then `extra` (what the test means the proxy to see)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "CONNECT_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "proxy"), str(ROOT)])
    env.update(extra or {})
    return env


def run_proxy_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run to completion (config-error tests)."""
    return subprocess.run(
        proxy_command(*args), env=proxy_env(), capture_output=True, text=True, timeout=timeout
    )


class ProxyProcess:
    """One `meshkit-proxy` child; its log (stdout and stderr, debug level) goes to a file in
    `workdir`, its working directory.

    Without `admin_port` the admin listener (/ready, /metrics) gets a free port through
    `-admin-bind`; with it, the caller has configured that port (a static config's `admin`).
    """

    def __init__(
        self,
        workdir: Path,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        *,
        admin_port: int | None = None,
    ) -> None:
        self.workdir, self.name = workdir, name
        if admin_port is None:
            admin_port = free_port()
            args = [*args, "-admin-bind", f"127.0.0.1:{admin_port}"]
        self.admin_port = admin_port
        self.args = [*args, "-log-level", "debug"]
        self.env = proxy_env(env)
        self.log_path = workdir / f"proxy-{name}.log"
        self.config_path: Path | None = None  # the YAML file, for a static-mode proxy
        self.ports: dict[str, int] = {}  # the test's own notes of the ports it configured
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, f"proxy {self.name} was never started"
        return self._process

    def start(self) -> ProxyProcess:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                proxy_command(*self.args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        return self

    def wait_ready(self, timeout: float = 20.0) -> ProxyProcess:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"proxy {self.name} exited with {code}:\n{self.log()[-4000:]}")
            status, last = self.admin("/ready", timeout=0.5)
            if status == 200:
                return self
            time.sleep(0.05)
        raise AssertionError(
            f"proxy {self.name} not ready after {timeout}s: {last}\n{self.log()[-4000:]}"
        )

    def admin(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """(status, body) of a GET on the admin listener; (0, "") when nothing answers."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> dict[str, float]:
        """`name{labels}` -> value, for exact-series assertions."""
        status, text = self.admin("/metrics")
        assert status == 200
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def metric_sum(self, prefix: str, **labels: str) -> float:
        """The sum of `meshkit_proxy_<prefix>` over the series whose labels include `labels`."""
        total = 0.0
        for key, value in self.metrics().items():
            if key.split("{", 1)[0] != "meshkit_proxy_" + prefix:
                continue
            if all(f'{k}="{v}"' in key for k, v in labels.items()):
                total += value
        return total

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

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def run_to_exit(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)

    def stop(self, sig: int = SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal (SIGTERM: drain and exit), wait, kill after `timeout`; the exit code."""
        proc = self._process
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


def start_proxy(
    tmp: Path, name: str, config: dict[str, Any], *extra: str, ready: bool = True
) -> ProxyProcess:
    """A static-mode proxy from `config` (written to `tmp/<name>.yaml`, admin on a free port)."""
    admin_port = free_port()
    config = dict(config)
    config.setdefault("admin", {"bind": f"127.0.0.1:{admin_port}"})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proxy = ProxyProcess(tmp, name, ["-config", str(path), *extra], admin_port=admin_port)
    proxy.config_path = path
    proxy.start()
    if ready:
        proxy.wait_ready()
    return proxy
