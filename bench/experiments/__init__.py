# SPDX-License-Identifier: MPL-2.0
"""Standalone measurements that informed the proxy's data-path design (docs/benchmark.md)."""
