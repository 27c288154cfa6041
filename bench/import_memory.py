# SPDX-License-Identifier: MPL-2.0
"""Where a proxy's memory goes before it serves anything: the growth of each import, in order.

A sidecar at rest is mostly what it imported. Anonymous memory (the interpreter's heap: module
objects, code, caches) is private to each proxy process; file-backed memory (shared libraries,
mapped .so files) is shared by every proxy on a host. So for a host of many sidecars the
anonymous column is what each further proxy costs. Each step runs in a fresh interpreter that
imports the steps before it, so the figures are cumulative and in the proxy's own order.

    .venv/bin/python bench/import_memory.py [--mode static|consul|all] [--at-rest]

`--at-rest` also starts a static-mode proxy (one public listener, admin on) with `-workers 1`
and `-workers 2` and reports each process's anonymous memory, PSS and the total: what each
further worker costs once it has forked and settled.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `meshkit` importable
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

ROOT = Path(__file__).resolve().parent.parent
# The proxy's imports in the order its entry point pulls them in, grouped by what needs them.
COMMON = [
    "asyncio",
    "ssl",
    "cryptography.x509",
    "uvloop",
    "OpenSSL",
    "meshkit.tls",
    "meshkit.openssl_engine",
    "meshkit.runtime",
    "meshkit.admin",
    "meshkit.proxy_main",
]
# PyYAML is loaded when a file is read (`bounded.load_yaml`): always in static mode (-config),
# in Consul mode only with a -config file.
STATIC = ["yaml", "meshkit.static.file"]
# Consul mode's HTTP client is meshkit.consul.http (it replaced aiohttp, ~8 MiB of this list).
CONSUL = ["meshkit.consul.http", "meshkit.consul.client", "meshkit.consul.mode"]

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
    ap.add_argument("--at-rest", action="store_true", help="also measure running proxies")
    args = ap.parse_args(argv)
    if args.mode in ("static", "all"):
        table("static mode (meshkit-proxy -config FILE)", COMMON + STATIC)
    if args.mode in ("consul", "all"):
        table("Consul mode (meshkit-proxy -sidecar-for ID)", COMMON + CONSUL)
    if args.at_rest:
        for workers in (1, 2):
            at_rest(workers)
    return 0


def _rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Pss", "Pss_Anon", "Anonymous"):
            out[key] = int(value.split()[0])
    return out


def at_rest(workers: int, settle: float = 2.0) -> None:
    """A static proxy with `workers` processes: each one's memory once /ready answers."""
    import yaml

    from bench import procstat
    from bench.certs import make_certs
    from bench.pairs import HOST, free_port, spawn

    with tempfile.TemporaryDirectory(prefix="meshkit-import-memory-") as tmp:
        work = Path(tmp)
        certs = make_certs(work / "pki")
        admin = free_port()
        config = {
            "service": certs.server.identity.service,
            "tls": {
                "cert_file": str(certs.server.chain),
                "key_file": str(certs.server.key),
                "ca_files": [str(certs.roots)],
            },
            "public_listener": {
                "bind_address": HOST,
                "bind_port": free_port(),
                "local_service_address": f"{HOST}:{free_port()}",
            },
            "authorization": {"allow": [certs.client.identity.service]},
            "admin": {"bind": f"{HOST}:{admin}"},
        }
        path = work / "proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {"PYTHONPATH": str(ROOT / "proxy"), "PATH": "/usr/bin:/bin"}
        argv = [sys.executable, "-m", "meshkit.proxy_main", "-config", str(path)]
        proc = spawn([*argv, "-workers", str(workers), "-log-level", "warn"], work / "log", env)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{admin}/ready", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((work / "log").read_text()[-800:]) from None
                    time.sleep(0.1)
            time.sleep(settle)
            print(f"\nstatic proxy at rest, -workers {workers} (KiB)")
            print(f"{'process':<12} {'anon':>8} {'PSS anon':>9} {'PSS':>8}")
            total = 0
            pids = [proc.pid] + [p for p in procstat.tree([proc.pid]) if p != proc.pid]
            for number, pid in enumerate(pids):
                got = _rollup(pid)
                total += got["Pss"]
                print(f"{'worker ' + str(number):<12} {got['Anonymous']:>8} "
                      f"{got['Pss_Anon']:>9} {got['Pss']:>8}")  # fmt: skip
            print(f"{'total':<12} {'':>8} {'':>9} {total:>8}")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
