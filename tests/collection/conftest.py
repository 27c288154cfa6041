# SPDX-License-Identifier: MPL-2.0
"""Make the collection importable as ``ansible_collections.meshkit.connect`` from the checkout."""

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[2] / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
