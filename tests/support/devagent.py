# SPDX-License-Identifier: MPL-2.0
"""Start the real `meshkit dev-agent` process on a free loopback port, for any test.

    def test_x(dev_agent):    # a fixture of every test module (tests/conftest.py registers them)
        dev_agent.put("/v1/agent/service/register", {"Name": "db", "Port": 5432})
        status, headers, body = dev_agent.get("/v1/health/service/db")

    with DevAgent(tmp_path, acl_master_token="root") as agent:   # or as a context manager
        agent.url            # http://127.0.0.1:PORT
        agent.address        # 127.0.0.1:PORT  (what CONSUL_HTTP_ADDR wants)
        agent.process        # the subprocess.Popen
        agent.data_dir       # persisted state (SQLite) lives here
        agent.restart()      # same data dir, same port
        agent.env()          # CONSUL_HTTP_ADDR (+ CONSUL_HTTP_TOKEN) for child processes

Check intervals are capped at `max_check_interval` (1s by default) so a sidecar's
"Connect Sidecar Listening" TCP check turns passing about a second after its listener opens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT


class DevAgentError(RuntimeError):
    pass


class DevAgent:
    def __init__(
        self,
        workdir: Path,
        *,
        acl_master_token: str | None = None,
        default_intention_policy: str | None = None,
        max_check_interval: str | None = "1s",
        config_dir: Path | None = None,
        extra_args: list[str] | None = None,
        persistent: bool = True,
        node: str = "dev-node",
        log_level: str = "info",
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir: Path | None = self.workdir / "devagent-data" if persistent else None
        self.acl_master_token = acl_master_token
        self.default_intention_policy = default_intention_policy
        self.max_check_interval = max_check_interval
        self.config_dir = config_dir
        self.extra_args = list(extra_args or [])
        self.node = node
        self.log_level = log_level
        self.log_path = self.workdir / "devagent.log"
        self.ready_file = self.workdir / "devagent.ready"
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self._port = 0

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def port(self) -> int:
        return self._port

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "meshkit_tools.cli",
            "dev-agent",
            "-http-addr",
            f"127.0.0.1:{self._port}",
            "-ready-file",
            str(self.ready_file),
            "-node",
            self.node,
            "-log-level",
            self.log_level,
        ]
        if self.data_dir is not None:
            cmd += ["-data-dir", str(self.data_dir)]
        if self.acl_master_token:
            token_file = self.workdir / "devagent-master-token"
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.acl_master_token)
            cmd += ["-acl-master-token-file", str(token_file)]
        if self.default_intention_policy:
            cmd += ["-default-intention-policy", self.default_intention_policy]
        if self.max_check_interval:
            cmd += ["-max-check-interval", self.max_check_interval]
        if self.config_dir is not None:
            cmd += ["-config-dir", str(self.config_dir)]
        return cmd + self.extra_args

    def start(self, timeout: float = 20.0) -> DevAgent:
        if self.process is not None:
            raise DevAgentError("dev-agent already running")
        self.ready_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "proxy"), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=log, env=env, cwd=self.workdir
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise DevAgentError(f"dev-agent exited with {code}:\n{self.log_text()[-3000:]}")
            if self.ready_file.exists():
                text = self.ready_file.read_text().strip()
                if text:
                    self.address = text
                    self._port = int(text.rsplit(":", 1)[1])
                    return self
            time.sleep(0.05)
        self.stop()
        raise DevAgentError(f"dev-agent not ready after {timeout}s:\n{self.log_text()[-3000:]}")

    def stop(self, timeout: float = 10.0) -> int | None:
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def restart(self, timeout: float = 20.0) -> DevAgent:
        """Stop and start again with the same data dir and the same port."""
        self.stop()
        return self.start(timeout)

    def reload(self) -> None:
        """SIGHUP: re-read -config-dir."""
        if self.process is None:
            raise DevAgentError("dev-agent not running")
        self.process.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def env(self) -> dict[str, str]:
        out = {"CONSUL_HTTP_ADDR": self.address}
        if self.acl_master_token:
            out["CONSUL_HTTP_TOKEN"] = self.acl_master_token
        return out

    def __enter__(self) -> DevAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, decoded JSON or text); never raises on an HTTP error status."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        tok = token if token is not None else self.acl_master_token
        if tok:
            req.add_header("X-Consul-Token", tok)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, headers, payload = resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            status, headers, payload = err.code, dict(err.headers.items()), err.read()
        text = payload.decode(errors="replace")
        ctype = headers.get("Content-Type", "")
        value: Any = json.loads(text) if ctype.startswith("application/json") and text else text
        return status, headers, value

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("GET", path, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("PUT", path, body, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """Like `request` but insists on 200 and returns the body."""
        status, _, value = self.request(method, path, body, **kw)
        if status != 200:
            raise DevAgentError(f"{method} {path} -> {status}: {value}")
        return value

    def register(self, definition: dict[str, Any], **kw: Any) -> None:
        self.ok("PUT", "/v1/agent/service/register", definition, **kw)

    def trust_domain(self) -> str:
        return str(self.ok("GET", "/v1/agent/connect/ca/roots")["TrustDomain"])

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise DevAgentError(f"timed out after {timeout}s waiting for {what}")


def running(agent: DevAgent, stop_grace_s: float = 10.0) -> Iterator[DevAgent]:
    """Start `agent`, hand it to the test, stop it (SIGTERM, then kill after the grace)."""
    agent.start()
    try:
        yield agent
    finally:
        agent.stop(timeout=stop_grace_s)


@pytest.fixture
def dev_agent(tmp_path: Path) -> Iterator[DevAgent]:
    """A running dev-agent (persistent data dir under tmp_path, ACLs off)."""
    yield from running(DevAgent(tmp_path / "devagent"))


@pytest.fixture
def dev_agent_acl(tmp_path: Path) -> Iterator[DevAgent]:
    """A running dev-agent with ACLs on; `agent.acl_master_token` is the management token."""
    yield from running(
        DevAgent(tmp_path / "devagent-acl", acl_master_token="meshkit-test-master-token")
    )


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[DevAgent]:
    """A running dev-agent for a test that runs proxies against it (ACLs off), stopped with a
    1 s grace: its proxies are gone by then, so it has nothing left to finish."""
    yield from running(DevAgent(tmp_path / "agent"), stop_grace_s=1.0)
