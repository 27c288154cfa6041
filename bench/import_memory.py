"""Where a proxy's memory goes before it serves anything: the growth of each import, in order.

A sidecar at rest is mostly what it imported. Anonymous memory (the interpreter's heap: module
objects, code, caches) is private to each proxy process; file-backed memory (shared libraries,
mapped .so files) is shared by every proxy on a host. So for a host of many sidecars the
anonymous column is what each further proxy costs. Each step runs in a fresh interpreter that
imports the steps before it, so the figures are cumulative and in the proxy's own order.

    .venv/bin/python bench/import_memory.py [--mode static|consul|all]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The proxy's imports in the order its entry point pulls them in, grouped by what needs them.
COMMON = [
    "asyncio",
    "ssl",
    "yaml",
    "cryptography.x509",
    "uvloop",
    "OpenSSL",
    "meshkit.tls",
    "meshkit.openssl_engine",
    "meshkit.runtime",
    "meshkit.admin",
    "meshkit.proxy_main",
]
CONSUL = ["aiohttp", "meshkit.consul.client", "meshkit.consul.mode"]

_PROBE = """
import importlib, json, sys

def rss():
    out = {}
    for line in open('/proc/self/status'):
        key, _, value = line.partition(':')
        if key in ('RssAnon', 'RssFile'):
            out[key] = int(value.split()[0])
    return out

start = rss()
steps = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as err:
        steps.append({'module': name, 'error': str(err)})
        continue
    steps.append({'module': name, **rss()})
print(json.dumps({'start': start, 'steps': steps}))
"""


def probe(modules: list[str]) -> dict[str, object]:
    """Import `modules` in order in a fresh interpreter; its RSS after each one."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "proxy"), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def table(title: str, modules: list[str]) -> None:
    got = probe(modules)
    start = got["start"]
    assert isinstance(start, dict)
    prev_anon, prev_file = start["RssAnon"], start["RssFile"]
    print(f"\n{title}")
    print(f"{'import':<28} {'+anon KiB':>10} {'+file KiB':>10} {'anon total':>11}")
    print(f"{'(interpreter)':<28} {prev_anon:>10} {prev_file:>10} {prev_anon:>11}")
    steps = got["steps"]
    assert isinstance(steps, list)
    for step in steps:
        if "error" in step:
            print(f"{step['module']:<28} not importable: {step['error']}")
            continue
        anon, file = step["RssAnon"], step["RssFile"]
        print(f"{step['module']:<28} {anon - prev_anon:>10} {file - prev_file:>10} {anon:>11}")
        prev_anon, prev_file = anon, file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("static", "consul", "all"), default="all")
    args = ap.parse_args(argv)
    if args.mode in ("static", "all"):
        table("static mode (meshkit-proxy -config FILE)", COMMON)
    if args.mode in ("consul", "all"):
        table("Consul mode (meshkit-proxy -sidecar-for ID)", COMMON + CONSUL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
