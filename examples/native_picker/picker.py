# SPDX-License-Identifier: MPL-2.0
"""picker: a Connect-native HTTP service whose upstream is chosen per request.

A sidecar's upstreams are fixed in its registration; this app decides at run time, from the
request, which mesh service to call, which is what meshkit.native is for (docs/native.md).

    CONSUL_HTTP_ADDR=127.0.0.1:8500 python picker.py serve --service picker --listen 0.0.0.0:8443
    python picker.py call picker /call?upstream=db      # a one-off native client (as picker-cli)

Routes (mTLS only; callers are authorized by Consul intentions before a byte is read):
- `GET /`                                  who am I, who is calling
- `GET /call?upstream=NAME[&kind=service|query][&path=/x]`  call NAME through the mesh and
  relay its answer: 200 with `<status> from NAME: <body>`, 400 for a bad name, 403 when an
  intention denies us, 502 when no healthy instance answers (the error says why).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

import aiohttp
from aiohttp import web

from meshkit.native import Denied, MeshError, Service
from meshkit.native.web import NativeSite, client_session, peer

MAX_RELAYED_BYTES = 64 * 1024
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
SERVICE_KEY = web.AppKey("service", Service)
HTTP_KEY = web.AppKey("http", aiohttp.ClientSession)


async def index(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    caller = peer(request).service.service
    return web.Response(text=f"hello {caller}, this is {svc.name} on {socket.gethostname()}\n")


async def call(request: web.Request) -> web.Response:
    svc = request.app[SERVICE_KEY]
    upstream = request.query.get("upstream", "")
    kind = request.query.get("kind", "service")
    path = request.query.get("path", "/")
    if kind not in ("service", "query") or not path.startswith("/"):
        return web.Response(status=400, text="kind must be service or query; path must start /\n")
    url = f"http://{upstream}.{kind}.consul{path}"
    try:
        async with request.app[HTTP_KEY].get(url, timeout=UPSTREAM_TIMEOUT) as resp:
            body = await resp.content.read(MAX_RELAYED_BYTES)
            text = body.decode("utf-8", "replace").strip()
            return web.Response(text=f"{resp.status} from {upstream}: {text}\n")
    except ValueError as exc:  # a name that is not a service name
        return web.Response(status=400, text=f"{exc}\n")
    except MeshError as exc:
        return web.Response(status=502, text=f"{type(exc).__name__}: {exc}\n")
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        # A server that closes right after the handshake has refused us; ask Consul why.
        decision = await svc.check(upstream) if kind == "service" else None
        if decision is not None and not decision.allowed:
            return web.Response(status=403, text=f"denied: {decision.reason}\n")
        return web.Response(status=502, text=f"{upstream}: connection closed ({exc})\n")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.Response(status=502, text=f"{upstream}: {type(exc).__name__}: {exc}\n")


async def serve(name: str, host: str, port: int) -> int:
    async with Service(name) as svc, client_session(svc) as http:
        app = web.Application()
        app[SERVICE_KEY], app[HTTP_KEY] = svc, http
        app.router.add_get("/", index)
        app.router.add_get("/call", call)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = NativeSite(runner, svc, host, port)
        await site.start()
        logging.info("picker %s serving mTLS on %s:%d", name, host, site.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
    return 0


async def one_call(name: str, target: str, path: str) -> int:
    async with Service(name) as svc, client_session(svc) as http:
        try:
            async with http.get(f"http://{target}.service.consul{path}") as resp:
                print((await resp.text()).rstrip())
                return 0 if resp.status == 200 else 1
        except (MeshError, Denied, aiohttp.ClientError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picker", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--service", default="picker")
    s.add_argument("--listen", default="0.0.0.0:8443", help="HOST:PORT for mTLS")
    c = sub.add_parser("call")
    c.add_argument("target", help="service name")
    c.add_argument("path", nargs="?", default="/")
    c.add_argument("--as", dest="as_service", default="picker-cli", help="our service name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            host, _, port = args.listen.rpartition(":")
            return asyncio.run(serve(args.service, host or "0.0.0.0", int(port)))
        return asyncio.run(one_call(args.as_service, args.target, args.path))
    except MeshError as exc:
        print(f"picker: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
