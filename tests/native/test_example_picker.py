# SPDX-License-Identifier: MPL-2.0
"""examples/native_picker as real processes on the real dev agent: the upstream is picked per
request, a denied hop answers 403 with Consul's reason, an unknown one 502."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.native.web import client_session
from tests.support.devagent import DevAgent
from tests.support.native import intention, register_native, run, service
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PICKER = ROOT / "examples" / "native_picker" / "picker.py"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[DevAgent]:
    with DevAgent(tmp_path) as dev:
        yield dev


def start_picker(agent: DevAgent, tmp_path: Path, name: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    env.update(CONSUL_HTTP_ADDR=agent.address, PYTHONPATH=str(ROOT / "proxy"))
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [
                sys.executable,
                str(PICKER),
                "serve",
                "--service",
                name,
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
    finally:
        log.close()


def test_picker_calls_the_upstream_named_in_the_request(agent: DevAgent, tmp_path: Path) -> None:
    ports = {"picker-a": free_port(), "picker-b": free_port(), "picker-c": free_port()}
    procs = []
    for name, port in ports.items():
        register_native(agent, name, port)
        procs.append(start_picker(agent, tmp_path, name, port))
    intention(agent, "picker-a", "picker-b", "allow")
    intention(agent, "picker-a", "picker-c", "deny")

    async def scenario() -> list[tuple[int, str]]:
        out = []
        async with service("tester", agent.address) as me, client_session(me) as http:
            deadline = time.monotonic() + 30
            for name in ports:  # the pickers start in the background: wait for all three
                while True:
                    try:
                        async with http.get(f"http://{name}.service.consul/") as resp:
                            await resp.read()
                            break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)
            for query in (
                "upstream=picker-b",
                "upstream=nobody",
                "upstream=bad.name",
                "upstream=picker-b&path=/nope",
                "upstream=picker-c",
            ):
                # picker-a starts watching an upstream on its first call; until its view of a
                # new name has arrived it answers 502 (no healthy instance), so ask again.
                answer = (0, "")
                for _ in range(50):
                    async with http.get(f"http://picker-a.service.consul/call?{query}") as resp:
                        answer = (resp.status, await resp.text())
                    if answer[0] != 502 or query == "upstream=nobody":
                        break
                    await asyncio.sleep(0.2)
                out.append(answer)
        return out

    try:
        results = run(scenario)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    ok, nobody, bad, notfound, denied = results
    assert ok[0] == 200 and ok[1].startswith("200 from picker-b: hello picker-a")
    assert nobody[0] == 502 and "NoHealthyInstance" in nobody[1]
    assert bad[0] == 400
    assert notfound[0] == 200 and notfound[1].startswith("404 from picker-b")
    assert denied[0] == 403 and "denied" in denied[1] and "picker-a -> picker-c" in denied[1]
    assert all(proc.returncode == 0 for proc in procs)
