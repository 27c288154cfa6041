# SPDX-License-Identifier: MPL-2.0
"""Run the relay styles of bench.experiments.relay against haproxy with the benchmark's load.

Each variant is a pair of relay processes; haproxy runs in the same invocation, interleaved,
so the ratios compare like with like. Usage:
``python -m bench.experiments.relay_matrix [--seconds S] [--only NAME,...] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import measure, pairs
from bench.certs import make_certs

VARIANTS: dict[str, list[str]] = {
    "streams-asyncio-64k": ["--style", "streams", "--loop", "asyncio", "--buf", "65536"],
    "streams-uvloop-256k": ["--style", "streams", "--loop", "uvloop", "--buf", "262144"],
    "proto-asyncio-256k": ["--style", "proto", "--loop", "asyncio", "--buf", "262144"],
    "proto-uvloop-64k": ["--style", "proto", "--loop", "uvloop", "--buf", "65536"],
    "proto-uvloop-256k": ["--style", "proto", "--loop", "uvloop", "--buf", "262144"],
    "proto-uvloop-1m": ["--style", "proto", "--loop", "uvloop", "--buf", "1048576"],
    "raw-uvloop-256k": ["--style", "raw", "--buf", "262144"],
    "raw-uvloop-256k-w2": ["--style", "raw", "--buf", "262144", "--workers", "2"],
    "raw-uvloop-1m": ["--style", "raw", "--buf", "1048576"],
    "pyossl-uvloop-64k": ["--style", "pyossl", "--buf", "65536"],
    "pyossl-uvloop-256k": ["--style", "pyossl", "--buf", "262144"],
    "pyossl-uvloop-1m": ["--style", "pyossl", "--buf", "1048576"],
    "pyossl-uvloop-256k-chacha": ["--style", "pyossl", "--buf", "262144", "--cipher", "chacha"],
    "pyossl-uvloop-256k-tls12": ["--style", "pyossl", "--buf", "262144", "--tls", "1.2"],
    "pyossl-uvloop-256k-w2": ["--style", "pyossl", "--buf", "262144", "--workers", "2"],
    "proto-uvloop-256k-w2": [
        "--style",
        "proto",
        "--loop",
        "uvloop",
        "--buf",
        "262144",
        "--workers",
        "2",
    ],
    "proto-uvloop-256k-chacha12": [
        "--style",
        "proto",
        "--buf",
        "262144",
        "--tls",
        "1.2",
        "--cipher",
        "chacha",
    ],
}


def relay_launcher(name: str, extra: list[str]) -> pairs.Launcher:
    def launch(ctx: pairs.PairContext) -> pairs.RunningPair:
        out_port, in_port = pairs.free_port(), pairs.free_port()
        c = ctx.certs
        pair = pairs.RunningPair(name, out_port)
        sides = (
            ("out", out_port, in_port, c.client),
            ("in", in_port, ctx.app_port, c.server),
        )
        for role, listen, connect, leaf in sides:
            argv = [
                sys.executable, "-m", "bench.experiments.relay", role,
                "--listen", str(listen), "--connect", str(connect), "--chain", str(leaf.chain),
                "--key", str(leaf.key), "--roots", str(c.roots), *extra,
            ]  # fmt: skip
            log = ctx.workdir / f"{name}-{role}.log"
            pair.procs.append(pairs.spawn(argv, log))
            pair.logs.append(log)
        return pair

    return launch


def run_one(
    launcher: pairs.Launcher, ctx: pairs.PairContext, sizes: measure.Sizes
) -> dict[str, float]:
    pair = launcher(ctx)
    try:
        pairs.wait_ready(pair)
        b1 = measure.bulk(pair, 1, sizes)
        b8 = measure.bulk(pair, 8, sizes)
        r1 = measure.rr_single(pair, sizes)
        r64 = measure.rr_many(pair, 64, sizes)
        nc = measure.new_conns(pair, 16, sizes)
        return {
            "bulk1_gbps": b1["gbps"],
            "bulk8_gbps": b8["gbps"],
            "cpu_s_gib": b1["cpu_s_per_gib"],
            "rr1_p50_us": r1["p50_us"],
            "rr64_rps": r64["rps"],
            "rr64_p99_us": r64["p99_us"],
            "cpu_us_req": r64["cpu_us_per_req"],
            "conns_s": nc["cps"],
            "cpu_us_conn": nc["cpu_us_per_conn"],
        }
    finally:
        pair.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated variant names")
    args = parser.parse_args(argv)
    chosen = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
    sizes = measure.Sizes(seconds=args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ctx = pairs.PairContext(make_certs(work), pairs.free_port(), work)
        app = pairs.spawn(
            [sys.executable, "-m", "bench.app", "--port", str(ctx.app_port)], work / "app.log"
        )
        time.sleep(1.0)
        results: dict[str, list[dict[str, float]]] = {}
        try:
            for _ in range(args.rounds):
                order: list[tuple[str, pairs.Launcher]] = [("haproxy", pairs.haproxy)]
                order += [(v, relay_launcher(v, VARIANTS[v])) for v in chosen]
                for name, launcher in order:
                    try:
                        results.setdefault(name, []).append(run_one(launcher, ctx, sizes))
                    except RuntimeError as exc:
                        print(f"{name}: FAILED {exc}", file=sys.stderr, flush=True)
                        continue
                    print(name, {k: round(v, 2) for k, v in results[name][-1].items()}, flush=True)
        finally:
            app.terminate()
            app.wait(5)
        keys = next(iter(results.values()))[0].keys() if results else []
        ref = (
            {k: statistics.median(r[k] for r in results["haproxy"]) for k in keys}
            if "haproxy" in results
            else {}
        )
        print("\n| variant | " + " | ".join(keys) + " |")
        print("| --- |" + " ---: |" * len(keys))
        for name, runs in results.items():
            cells = []
            for k in keys:
                med = statistics.median(r[k] for r in runs)
                ratio = f" ({med / ref[k]:.2f}x)" if ref.get(k) else ""
                cells.append(f"{med:.3g}{ratio}")
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
