# SPDX-License-Identifier: MPL-2.0
"""The benchmark script runs one tiny round end to end and reports every metric and floor.

A correctness test of the script (pairs start, load runs, numbers are parsed and tabulated),
never a timed assertion about the proxies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench.proxy_bench import FLOORS, METRICS, floors, medians, render

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "proxy_bench.py"


@pytest.mark.slow
def test_quick_round_end_to_end(tmp_path: Path) -> None:
    for tool in ("/usr/sbin/haproxy", "/usr/bin/stunnel4"):
        if not Path(tool).exists():
            pytest.skip(f"{tool} is not installed (./run installs it)")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--rounds",
            "1",
            "--json",
            str(out),
            "--variant",
            "one=-workers 1",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,  # the script must not depend on the caller's directory
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    for metric in METRICS:
        assert metric.label in proc.stdout
    assert "meshkit/haproxy" in proc.stdout
    assert "meshkit:one/haproxy" in proc.stdout
    assert proc.stdout.count("PASS") + proc.stdout.count("FAIL") == 2 * len(FLOORS)
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert set(report["medians"]) == {"baseline", "haproxy", "stunnel", "meshkit", "meshkit:one"}
    for name, values in report["medians"].items():
        assert values["bulk1_gbps"] > 0, name
        assert values["rr64_rps"] > 0, name
        assert values["conns_per_s"] > 0, name
        if name != "baseline":
            assert values["idle_kib"] > 0, name
            assert values["cpu_us_per_conn"] > 0, name
    assert len(report["floors"]) == 2 * len(FLOORS)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--only", "haproxy,envoy"], "envoy"),
        (["--variant", "no-equals-sign"], "no-equals-sign"),
        (["--variant", "a=-workers 2", "--variant", "a=-workers 3"], "labels must differ"),
        (["--rounds", "0"], "--rounds"),
        (["--variant", "old@/nonexistent-checkout="], "not a checkout"),
        (["--phases", "conns,latency"], "--phases"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(args: list[str], named: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert named in proc.stderr


def _round(mesh: float, haproxy: float) -> dict[str, dict[str, float]]:
    base = {m.key: 1.0 for m in METRICS}
    return {"haproxy": {**base, "bulk1_gbps": haproxy}, "meshkit": {**base, "bulk1_gbps": mesh}}


def test_floors_use_the_median_and_the_ratio() -> None:
    rounds = [_round(0.5, 1.0), _round(0.95, 1.0), _round(0.99, 1.0)]
    med = medians(rounds)
    assert med["meshkit"]["bulk1_gbps"] == 0.95
    verdicts = {c["floor"]: c["pass"] for c in floors(med, ["haproxy", "meshkit"])}
    assert verdicts["bulk 1 conn >= 0.9x haproxy"] is True
    med["meshkit"]["bulk1_gbps"] = 0.85
    verdicts = {c["floor"]: c["pass"] for c in floors(med, ["haproxy", "meshkit"])}
    assert verdicts["bulk 1 conn >= 0.9x haproxy"] is False
    assert "0.85x" in render(med, ["haproxy", "meshkit"], 3)


def test_kib_floor_is_absolute() -> None:
    med = medians([_round(1.0, 1.0)])
    med["meshkit"]["kib_per_conn"] = 65.0
    med["haproxy"]["kib_per_conn"] = 100.0
    verdicts = {c["floor"]: c["pass"] for c in floors(med, ["haproxy", "meshkit"])}
    assert verdicts["KiB per idle conn (each proxy) <= 64"] is False


def test_every_meshkit_variant_gets_a_ratio_and_floors() -> None:
    med = medians([_round(1.0, 2.0)])
    med["meshkit:w2"] = {**med["meshkit"], "bulk1_gbps": 3.0}
    chosen = ["haproxy", "meshkit", "meshkit:w2"]
    table = render(med, chosen, 1)
    assert "meshkit:w2/haproxy" in table
    assert "1.50x" in table and "0.50x" in table
    checks = floors(med, chosen)
    assert {c["pair"] for c in checks} == {"meshkit", "meshkit:w2"}
    assert len(checks) == 2 * len(FLOORS)


def _processes_with(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_stops_every_process(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGINT unwinds through every `finally`; even SIGKILL, which runs none, leaves nothing
    behind because every child is started with a parent-death signal."""
    if not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed (./run installs it)")
    marker = f"MESHKIT_BENCH_TEST_{uuid.uuid4().hex}"
    env = {**os.environ, marker: "1"}
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--quick", "--rounds", "3", "--only", "haproxy"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            deadline = time.monotonic() + 120
            # Interrupt in the middle of round 2, while haproxy and a load generator run.
            while "round 1: haproxy" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.2)
            time.sleep(2.0)
            assert len(_processes_with(marker)) > 1, "nothing running to interrupt"
            proc.send_signal(sig)
            expected = 130 if sig == signal.SIGINT else -signal.SIGKILL
            assert proc.wait(60) == expected, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if sig == signal.SIGINT:
        assert "interrupted" in log.read_text()
    deadline = time.monotonic() + 20
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []
