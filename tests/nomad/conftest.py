# SPDX-License-Identifier: MPL-2.0
"""Fixtures for the Nomad tests: the Nomad double (tests/support/nomad_double.py), serving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.nomad_double import NomadDouble


@pytest.fixture
def double() -> Iterator[NomadDouble]:
    d = NomadDouble()
    d.serve()
    try:
        yield d
    finally:
        d.close()
