# SPDX-License-Identifier: MPL-2.0
"""The data-plane benchmark: meshkit's pair against haproxy, stunnel and no proxy at all.

One invocation runs every pair round by round (round 1: baseline, haproxy, stunnel, meshkit;
round 2: ...), each started fresh, with the same certificates, app and client load, and prints
the median of the rounds for every metric and pair, the ratio meshkit/haproxy, and the floors
of issue 2 as PASS/FAIL. The floors are informational: the exit status is 0 unless a pair or
a measurement breaks. Everything listens on 127.0.0.1 and is stopped on exit or Ctrl-C.

    .venv/bin/python bench/proxy_bench.py [--rounds 3] [--quick] [--only haproxy,meshkit]
        [--json results.json] [--meshkit-args "-workers 2"]
        [--variant "stdlib=-tls-engine stdlib" ...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `meshkit` importable
    _root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(_root), str(_root / "proxy")]

from bench import measure, pairs
from bench.certs import make_certs

PAIR_ORDER = ("baseline", "haproxy", "stunnel", "meshkit")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    fmt: str = "{:.2f}"


METRICS = (
    Metric("bulk1_gbps", "bulk, 1 connection (Gbit/s)", True),
    Metric("bulk8_gbps", "bulk, 8 connections (Gbit/s)", True),
    Metric("rr1_p50_us", "64 B req/resp, 1 conn: p50 (µs)", False, "{:.0f}"),
    Metric("rr1_p99_us", "64 B req/resp, 1 conn: p99 (µs)", False, "{:.0f}"),
    Metric("rr64_rps", "64 B req/resp, 64 conns (req/s)", True, "{:.0f}"),
    Metric("rr64_p99_us", "64 B req/resp, 64 conns: p99 (µs)", False, "{:.0f}"),
    Metric("conns_per_s", "new mTLS connections/s (16 workers)", True, "{:.0f}"),
    Metric("idle_kib", "memory idle, both sides (PSS KiB)", False, "{:.0f}"),
    Metric("loaded_kib", "memory with idle conns open (PSS KiB)", False, "{:.0f}"),
    Metric("kib_per_conn", "KiB per idle conn, larger side", False, "{:.1f}"),
    Metric("pair_kib_per_conn", "KiB per idle conn, both sides", False, "{:.1f}"),
    Metric("cpu_s_per_gib", "CPU s per GiB (bulk)", False),
    Metric("cpu_us_per_req", "CPU µs per request (64 conns)", False, "{:.1f}"),
    Metric("cpu_us_per_conn", "CPU µs per new connection", False, "{:.0f}"),
)


@dataclass(frozen=True)
class Floor:
    key: str
    text: str
    check: Callable[[float, float], bool]  # (meshkit, haproxy) -> ok


FLOORS = (
    Floor("bulk1_gbps", "bulk 1 conn >= 0.9x haproxy", lambda m, h: m >= 0.9 * h),
    Floor("bulk8_gbps", "bulk 8 conns >= 0.9x haproxy", lambda m, h: m >= 0.9 * h),
    Floor("rr64_rps", "64-conn req/s >= 0.6x haproxy", lambda m, h: m >= 0.6 * h),
    Floor("conns_per_s", "new conns/s >= 1.0x haproxy", lambda m, h: m >= 1.0 * h),
    Floor("kib_per_conn", "KiB per idle conn (each proxy) <= 64", lambda m, h: m <= 64),
)


PHASES = ("memory", "bulk", "rr", "conns")


def measure_pair(
    pair: pairs.RunningPair, sizes: measure.Sizes, phases: tuple[str, ...] = PHASES
) -> dict[str, float]:
    """The metrics of the chosen phases for one pair, fresh from start: memory first, before
    any load shaped it."""
    out: dict[str, float] = {}
    if "memory" in phases:
        mem = measure.idle_memory(pair, sizes)
        out |= {k: mem[k] for k in ("idle_kib", "loaded_kib", "kib_per_conn", "pair_kib_per_conn")}
    if "bulk" in phases:
        b1 = measure.bulk(pair, 1, sizes)
        b8 = measure.bulk(pair, 8, sizes)
        out["bulk1_gbps"], out["bulk8_gbps"] = b1["gbps"], b8["gbps"]
        out["cpu_s_per_gib"] = (b1["cpu_s_per_gib"] + b8["cpu_s_per_gib"]) / 2
    if "rr" in phases:
        r1 = measure.rr_single(pair, sizes)
        r64 = measure.rr_many(pair, 64, sizes)
        out["rr1_p50_us"], out["rr1_p99_us"] = r1["p50_us"], r1["p99_us"]
        out["rr64_rps"], out["rr64_p99_us"] = r64["rps"], r64["p99_us"]
        out["cpu_us_per_req"] = r64["cpu_us_per_req"]
    if "conns" in phases:
        nc = measure.new_conns(pair, 16, sizes)
        out["conns_per_s"], out["cpu_us_per_conn"] = nc["cps"], nc["cpu_us_per_conn"]
    return out


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP unwind as KeyboardInterrupt, so every `finally` stops its
    processes (SIGINT explicitly too: a shell starting us in the background ignores it)."""

    def unwind(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, unwind) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = measure.Sizes.quick() if args.quick else measure.Sizes()
    if args.seconds:
        sizes = measure.Sizes(args.seconds, sizes.idle_conns, sizes.load_procs)
    extra = shlex.split(args.meshkit_args)
    launchers: dict[str, pairs.Launcher] = {}
    for name in PAIR_ORDER:
        if name in args.only:
            launchers[name] = pairs.LAUNCHERS[name](extra)
        if name == "meshkit":
            for label, source, flags in args.variant:
                launchers[f"meshkit:{label}"] = pairs.meshkit(
                    [*extra, *flags], f"meshkit:{label}", source
                )
    chosen = list(launchers)
    rounds: list[dict[str, dict[str, float]]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="meshkit-bench-") as tmp:
        work = Path(tmp)
        ctx = pairs.PairContext(make_certs(work), pairs.free_port(), work)
        app = pairs.RunningPair("app", ctx.app_port)
        app.procs.append(
            pairs.spawn(
                [sys.executable, "-m", "bench.app", "--port", str(ctx.app_port)], work / "app.log"
            )
        )
        app.logs.append(work / "app.log")
        try:
            pairs.wait_ready(app)
            for number in range(1, args.rounds + 1):
                results: dict[str, dict[str, float]] = {}
                for name in chosen:
                    pair = launchers[name](ctx)
                    try:
                        pairs.wait_ready(pair)
                        results[name] = measure_pair(pair, sizes, args.phases)
                    except RuntimeError as exc:
                        failures.append(f"round {number} {name}: {exc}")
                        print(f"round {number}: {name} FAILED: {exc}", file=sys.stderr, flush=True)
                    finally:
                        pair.stop()
                    if name in results:
                        short = ", ".join(f"{k}={v:.4g}" for k, v in results[name].items())
                        print(f"round {number}: {name}: {short}", file=sys.stderr, flush=True)
                rounds.append(results)
        finally:
            app.stop()
    return {"rounds": rounds, "failures": failures, "sizes": sizes.__dict__, "pairs": chosen}


def medians(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    names = {n for r in rounds for n in r}
    for name in names:
        runs = [r[name] for r in rounds if name in r]
        out[name] = {
            m.key: statistics.median(run[m.key] for run in runs)
            for m in METRICS
            if all(m.key in run for run in runs)
        }
    return out


def meshkit_pairs(med: dict[str, dict[str, float]], chosen: list[str]) -> list[str]:
    """The meshkit pairs (the default one and every --variant) that have a haproxy to face."""
    if "haproxy" not in med:
        return []
    return [n for n in chosen if n in med and n.split(":")[0] == "meshkit"]


def render(med: dict[str, dict[str, float]], chosen: list[str], n_rounds: int) -> str:
    names = [n for n in chosen if n in med]
    ratios = meshkit_pairs(med, chosen)
    head = [f"metric (median of {n_rounds} rounds)", *names, *(f"{n}/haproxy" for n in ratios)]
    rows = [head]
    for m in METRICS:
        if not all(m.key in med[n] for n in names):
            continue  # a phase left out with --phases
        row = [m.label]
        for n in names:
            value = med[n][m.key]
            row.append(
                "-"
                if n == "baseline"
                and m.key.startswith(("cpu", "idle", "loaded", "kib", "pair_kib"))
                else m.fmt.format(value)
            )
        h = med["haproxy"][m.key] if ratios else 0.0
        row.extend(f"{med[n][m.key] / h:.2f}x" if h else "-" for n in ratios)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def floors(med: dict[str, dict[str, float]], chosen: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in meshkit_pairs(med, chosen):
        for f in FLOORS:
            if f.key not in med[name] or f.key not in med["haproxy"]:
                continue
            m, h = med[name][f.key], med["haproxy"][f.key]
            out.append(
                {
                    "pair": name,
                    "floor": f.text,
                    "meshkit": m,
                    "haproxy": h,
                    "ratio": m / h if h else None,
                    "pass": f.check(m, h),
                }
            )
    return out


def environment() -> dict[str, str]:
    import ssl

    from OpenSSL import SSL

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "ssl": ssl.OPENSSL_VERSION,
        "pyopenssl_openssl": SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode(),
        "cpus": str(os.cpu_count()),
        "loadavg_at_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, each running every pair once (default 3)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the script, not the proxies"
    )
    parser.add_argument(
        "--only",
        default=",".join(PAIR_ORDER),
        help=f"comma-separated subset of {','.join(PAIR_ORDER)}",
    )
    parser.add_argument(
        "--json", type=Path, help="also write every round, the medians and the floors here"
    )
    parser.add_argument(
        "--meshkit-args", default="", help='extra meshkit-proxy flags, e.g. "-workers 2"'
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL[@CHECKOUT]=FLAGS",
        help='another meshkit pair in the same rounds, e.g. --variant "stdlib=-tls-engine stdlib";'
        " with @CHECKOUT, the proxy of another checkout of this repository (before/after runs:"
        ' --variant "before@/tmp/old-checkout=")',
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default: all)",
    )
    parser.add_argument(
        "--seconds", type=float, default=0.0, help="seconds per load phase (default 4, quick 0.5)"
    )
    args = parser.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in only if p not in PAIR_ORDER]
    if unknown or not only:
        parser.error(f"--only: unknown pair(s) {unknown}; choose from {','.join(PAIR_ORDER)}")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1..20")
    if not 0 <= args.seconds <= 60:
        parser.error("--seconds must be 0..60")
    args.only = only
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    if not phases or any(p not in PHASES for p in phases):
        parser.error(f"--phases: choose from {','.join(PHASES)}")
    args.phases = phases
    variants: list[tuple[str, Path | None, list[str]]] = []
    for text in args.variant:
        head, sep, flags = text.partition("=")
        label, at, checkout = head.partition("@")
        if not sep or not label.strip().isidentifier():
            parser.error(f"--variant {text!r}: expected LABEL[@CHECKOUT]=FLAGS, a word as label")
        source = None
        if at:
            source = Path(checkout).expanduser().resolve() / "proxy"
            if not (source / "meshkit" / "proxy_main.py").is_file():
                parser.error(
                    f"--variant {text!r}: {checkout} is not a checkout of this repository "
                    "(no proxy/meshkit/proxy_main.py); make one with: git worktree add DIR COMMIT"
                )
        variants.append((label.strip(), source, shlex.split(flags)))
    if len({label for label, _, _ in variants}) != len(variants):
        parser.error("--variant: labels must differ")
    args.variant = variants
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(measure.ROOT)  # the load generator and the app run as `python -m bench.*`
    started = time.monotonic()
    try:
        with stopping_on_signals():
            outcome = run(args)
    except KeyboardInterrupt:
        print("interrupted; every process started has been stopped", file=sys.stderr)
        return 130
    med = medians(outcome["rounds"])
    print(render(med, outcome["pairs"], len(outcome["rounds"])))
    checks = floors(med, outcome["pairs"])
    if checks:
        print("\nfloors (issue 2, informational):")
        for c in checks:
            ratio = f"{c['ratio']:.2f}x" if c["ratio"] is not None else "-"
            verdict = "PASS" if c["pass"] else "FAIL"
            values = f"{c['pair']} {c['meshkit']:.4g}, haproxy {c['haproxy']:.4g}, {ratio}"
            print(f"  {verdict}  {c['floor']}  ({values})")
    print(f"\n{len(outcome['rounds'])} rounds in {time.monotonic() - started:.0f}s")
    for failure in outcome["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    if args.json:
        report = {
            **outcome,
            "medians": med,
            "floors": checks,
            "environment": environment(),
            "meshkit_args": args.meshkit_args,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
