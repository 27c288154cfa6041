# SPDX-License-Identifier: MPL-2.0
"""Where the checkout's parts are, for tests that start processes or read files from it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "collections"
