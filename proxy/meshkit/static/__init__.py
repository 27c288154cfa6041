# SPDX-License-Identifier: MPL-2.0
"""Static mode: identity, certificates, targets and authorization from files (and flags)."""
