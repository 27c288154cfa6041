# SPDX-License-Identifier: MPL-2.0
"""The one error type the lab raises for conditions a user can fix (exit 2 with the message)."""

from __future__ import annotations


class LabError(Exception):
    """A prerequisite, input or state problem, worded so the reader knows what to do."""
