# SPDX-License-Identifier: MPL-2.0
# Copyright (c) meshkit contributors
# Mozilla Public License Version 2.0 (see https://mozilla.org/MPL/2.0/)
"""Shared documentation of the check_mode and diff_mode attributes of meshkit.connect modules.

Use exactly one of:

* ``meshkit.connect.attributes``: a module that changes something, with full check and diff
  mode. A module whose wording is more precise keeps only the differing key in its own
  ``attributes:`` block (for example ``diff_mode.description``); the module's own keys win.
* ``meshkit.connect.attributes.INFO_MODULE``: a module that only reads (check mode full,
  diff mode not applicable).

Do not list both: Ansible merges fragments so that the first one listed wins on a key both set,
so the standard fragment's wording would hide the info variant's.
"""

from __future__ import annotations


class ModuleDocFragment:
    # Standard fragment: a module that writes, with full check and diff mode.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
    description: Reports what would change without writing.
  diff_mode:
    support: full
    description: C(before) and C(after) hold exactly the fields that differ.
"""

    # A module that only reads; use instead of the standard fragment.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    description: The module only reads, so it runs the same in check mode.
  diff_mode:
    support: N/A
    description: Nothing is changed, so there is nothing to diff.
"""
