# SPDX-License-Identifier: MPL-2.0
"""`meshkit-proxy`: parse the flags, pick the mode, install the event loop, run the mode.

Static mode (`-config FILE`) lives in static/, Consul mode in consul/; both serve on the one
process shell in process.py. Exit codes: 0 after a clean stop (SIGTERM/SIGINT, drained), 2 for
bad flags, bad config or unusable certificates, 1 when a listener cannot be opened.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from meshkit import flags, logs, process

log = logging.getLogger("meshkit.proxy")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    process.tune_malloc()
    try:
        cmd = flags.parse(args)
    except flags.FlagError as exc:
        print(f"meshkit-proxy: {exc}\n\n{flags.USAGE}", file=sys.stderr)
        return 2
    if cmd.help:
        print(flags.USAGE)
        return 0
    if cmd.version:
        from meshkit import __version__

        print(f"meshkit-proxy v{__version__}")
        return 0
    logs.setup(cmd.log_level, cmd.log_json)
    # Imported only once chosen: static mode never loads aiohttp, Consul mode never the
    # static file reader. A build may leave Consul mode out.
    name = "meshkit.static.serve" if cmd.static else "meshkit.consul.serve"
    try:
        mode = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if cmd.static or exc.name not in ("meshkit.consul", name):
            raise  # a real bug or a missing dependency: show it, do not hide it
        process.complain("Consul mode not available in this build; use -config FILE")
        return 2
    try:
        log.debug("event loop: %s", process.install_loop(cmd.event_loop))
    except ImportError:
        process.complain(f"-event-loop {cmd.event_loop}: uvloop is not installed")
        return 2
    result: int = mode.run(cmd)
    return result


if __name__ == "__main__":
    sys.exit(main())
