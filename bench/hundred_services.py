# SPDX-License-Identifier: MPL-2.0
"""100 services with sidecars registered by one play, twice: the second run changes nothing.

    python -m bench.hundred_services [COUNT] [loop|batch]

prints the wall time of both ansible-playbook runs. ``loop`` runs consul_service once per
service (``loop:``), ``batch`` once with ``services:`` (validated together, one module run).
The pytest wrapper is ``tests/collection/test_hundred_services.py``.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.ansible_run import PlayRun, run_play
from tests.support.devagent import DevAgent


def services(count: int) -> list[dict[str, Any]]:
    """``count`` services on one host, each with a sidecar, a check and two upstreams."""
    out = []
    for i in range(count):
        out.append(
            {
                "name": f"svc{i:03d}",
                "port": 10000 + i,
                "tags": ["bench", f"shard-{i % 4}"],
                "meta": {"index": str(i)},
                "checks": [{"name": "tcp", "tcp": f"127.0.0.1:{10000 + i}", "interval": "10s"}],
                "sidecar": {
                    "port": "auto",
                    "admin_port": 11000 + i,
                    "upstreams": [
                        {"destination_name": f"svc{(i + 1) % count:03d}",
                         "local_bind_port": 12000 + i},
                        {"destination_name": f"svc{(i + 2) % count:03d}",
                         "local_bind_port": 13000 + i},
                    ],
                },
            }
        )  # fmt: skip
    return out


@dataclass
class Outcome:
    first: PlayRun
    second: PlayRun
    count: int

    def changed(self, run: PlayRun) -> int:
        """How many services the run registered or changed."""
        result = run.task("register")
        if "results" in result:  # loop
            return sum(1 for item in result["results"] if item["changed"])
        diff_after = (result.get("diff") or {}).get("after") or {}
        return len(diff_after) if result.get("changed") else 0


def run(workdir: Path, count: int = 100, mode: str = "loop") -> Outcome:
    task: dict[str, Any] = {"name": "register", "vars": {"mesh_services": services(count)}}
    if mode == "loop":
        task["meshkit.connect.consul_service"] = {"service": "{{ item }}"}
        task["loop"] = "{{ mesh_services }}"
        task["loop_control"] = {"label": "{{ item.name }}"}
    else:
        task["meshkit.connect.consul_service"] = {"services": "{{ mesh_services }}"}
    tasks = [task]
    with DevAgent(workdir / "agent", persistent=False) as agent:
        batch = mode != "loop"  # the diff is how a batch run reports which services changed
        first = run_play(workdir / "first", tasks, agent.address, diff=batch, timeout=1200)
        second = run_play(workdir / "second", tasks, agent.address, diff=batch, timeout=1200)
        registered = agent.ok("GET", "/v1/agent/services")
    assert len(registered) == 2 * count, f"{len(registered)} registrations, want {2 * count}"
    return Outcome(first, second, count)


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 100
    mode = argv[1] if len(argv) > 1 else "loop"
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run(Path(tmp), count, mode)
    for label, play in (("first run", outcome.first), ("second run", outcome.second)):
        print(
            f"{mode}, {label}: {play.seconds:.1f} s wall, "
            f"{outcome.changed(play)} of {count} changed"
        )
    return 0 if outcome.changed(outcome.second) == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
