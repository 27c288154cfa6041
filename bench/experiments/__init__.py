"""Standalone measurements that informed the proxy's data-path design (docs/benchmark.md)."""
