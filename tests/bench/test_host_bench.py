# SPDX-License-Identifier: MPL-2.0
"""The host benchmark runs a tiny host end to end: N sidecars start, hold connections, report.

A correctness test of the script (the dev agent, the registrations, every proxy ready, the
idle connections proven open, the table), never a timed assertion about the proxies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "host_bench.py"


@pytest.mark.slow
def test_two_sidecars_one_round(tmp_path: Path) -> None:
    if not Path("/usr/sbin/haproxy").exists():
        pytest.skip("haproxy is not installed (./run installs it)")
    out = tmp_path / "host.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "2", "--rounds", "1", "--conns", "5",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    for kind in ("haproxy", "meshkit", "meshkit-shared"):
        (run,) = results["2"][kind]
        assert run["startup_s"] > 0
        assert run["loaded_mib"] >= run["rest_mib"] > 1  # two live process trees were measured
    # two sidecars on a host: the role's default (auto) runs them shared, and says so
    assert "  2 meshkit " in proc.stdout and "  2 meshkit-shared* " in proc.stdout
    assert "x)" in proc.stdout
