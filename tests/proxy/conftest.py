# SPDX-License-Identifier: MPL-2.0
"""Fixtures: a throwaway CA, an echo app, and a meshed pair (web's outbound → db's inbound)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.echo import EchoApp
from tests.support.pki_files import ThrowawayCA
from tests.support.static_mesh import Pair, start_pair, stop_pair


@pytest.fixture
def ca(tmp_path: Path) -> ThrowawayCA:
    return ThrowawayCA.create(tmp_path / "pki")


@pytest.fixture
def app() -> Iterator[EchoApp]:
    echo = EchoApp().start()
    yield echo
    echo.stop()


@pytest.fixture
def pair(tmp_path: Path, ca: ThrowawayCA, app: EchoApp) -> Iterator[Pair]:
    running = start_pair(tmp_path, ca, app)
    yield running
    stop_pair(running)
