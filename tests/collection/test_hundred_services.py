# SPDX-License-Identifier: MPL-2.0
"""Acceptance: 100 services with sidecars in one play; the second run reports zero changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.hundred_services import run


@pytest.mark.slow
def test_hundred_services_second_run_changes_nothing(tmp_path: Path) -> None:
    # One consul_service task with `services:`; `python -m bench.hundred_services
    # 100 loop` measures the same with a loop (one module run per service, much slower).
    outcome = run(tmp_path, 100, "batch")
    assert outcome.first.returncode == 0, outcome.first.output[-3000:]
    assert outcome.second.returncode == 0, outcome.second.output[-3000:]
    assert outcome.changed(outcome.first) == 100
    assert outcome.changed(outcome.second) == 0
    print(
        f"\n100 services with sidecars, one task: first run {outcome.first.seconds:.1f} s, "
        f"second run {outcome.second.seconds:.1f} s (wall)"
    )
