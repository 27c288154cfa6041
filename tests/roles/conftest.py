# SPDX-License-Identifier: MPL-2.0
"""Fixtures for the role tests: one role template rendered as the role would (the dev agent
fixture is registered for every test in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.ansible_run import playbook
from tests.support.paths import ROOT

HERE = Path(__file__).resolve().parent


@pytest.fixture
def render(tmp_path: Path):
    """Render one role template with the role's defaults, as the role would."""

    def _render(role: str, template: str, dest: Path, **extra: Any) -> Path:
        run = playbook(
            HERE / "render.yml",
            {"role_dir": str(ROOT / "roles" / role), "template_name": template,
             "dest": str(dest), **extra},
            dest.parent,
        )  # fmt: skip
        assert run.rc == 0, run.output
        return dest

    return _render
