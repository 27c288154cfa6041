# SPDX-License-Identifier: MPL-2.0
"""The issue-2 data-plane benchmark, static mode against agent mode (issue 3 acceptance).

Not a pytest test (nothing timed is pass/fail): a script that reuses bench/'s measurements
(`bench.proxy_bench.measure_pair`) on two pairs with the same app and load:

- `meshkit`: bench/'s own static-mode pair (YAML files, bench/pairs.py);
- `meshkit-agent`: two `meshkit-proxy -sidecar-for` processes configured by a
  `meshkit dev-agent` (sidecar registrations, leaf and roots from its CA, discovery and
  intentions from its API). The dev agent is not part of the pair's CPU/memory figures.

    .venv/bin/python -m bench.agent_mode_bench [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "proxy") not in sys.path:
    sys.path[:0] = [str(ROOT), str(ROOT / "proxy")]

from bench import measure, pairs  # noqa: E402
from bench.certs import make_certs  # noqa: E402
from bench.proxy_bench import METRICS, measure_pair  # noqa: E402
from tests.support.devagent import DevAgent  # noqa: E402


def agent_pair(agent: DevAgent, ctx: pairs.PairContext, n: int) -> pairs.RunningPair:
    """Register a server and a client (with an upstream) and start their sidecars."""
    out_port, in_port = pairs.free_port(), pairs.free_port()
    server, client = f"bench-server-{n}", f"bench-client-{n}"
    agent.register(
        {
            "Name": server,
            "Port": ctx.app_port,
            "Address": pairs.HOST,
            "Connect": {"SidecarService": {"Port": in_port}},
        }
    )
    agent.register(
        {
            "Name": client,
            "Port": pairs.free_port(),
            "Address": pairs.HOST,
            "Connect": {
                "SidecarService": {
                    "Port": pairs.free_port(),
                    "Proxy": {
                        "Upstreams": [
                            {
                                "DestinationName": server,
                                "LocalBindAddress": pairs.HOST,
                                "LocalBindPort": out_port,
                            }
                        ]
                    },
                }
            },
        }
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(pairs.PROXY_SRC), str(ROOT)])
    env["CONSUL_HTTP_ADDR"] = agent.address
    pair = pairs.RunningPair("meshkit-agent", out_port)
    for side in (server, client):
        log = ctx.workdir / f"agent-{side}.log"
        argv = [sys.executable, "-m", "meshkit.proxy_main", "-sidecar-for", side]
        pair.procs.append(pairs.spawn([*argv, "-log-level", "warn"], log, env))
        pair.logs.append(log)
    return pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = measure.Sizes.quick() if args.quick else measure.Sizes()
    results: dict[str, list[dict[str, float]]] = {"meshkit": [], "meshkit-agent": []}
    with tempfile.TemporaryDirectory(prefix="meshkit-agent-bench-") as tmp:
        work = Path(tmp)
        ctx = pairs.PairContext(make_certs(work), pairs.free_port(), work)
        app = pairs.RunningPair("app", ctx.app_port)
        app.procs.append(
            pairs.spawn(
                [sys.executable, "-m", "bench.app", "--port", str(ctx.app_port)], work / "app.log"
            )
        )
        app.logs.append(work / "app.log")
        agent = DevAgent(work / "agent").start()
        try:
            pairs.wait_ready(app)
            for number in range(1, args.rounds + 1):
                for name in results:
                    pair = (
                        pairs.LAUNCHERS["meshkit"](())(ctx)
                        if name == "meshkit"
                        else agent_pair(agent, ctx, number)
                    )
                    try:
                        pairs.wait_ready(pair)
                        results[name].append(measure_pair(pair, sizes))
                    finally:
                        pair.stop()
                    short = ", ".join(f"{k}={v:.4g}" for k, v in results[name][-1].items())
                    print(f"round {number}: {name}: {short}", file=sys.stderr, flush=True)
        finally:
            agent.stop(timeout=2)
            app.stop()
    print(f"metric (median of {args.rounds} rounds)  static  agent  agent/static")
    for m in METRICS:
        static = statistics.median(r[m.key] for r in results["meshkit"])
        agent_v = statistics.median(r[m.key] for r in results["meshkit-agent"])
        ratio = f"{agent_v / static:.2f}x" if static else "-"
        print(f"{m.label:<40} {m.fmt.format(static):>8} {m.fmt.format(agent_v):>8} {ratio:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
