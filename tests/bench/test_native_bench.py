# SPDX-License-Identifier: MPL-2.0
"""bench/native_bench.py runs both phases end to end (a correctness test of the script: the
dev agent, the native server, the proxy pair and the load start, numbers come back; never a
timed assertion)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_reports_both_phases(tmp_path: Path) -> None:
    out = tmp_path / "native.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "native_bench.py"), "--seconds", "0.5",
         "--conns", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "native/proxy" in proc.stdout and "req/s" in proc.stdout
    results = json.loads(out.read_text())
    for phase in ("native", "proxy"):
        assert results[phase]["requests"] > 0 and results[phase]["errors"] == 0
        assert results[phase]["p99_us"] >= results[phase]["p50_us"] > 0
