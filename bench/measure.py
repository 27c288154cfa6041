# SPDX-License-Identifier: MPL-2.0
"""The five measurements, each against one running pair, with the proxies' CPU read around it.

The client load runs in child processes (bench.loadgen) that start together at a shared
instant; their JSON results are merged here. CPU is read from /proc for the pair's processes
only, so the load generator's and the app's time never count against a proxy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procstat
from bench.pairs import RunningPair, die_with_parent

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30


@dataclass(frozen=True)
class Sizes:
    """How long and how wide each measurement runs; `quick` keeps the smoke test short."""

    seconds: float = 4.0
    idle_conns: int = 1000
    load_procs: int = 2

    @classmethod
    def quick(cls) -> Sizes:
        return cls(seconds=0.5, idle_conns=50, load_procs=1)


def _loadgen_argv(
    mode: str, port: int, conns: int, seconds: float, start: float, out: Path
) -> list[str]:
    return [
        sys.executable, "-m", "bench.loadgen", mode, "--port", str(port), "--conns", str(conns),
        "--seconds", str(seconds), "--start", f"{start:.3f}", "--out", str(out),
    ]  # fmt: skip


def run_load(mode: str, port: int, conns: int, seconds: float, procs: int) -> list[dict[str, Any]]:
    """`procs` load processes sharing `conns` between them; their parsed JSON results."""
    start = time.time() + 0.4 + 0.1 * procs
    shares = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    shares = [share for share in shares if share > 0]
    with tempfile.TemporaryDirectory(prefix="meshkit-load-") as tmp:
        outs = [Path(tmp) / f"{i}.json" for i in range(len(shares))]
        children = [
            subprocess.Popen(
                _loadgen_argv(mode, port, share, seconds, start, out),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent,
            )
            for share, out in zip(shares, outs, strict=True)
        ]
        results = []
        try:
            for child, out in zip(children, outs, strict=True):
                try:
                    _, err = child.communicate(timeout=seconds + 90)
                except subprocess.TimeoutExpired:
                    child.kill()
                    _, err = child.communicate()
                if child.returncode != 0 or not out.exists():
                    tail = err.decode(errors="replace")[-800:]
                    raise RuntimeError(f"load generator {mode} failed ({child.returncode}): {tail}")
                results.append(json.loads(out.read_text()))
        finally:
            for child in children:  # interrupted or failed: no load process outlives us
                if child.poll() is None:
                    child.kill()
                    child.wait()
    return results


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _errors(results: list[dict[str, Any]]) -> list[str]:
    return [e for r in results for e in r.get("errors", [])]


def bulk(pair: RunningPair, conns: int, sizes: Sizes) -> dict[str, float]:
    cpu0 = procstat.cpu_seconds(pair.pids)
    results = run_load("bulk", pair.port, conns, sizes.seconds, 1)
    cpu = procstat.cpu_seconds(pair.pids) - cpu0
    if errs := _errors(results):
        raise RuntimeError(f"{pair.name} bulk x{conns}: {errs[:3]}")
    nbytes = sum(r["bytes"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "gbps": nbytes * 8 / seconds / 1e9,
        "cpu_s_per_gib": cpu / (nbytes / GIB) if pair.procs else 0.0,
    }


def rr_single(pair: RunningPair, sizes: Sizes) -> dict[str, float]:
    results = run_load("rr", pair.port, 1, sizes.seconds, 1)
    if errs := _errors(results):
        raise RuntimeError(f"{pair.name} rr x1: {errs[:3]}")
    lat = results[0]["latency_us"]
    return {
        "p50_us": percentile(lat, 0.50),
        "p99_us": percentile(lat, 0.99),
        "rps": len(lat) / sizes.seconds,
    }


def rr_many(pair: RunningPair, conns: int, sizes: Sizes) -> dict[str, float]:
    cpu0 = procstat.cpu_seconds(pair.pids)
    t0 = time.perf_counter()
    results = run_load("rr", pair.port, conns, sizes.seconds, sizes.load_procs)
    _ = time.perf_counter() - t0
    cpu = procstat.cpu_seconds(pair.pids) - cpu0
    if errs := _errors(results):
        raise RuntimeError(f"{pair.name} rr x{conns}: {errs[:3]}")
    lat = [v for r in results for v in r["latency_us"]]
    requests = len(lat)
    seconds = max(r["seconds"] for r in results)
    # CPU covers set-up and warm-up too; charge it per request served in the whole window.
    total_requests = requests * (sizes.seconds + 0.2) / sizes.seconds
    return {
        "rps": requests / seconds,
        "p99_us": percentile(lat, 0.99),
        "p50_us": percentile(lat, 0.50),
        "cpu_us_per_req": cpu / total_requests * 1e6 if pair.procs else 0.0,
    }


def new_conns(pair: RunningPair, workers: int, sizes: Sizes) -> dict[str, float]:
    cpu0 = procstat.cpu_seconds(pair.pids)
    results = run_load("conns", pair.port, workers, sizes.seconds, sizes.load_procs)
    cpu = procstat.cpu_seconds(pair.pids) - cpu0
    failed = sum(r["error_count"] for r in results)
    done = sum(r["connections"] for r in results)
    if failed > max(5, done // 100):
        raise RuntimeError(f"{pair.name} new connections: {failed} failed: {_errors(results)[:3]}")
    lat = [v for r in results for v in r["latency_us"]]
    seconds = max(r["seconds"] for r in results)
    return {
        "cps": done / seconds,
        "p50_ms": percentile(lat, 0.5) / 1000,
        "failed": float(failed),
        "cpu_us_per_conn": cpu / max(done, 1) * 1e6 if pair.procs else 0.0,
    }


def idle_memory(pair: RunningPair, sizes: Sizes) -> dict[str, float]:
    """PSS of each side idle, then with `idle_conns` proven-open connections through the pair.

    `kib_per_conn` is the larger side's growth per connection (the floor is per proxy);
    `pair_kib_per_conn` is both sides together."""
    idle_sides = [procstat.pss_kib([pid]) for pid in pair.pids]
    holder = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", "idle", "--port", str(pair.port),
         "--conns", str(sizes.idle_conns), "--seconds", "120"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        if not line:
            err = holder.stderr.read().decode()[-800:] if holder.stderr else ""
            raise RuntimeError(f"{pair.name} idle: the connection holder died: {err}")
        report = json.loads(line)
        time.sleep(0.5)
        loaded_sides = [procstat.pss_kib([pid]) for pid in pair.pids]
    finally:
        if holder.stdin:
            holder.stdin.close()
        try:
            holder.wait(30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    opened = report["open"]
    if opened < sizes.idle_conns * 0.99:
        raise RuntimeError(
            f"{pair.name} idle: only {opened}/{sizes.idle_conns} opened: {report['errors']}"
        )
    time.sleep(0.5)  # let the pair tear the held connections down before the next measurement
    growth = [
        (after - before) / opened for before, after in zip(idle_sides, loaded_sides, strict=True)
    ]
    return {
        "idle_kib": float(sum(idle_sides)),
        "loaded_kib": float(sum(loaded_sides)),
        "kib_per_conn": max(growth, default=0.0),
        "pair_kib_per_conn": sum(growth),
    }
