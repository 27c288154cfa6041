# SPDX-License-Identifier: MPL-2.0
"""Make the in-tree packages importable when pytest runs from the checkout: the proxy package,
the repository root (for `tests.support` and `bench`), and the collection as
``ansible_collections.meshkit.connect``."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT / "collections", ROOT / "proxy", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

# The shared fixtures (dev_agent, dev_agent_acl, agent), for every test module without imports.
pytest_plugins = ["tests.support.devagent"]
