# SPDX-License-Identifier: MPL-2.0
"""Load (not timed): 200 services with sidecars, 50 blocking watchers, steady memory, restart."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.support.devagent import DevAgent

SERVICES = 200
WATCHERS = 50


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_many_services_and_watchers(tmp_path: Path) -> None:
    agent = DevAgent(tmp_path, max_check_interval=None)
    with agent:

        def register_all(round_no: int) -> None:
            for i in range(SERVICES):
                agent.register(
                    {
                        "Name": f"svc{i}",
                        "Port": 10000 + i,
                        "Tags": [f"r{round_no}"],
                        "Connect": {"SidecarService": {}},
                    }
                )

        register_all(0)
        stop = threading.Event()
        wakeups = [0] * WATCHERS
        errors: list[str] = []

        def watch(n: int) -> None:
            index = 0
            while not stop.is_set():
                status, headers, _ = agent.get(f"/v1/health/connect/svc{n}?index={index}&wait=2s")
                if status != 200:
                    errors.append(f"watcher {n}: {status}")
                    return
                new = int(headers["X-Consul-Index"])
                index = 0 if new < index else new
                wakeups[n] += 1

        threads = [threading.Thread(target=watch, args=(n,)) for n in range(WATCHERS)]
        for t in threads:
            t.start()
        assert agent.process is not None
        pid = agent.process.pid
        register_all(1)
        before = rss_kib(pid)
        for round_no in range(2, 4):
            register_all(round_no)
        after = rss_kib(pid)
        stop.set()
        for t in threads:
            t.join(10)
        print(
            f"RSS after round 1: {before} KiB, after round 3: {after} KiB; wakeups {sum(wakeups)}"
        )
        assert errors == []
        assert min(wakeups) >= 3  # every watcher saw the rounds of changes
        # Steady memory: a few rounds of 200 re-registrations under 50 watchers add little.
        assert after - before < 20 * 1024, (before, after)
        services = agent.ok("GET", "/v1/agent/services")
        checks = agent.ok("GET", "/v1/agent/checks")
        assert len(services) == 2 * SERVICES and len(checks) == 2 * SERVICES
        ports = sorted(s["Port"] for s in services.values() if s.get("Kind") == "connect-proxy")
        assert ports == list(range(21000, 21000 + SERVICES))
        agent.restart()
        assert agent.ok("GET", "/v1/agent/services") == services
        assert sorted(agent.ok("GET", "/v1/agent/checks")) == sorted(checks)
        assert agent.ok("GET", "/v1/health/connect/svc7")[0]["Service"]["Tags"] == ["r3"]
